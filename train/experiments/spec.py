"""An experiment as a file: datasets to render, models to train, evaluations to run, at named scales.

    name = "walls-fix"
    description = "..."
    [scales.tiny]                 # defaults of every dataset and model at this scale
    resolution = 64
    samples = 4
    epochs = 3
    [datasets.train]              # -> focalstack-render --preset fod500 --seed 0 --scenes ... (its own process)
    preset = "fod500"
    seed = 0
    scenes = { tiny = 8, small = 200, full = 1000 }   # any value may be one per scale
    [models.fod]                  # -> focalstack-train fit, from these TrainConfig fields
    arch = "fod-depth"
    data = ["train", "walls:0.5"] # dataset names, with an optional sampling weight
    [[evaluations]]
    name = "held-out"
    datasets = ["test"]
    models = ["fod"]              # default: every model
    protocol = "focalstack"
    settings = ["All", "Random"]

Everything is checked before anything runs (``load_experiment``): unknown keys, presets, architectures,
datasets an evaluation or model names, a scale the file does not define; each error is one line naming
the file, the table and the value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from focalstack.dataset.numbers import is_finite_number

from ..data import parse_data_spec
from ..models import ARCHITECTURES
from ..plan import ORDERS, REGIONS, SETTINGS

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

# [scales.X] keys that are render settings of every dataset; the rest are training settings of every model.
RENDER_KEYS = ("resolution", "samples", "denoise", "same_blur", "light_field")
DATASET_KEYS = ("preset", "seed", "scenes", "focus_distances", "description", *RENDER_KEYS)
EVALUATION_KEYS = (
    "name",
    "datasets",
    "models",
    "protocol",
    "settings",
    "stack_sizes",
    "orders",
    "regions",
    "metrics",
    "figures",
    "published",
    "compare_published",
    "note",
)
DEFAULT_METRICS = ("depth_mse", "depth_rmse", "depth_absrel", "delta1", "defocus_mse", "aif_ssim", "aif_psnr")
# Report columns computed from a protocol column (``report._derived``): a published row may give either.
DERIVED_COLUMNS = {"aif_psnr_peak255": "aif_psnr"}
# Keys of a published row besides its metric columns.
PUBLISHED_KEYS = ("model", "source", "dataset", "setting", "stack_size", "order", "region")


class ExperimentError(ValueError):
    """An experiment file that cannot run; the message names the file, table and value."""


# The constant-depth baseline's name in results and reports (``baselines.ConstantDepth``); no model may take it.
CONSTANT_MODEL = "constant"


@dataclass
class DatasetSpec:
    name: str
    preset: str  # a built-in preset name or a .toml path
    seed: int
    scenes: int
    resolution: int
    samples: int | None = None  # None: the preset's
    denoise: bool | None = None
    focus_distances: list[float] | None = None
    same_blur: bool = False  # scale the preset's f-number with the resolution (blur in pixels as at its own size)
    light_field: bool = False  # slices by the light-field path (--light-field), else by Cycles (--cycles-slices)

    def render_args(self) -> list[str]:
        """focalstack-render's options for this dataset (besides --out)."""
        args = [
            "--preset",
            self.preset,
            "--seed",
            str(self.seed),
            "--scenes",
            str(self.scenes),
            "--resolution",
            str(self.resolution),
        ]
        if self.samples is not None:
            args += ["--samples", str(self.samples)]
        if self.denoise is not None:
            args.append("--denoise" if self.denoise else "--no-denoise")
        if self.focus_distances:
            args += ["--focus-distances", ",".join(repr(float(s)) for s in self.focus_distances)]  # exact, not :g's 6 digits
        if self.same_blur:
            args.append("--same-blur")
        # Always said: an experiment's data keeps its path when a preset's default changes, and the datasets
        # of one experiment (fod500 for training, mirrors for testing) come from the same path.
        args.append("--light-field" if self.light_field else "--cycles-slices")
        return args

    def file_name(self) -> str:
        """A name that says what the file holds, so that experiments can share a data folder."""
        preset = Path(self.preset).stem if self.preset.endswith(".toml") else self.preset
        parts = [preset, f"seed{self.seed}", f"{self.resolution}px", f"n{self.scenes}"]
        if self.samples is not None:
            parts.append(f"{self.samples}spp")
        if self.denoise is not None:
            parts.append("dn" if self.denoise else "nodn")
        if self.focus_distances:
            # :g where it is exact (the names files have had); all the digits where it is not, so that the file
            # of the exact distances is not taken for one rendered at 6 digits (before they were sent exactly)
            parts.append("f" + "-".join(f"{s:g}" if float(f"{s:g}") == s else repr(float(s)) for s in self.focus_distances))
        if self.same_blur:
            parts.append("sameblur")
        if self.light_field:
            parts.append("lf")
        return "_".join(parts) + ".h5"


@dataclass
class ModelSpec:
    name: str
    arch: str
    data: list[tuple[str, float]]  # (dataset name, sampling weight)
    train: dict  # further TrainConfig fields


@dataclass
class EvaluationSpec:
    name: str
    datasets: list[str]
    models: list[str]
    protocol: str = "focalstack"
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    stack_sizes: list[int] = field(default_factory=list)  # evaluate K-slice subsets too (paper-depth)
    orders: list[str] = field(default_factory=lambda: ["sorted"])  # of those subsets
    regions: list[str] = field(default_factory=lambda: ["all"])  # 'flat': large texture-less areas alone
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))  # the report's columns
    figures: int = 3  # scenes per dataset in the figure grid
    published: list[dict] = field(default_factory=list)  # rows of published tables to print beside ours
    compare_published: bool = False  # also the protocol's own published rows (evaluate --compare-published)
    note: str = ""  # shown above the table


@dataclass
class Experiment:
    name: str
    description: str
    scale: str
    scales: list[str]
    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]
    evaluations: list[EvaluationSpec]
    path: str
    notes: list[str] = field(default_factory=list)  # shown in the report (e.g. what the published rows are)


# -- loading ---------------------------------------------------------------------------------------------
def bundled_experiments() -> dict[str, Path]:
    folder = Path(__file__).parent / "bundled"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def experiment_path(name_or_path: str) -> Path:
    """A bundled experiment's file, or the file given; ExperimentError naming both kinds otherwise."""
    bundled = bundled_experiments()
    if name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path
    raise ExperimentError(f"experiment {name_or_path!r}: not a file and not a bundled experiment ({', '.join(bundled)})")


def load_experiment(name_or_path: str, scale: str) -> Experiment:
    """Read and check an experiment at ``scale``; every error before anything runs."""
    from ..protocols import PROTOCOLS

    path = experiment_path(name_or_path)
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{where}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{where}: not a text file (expected TOML in UTF-8)") from None
    _only(data, ("name", "description", "notes", "scales", "datasets", "models", "evaluations"), where)
    scales = data.get("scales")
    if not isinstance(scales, dict) or not scales:
        raise ExperimentError(f"{where}: no [scales.NAME] table; expected at least one scale (e.g. tiny)")
    if scale not in scales:
        raise ExperimentError(f"{where}: scale {scale!r} is not defined (the file defines {', '.join(scales)})")
    defaults = _table(scales[scale], f"{where} [scales.{scale}]")
    pick = _Picker(scale, list(scales), where)
    datasets = {
        name: _dataset(name, _table(t, f"{where} [datasets.{name}]"), defaults, pick, path)
        for name, t in _table(data.get("datasets", {}), f"{where} [datasets]").items()
    }
    if not datasets:
        raise ExperimentError(f"{where}: no [datasets.NAME] table")
    slices = {name: len(config["focus_distances"]) for name, config in _render_configs(datasets, where).items()}
    models = {
        name: _model(name, _table(t, f"{where} [models.{name}]"), defaults, pick, datasets, where)
        for name, t in _table(data.get("models", {}), f"{where} [models]").items()
    }
    if not models:
        raise ExperimentError(f"{where}: no [models.NAME] table")
    evaluations = [
        _evaluation(i, e, pick, datasets, models, where, PROTOCOLS, slices)
        for i, e in enumerate(_list(data.get("evaluations", []), "evaluations", where))
    ]
    names = [e.name for e in evaluations]
    if len(set(names)) != len(names):
        raise ExperimentError(f"{where}: evaluation names repeat ({', '.join(names)})")
    notes = _list(data.get("notes", []), "notes", where)
    return Experiment(
        str(data.get("name", path.stem)),
        str(data.get("description", "")),
        scale,
        list(scales),
        datasets,
        models,
        evaluations,
        str(path),
        [str(n) for n in notes],
    )


class _Picker:
    """A value, or its entry for the experiment's scale when it is given per scale ({tiny = 8, ...})."""

    def __init__(self, scale: str, scales: list[str], where: str):
        self.scale, self.scales, self.where = scale, scales, where

    def __call__(self, value, what: str):
        if isinstance(value, dict) and value and set(value) <= set(self.scales):
            if self.scale not in value:
                raise ExperimentError(f"{self.where}: {what} has no value for scale {self.scale!r}")
            return value[self.scale]
        if isinstance(value, dict) and set(value) & set(self.scales):
            unknown = sorted(set(value) - set(self.scales))
            raise ExperimentError(f"{self.where}: {what} names scale(s) {', '.join(unknown)} the file does not define")
        return value


def _only(table: dict, allowed, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ExperimentError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}")


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ExperimentError(f"{where}: expected a table, got {value!r}")
    return value


def _list(value, what: str, where: str) -> list:
    """A TOML array; ExperimentError for anything else (a string would be taken letter by letter, a number
    would not be iterable at all)."""
    if not isinstance(value, list):
        raise ExperimentError(f"{where}: {what} = {value!r}: expected a list in [brackets]")
    return value


def _positive_int(value, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExperimentError(f"{where}: {what} = {value!r}: expected a positive integer")
    return value


@lru_cache(maxsize=1)
def builtin_presets() -> tuple[str, ...]:
    """The renderer's presets, asked of focalstack-render itself (train/ never imports render/)."""
    done = subprocess.run(
        [sys.executable, "-m", "focalstack.render", "--list-presets"], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise ExperimentError(f"focalstack-render --list-presets failed: {done.stderr.strip()[-300:]}")
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip())


def _render_configs(datasets: dict[str, DatasetSpec], where: str) -> dict[str, dict]:
    """What focalstack-render would render for each dataset, asked of it in one process without rendering, so
    that a value it refuses (2 px, a focus distance inside the lens) stops the experiment before anything runs,
    not when its turn to render comes."""
    names = list(datasets)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "focalstack.render.cli_resolve"],
            input=json.dumps([datasets[n].render_args() for n in names]),
            capture_output=True,
            text=True,
            timeout=300,
        )
        answers = json.loads(done.stdout) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError) as exc:
        raise ExperimentError(f"{where}: checking the datasets' render options failed: {exc}") from None
    if answers is None or len(answers) != len(names):
        why = done.stderr.strip().splitlines()
        raise ExperimentError(f"{where}: checking the datasets' render options failed: {why[-1] if why else done.returncode}")
    configs = {}
    for name, answer in zip(names, answers):
        if "error" in answer:
            raise ExperimentError(f"{where} [datasets.{name}]: {answer['error']}")
        configs[name] = answer["config"]
    return configs


def _dataset(name: str, t: dict, defaults: dict, pick: _Picker, path: Path) -> DatasetSpec:
    where = f"{path.name} [datasets.{name}]"
    _only(t, DATASET_KEYS, where)
    merged = {k: defaults[k] for k in RENDER_KEYS if k in defaults}
    merged.update(t)
    preset = pick(merged.get("preset"), f"[datasets.{name}] preset")
    if not isinstance(preset, str):
        raise ExperimentError(f"{where}: preset = {preset!r}: expected a preset name or a .toml file")
    if preset.endswith(".toml"):
        file = (path.parent / preset).resolve()
        if not file.is_file():
            raise ExperimentError(f"{where}: preset file {preset} not found (relative to {path.parent})")
        preset = str(file)
    elif preset not in builtin_presets():
        raise ExperimentError(f"{where}: unknown preset {preset!r}; expected one of {', '.join(builtin_presets())}")
    values = {k: pick(merged[k], f"[datasets.{name}] {k}") for k in merged if k not in ("preset", "description")}
    for key in ("scenes", "resolution"):
        if key not in values:
            raise ExperimentError(f"{where}: {key} missing (give it here or in [scales.{pick.scale}])")
        _positive_int(values[key], key, where)
    if "samples" in values:
        _positive_int(values["samples"], "samples", where)
    seed = values.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ExperimentError(f"{where}: seed = {seed!r}: expected a non-negative integer")
    focus = values.get("focus_distances")
    if focus is not None and (not isinstance(focus, list) or not all(is_finite_number(s) and s > 0 for s in focus)):
        raise ExperimentError(f"{where}: focus_distances = {focus!r}: expected a list of metres")
    for key in ("denoise", "same_blur", "light_field"):
        if key in values and not isinstance(values[key], bool):
            raise ExperimentError(f"{where}: {key} = {values[key]!r}: expected true or false")
    return DatasetSpec(
        name,
        preset,
        seed,
        values["scenes"],
        values["resolution"],
        values.get("samples"),
        values.get("denoise"),
        [float(s) for s in focus] if focus else None,
        values.get("same_blur", False),
        values.get("light_field", False),
    )


def _model(name: str, t: dict, defaults: dict, pick: _Picker, datasets: dict, where_file: str) -> ModelSpec:
    from ..config import TrainConfig
    from ..losses import LossWeights

    where = f"{where_file} [models.{name}]"
    if name == CONSTANT_MODEL:
        raise ExperimentError(f"{where}: {CONSTANT_MODEL!r} names the reports' constant-depth baseline; choose another name")
    train_fields = {f.name for f in fields(TrainConfig)} - {"data", "out", "val_data", "arch"}
    _only(t, ("arch", "data", *sorted(train_fields)), where)
    arch = t.get("arch")
    if arch not in ARCHITECTURES:
        raise ExperimentError(f"{where}: unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    data = []
    for item in _list(t.get("data", []), "data", where):
        try:
            ds, w = parse_data_spec(str(item))  # the same NAME:WEIGHT syntax as fit's --data
        except ValueError as exc:
            raise ExperimentError(f"{where}: data {exc}") from None
        if ds not in datasets:
            raise ExperimentError(f"{where}: data names dataset {ds!r}, which [datasets] does not define")
        data.append((ds, w))
    if not data:
        raise ExperimentError(f"{where}: data: expected at least one dataset name")
    train = {k: v for k, v in defaults.items() if k in train_fields}
    for k, v in t.items():
        if k in train_fields:
            value = pick(v, f"[models.{name}] {k}")
            if k == "loss_weights" and isinstance(value, dict) and isinstance(train.get(k), dict):
                value = {**train[k], **value}  # the model's weights over the scale's, term by term
            train[k] = value
    unknown_defaults = sorted(set(defaults) - train_fields - set(RENDER_KEYS))
    if unknown_defaults:
        raise ExperimentError(f"{where_file} [scales.{pick.scale}]: unknown key(s) {', '.join(unknown_defaults)}")
    try:
        if isinstance(train.get("loss_weights"), dict):  # a table of some weights: the others keep the code's defaults
            train["loss_weights"] = LossWeights.parse([f"{k}={v}" for k, v in train["loss_weights"].items()]).to_dict()
        TrainConfig(data=["x.h5"], out="x", arch=arch, **train).check()
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{where}: {exc}") from None
    return ModelSpec(name, arch, data, train)


def _evaluation(
    i: int, e, pick: _Picker, datasets: dict, models: dict, where_file: str, known_protocols, slices: dict[str, int]
) -> EvaluationSpec:
    """One [[evaluations]] entry, checked (``slices``: each dataset's stack size)."""
    e = _table(e, f"{where_file} [[evaluations]] #{i + 1}")
    name = str(e.get("name", f"evaluation-{i + 1}"))
    where = f"{where_file} [[evaluations]] {name!r}"
    _only(e, EVALUATION_KEYS, where)
    ds = list(_list(e.get("datasets", []), "datasets", where))
    if not ds:
        raise ExperimentError(f"{where}: datasets: expected at least one dataset name")
    for d in ds:
        if d not in datasets:
            raise ExperimentError(f"{where}: names dataset {d!r}, which [datasets] does not define")
    ms = list(_list(e.get("models", list(models)), "models", where))
    if not ms:
        raise ExperimentError(f"{where}: models = []: expected at least one model name (leave it out for every model)")
    for m in ms:
        if m not in models:
            raise ExperimentError(f"{where}: names model {m!r}, which [models] does not define")
    spec = EvaluationSpec(name, ds, ms)
    spec.protocol = str(e.get("protocol", spec.protocol))
    if spec.protocol not in known_protocols:
        raise ExperimentError(f"{where}: unknown protocol {spec.protocol!r}; expected one of {', '.join(known_protocols)}")
    for key, allowed in (("settings", SETTINGS), ("orders", ORDERS), ("regions", REGIONS)):
        value = list(_list(e.get(key, getattr(spec, key)), key, where))
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise ExperimentError(f"{where}: {key} = {value!r}: expected some of {', '.join(allowed)}")
        setattr(spec, key, value)
    sizes = _list(pick(e.get("stack_sizes", []), "stack_sizes"), "stack_sizes", where)
    spec.stack_sizes = [_positive_int(k, "stack_sizes", where) for k in sizes]
    for k in spec.stack_sizes:  # evaluate refuses it, after every model trained
        if all(k > slices[d] for d in ds):
            have = ", ".join(f"{d}: {slices[d]}" for d in ds)
            raise ExperimentError(f"{where}: stack_sizes: no dataset has stacks of {k} slices ({have})")
    if set(spec.orders) != {"sorted"} and not spec.stack_sizes:  # evaluate refuses it, after every model trained
        raise ExperimentError(
            f"{where}: orders = {spec.orders!r} orders the slices of stack_sizes subsets, and this scale has none"
        )
    columns = [c.key for c in known_protocols[spec.protocol].columns]
    metrics = e.get("metrics", spec.metrics if spec.protocol == "focalstack" else columns)
    spec.metrics = [str(m) for m in _list(metrics, "metrics", where)]
    unknown = [m for m in spec.metrics if m not in columns]
    if unknown:
        raise ExperimentError(
            f"{where}: metrics {', '.join(unknown)} are not columns of protocol {spec.protocol!r} ({', '.join(columns)})"
        )
    spec.figures = _positive_int(pick(e.get("figures", spec.figures), "figures"), "figures", where) if e.get("figures", 1) else 0
    spec.note = str(e.get("note", ""))
    spec.compare_published = e.get("compare_published", False)
    if not isinstance(spec.compare_published, bool):
        raise ExperimentError(f"{where}: compare_published = {spec.compare_published!r}: expected true or false")
    spec.published = [_published(j, r, columns, where) for j, r in enumerate(_list(e.get("published", []), "published", where))]
    return spec


def _published(j: int, row, columns: list[str], where: str) -> dict:
    """A published row, checked: a model and a source (strings), metric values under the protocol's
    column keys (or a derived column's), numbers only."""
    where = f"{where} published row {j + 1}"
    row = dict(_table(row, where))
    metrics = [*columns, *(d for d, base in DERIVED_COLUMNS.items() if base in columns)]
    _only(row, (*PUBLISHED_KEYS, *metrics), where)
    for key in ("model", "source"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ExperimentError(f"{where}: {key} = {row.get(key)!r}: expected a non-empty string")
    for key in metrics:
        if key in row and not is_finite_number(row[key]):
            raise ExperimentError(f"{where}: {key} = {row[key]!r}: expected a number")
    if not any(k in row for k in metrics):
        raise ExperimentError(f"{where}: no value under any column ({', '.join(metrics)})")
    return row
