"""report.md and report.json of an experiment run: the scale up front, data, models, one table per
evaluation with the published rows beside ours, a comparison of models, figures, and what each step did."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from focalstack.dataset.files import write_text_atomic

from ..results import json_text
from .spec import CONSTANT_MODEL

# PSNR of images scaled to [0, 1] computed with a peak of 255 (as the paper's supplement did) is the usual
# figure plus 20 log10(255).
PSNR_PEAK_255_OFFSET_DB = 20 * math.log10(255.0)

# What each bundled scale is for; the sizes are the experiment's own (``scale_note``).
SCALE_NOTES = {
    "tiny": "a pipeline check, trained for minutes on a CPU. Its numbers are not results.",
    "small": "a first look, far from the paper's training budget.",
    "full": "the paper's size, as the bundled experiments read it (256 px, 1000 fod500 training scenes).",
}


def scale_note(exp) -> str:
    """The scale's purpose and what this experiment's datasets are at it: '64 px, 16 training scenes; ...'."""
    sizes = " and ".join(f"{r} px" for r in sorted({ds.resolution for ds in exp.datasets.values()}))
    trained = {name for model in exp.models.values() for name, _ in model.data}
    scenes = sum(exp.datasets[name].scenes for name in trained)
    return f"{sizes}, {scenes} scene(s) in training datasets; {SCALE_NOTES.get(exp.scale, 'a scale of this experiment file.')}"


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _derived(row: dict) -> dict:
    """Both PSNR conventions from whichever the row has (ours: peak 1; the supplement's: peak 255)."""
    out = dict(row)
    if row.get("aif_psnr") is not None:
        out["aif_psnr_peak255"] = row["aif_psnr"] + PSNR_PEAK_255_OFFSET_DB
    elif row.get("aif_psnr_peak255") is not None:
        out["aif_psnr"] = row["aif_psnr_peak255"] - PSNR_PEAK_255_OFFSET_DB
    return out


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return lines


def _keys(ev) -> list[str]:
    keys = ["dataset", "setting"]
    if ev.stack_sizes:
        keys += ["stack_size", "order"]
    if ev.regions != ["all"]:
        keys.append("region")
    return keys


def _protocol_published(ev) -> list[dict]:
    """The protocol's own published rows (``protocols.Protocol.published``), when the evaluation asks."""
    if not ev.compare_published:
        return []
    from ..protocols import PROTOCOLS

    return [{"model": p.method, "source": p.source, **p.values} for p in PROTOCOLS[ev.protocol].published]


def evaluation_section(ev, results: dict) -> tuple[list[str], list[dict]]:
    """Markdown lines and JSON rows of one evaluation (every model's rows, then the published ones)."""
    metrics = list(ev.metrics)
    if "aif_psnr" in metrics:
        metrics.insert(metrics.index("aif_psnr") + 1, "aif_psnr_peak255")
    keys = _keys(ev)
    rows_json, table = [], []
    for model, res in results.items():
        source = "baseline" if model == CONSTANT_MODEL else "ours"
        for row in res["rows"]:
            row = _derived(row)
            rows_json.append({"model": model, "source": source, **row})
            table.append([model, *(row.get(k) for k in keys), *(row.get(m) for m in metrics)])
    for pub in map(_derived, [*ev.published, *_protocol_published(ev)]):
        rows_json.append({**pub, "source": pub.get("source", "published")})
        table.append(
            [
                f"{pub.get('model', '?')} ({pub.get('source', 'published')})",
                *(pub.get(k, "") for k in keys),
                *(pub.get(m) for m in metrics),
            ]
        )
    elsewhere = sorted({p["dataset"] for p in ev.published if p.get("dataset") and p["dataset"] not in ev.datasets})
    lines = [f"## {ev.name}", "", f"Protocol `{ev.protocol}`; datasets {', '.join(ev.datasets)}.", ""]
    if ev.note:
        lines += [ev.note, ""]
    lines += _table(["model", *keys, *metrics], table)
    if elsewhere:
        lines += ["", f"Published only (not rendered or evaluated here): {', '.join(elsewhere)}."]
    if CONSTANT_MODEL in results:
        c = results[CONSTANT_MODEL]
        lines += [
            "",
            f"`{CONSTANT_MODEL}` predicts every pixel at the mean true depth of the training data of "
            f"`{c.get('trained_on')}` ({c['depth_m']:.3f} m) and zero defocus: a network that does not beat "
            "it has learnt nothing from the stack.",
        ]
    if "aif_psnr" in metrics:
        lines += [
            "",
            f"`aif_psnr` is the usual PSNR of images in [0, 1] with peak 1; `aif_psnr_peak255` is the same "
            f"images with peak 255, as the paper's supplement computed it (+{PSNR_PEAK_255_OFFSET_DB:.2f} dB).",
        ]
    return lines + [""], rows_json


def comparison_section(ev, results: dict) -> list[str]:
    """With several models: each model's headline depth error under the evaluation's protocol per dataset
    (All setting, whole image and flat areas), and its change relative to the first model."""
    from ..protocols import PROTOCOLS

    metric = PROTOCOLS[ev.protocol].headline
    models = list(results)
    if len(models) < 2 or not metric:
        return []
    base = models[0]
    header = ["dataset", "region", *models, *(f"{m} vs {base}" for m in models[1:])]
    table = []
    combos = []
    for row in results[base]["rows"]:
        if row["setting"] == "All" and row.get("stack_size") is None:
            combos.append((row["dataset"], row.get("region", "all")))
    for dataset, region in combos:
        vals = []
        for m in models:
            match = [
                r
                for r in results[m]["rows"]
                if r["dataset"] == dataset
                and r.get("region", "all") == region
                and r["setting"] == "All"
                and r.get("stack_size") is None
            ]
            vals.append(match[0].get(metric) if match else None)
        rel = [f"{100 * (v / vals[0] - 1):+.1f} %" if v is not None and vals[0] else "-" for v in vals[1:]]
        table.append([dataset, region, *vals, *rel])
    return [f"### {ev.name}: {metric} by model (All setting)", "", *_table(header, table), ""]


def write_report(runner, results: dict) -> dict:
    exp, out = runner.exp, runner.out
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    lines = [
        f"# {exp.name} — scale `{exp.scale}`",
        "",
        f"> **Scale `{exp.scale}`: {scale_note(exp)}**",
        "",
    ]
    if exp.description:
        lines += [exp.description.strip(), ""]
    lines += [*(f"- {n}" for n in exp.notes), ""] if exp.notes else []
    lines += _setup_section(runner)
    lines.append("")
    report_json = {
        "experiment": exp.name,
        "scale": exp.scale,
        "scale_note": scale_note(exp),
        "datasets": {k: asdict(v) for k, v in exp.datasets.items()},
        "models": {k: asdict(v) for k, v in exp.models.items()},
        "evaluations": {},
    }
    for ev in exp.evaluations:
        section, rows = evaluation_section(ev, results[ev.name])
        lines += section + comparison_section(ev, results[ev.name])
        report_json["evaluations"][ev.name] = {"spec": asdict(ev), "rows": rows}
    lines += ["## Figures", ""]
    try:
        from .figures import predictions, scene_grid, training_curves
    except ImportError as exc:  # matplotlib: a base dependency, but a bare GPU machine may lack it
        lines += [f"Figures not drawn here ({exc}); the models' metrics.csv files hold the training curves.", ""]
        return _finish_report(runner, lines, report_json)
    curves = training_curves({m: runner.model_dir(m) for m in exp.models}, figures / "training_curves.png")
    if curves:
        lines += ["![training curves](figures/training_curves.png)", ""]
    drawn = set()
    for ev in exp.evaluations:
        for d in ev.datasets:
            for m in ev.models:
                if (d, m) in drawn or ev.figures < 1:
                    continue
                drawn.add((d, m))
                name = f"{d}__{m}.png"
                samples = predictions(runner.checkpoint(m), str(runner.dataset_path(d)), ev.figures, runner.opt.device)
                scene_grid(samples, f"{m} on {d} ({exp.scale} scale)", figures / name)
                lines += [f"![{m} on {d}](figures/{name})", ""]
    return _finish_report(runner, lines, report_json)


def _setup_section(runner) -> list[str]:
    """The report's Data and Models tables."""
    exp = runner.exp
    lines = ["## Data", ""]
    lines += _table(
        ["dataset", "preset", "seed", "scenes", "resolution", "file"],
        [
            [d.name, Path(d.preset).name, d.seed, d.scenes, d.resolution, runner.dataset_path(d.name).name]
            for d in exp.datasets.values()
        ],
    )
    lines += ["", "## Models", ""]
    lines += _table(
        ["model", "architecture", "trained on", "epochs"],
        [
            [m.name, m.arch, ", ".join(f"{d}:{w:g}" for d, w in m.data), runner.train_config(m).epochs]
            for m in exp.models.values()
        ],
    )
    return lines


def _finish_report(runner, lines: list[str], report_json: dict) -> dict:
    out = runner.out
    lines += ["## Steps of this run", ""]
    lines += _table(["step", "name", "action", "seconds"], [[s.kind, s.name, s.action, s.seconds] for s in runner.steps])
    report_json["steps"] = [asdict(s) for s in runner.steps]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "report.json", json_text(report_json, default=str))
    return report_json
