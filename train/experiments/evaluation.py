"""The evaluations an experiment asks for, on top of ``focalstack.train.evaluate``: one row per dataset and
setting (and stack size, order and region where asked), every metric, in a JSON-able dict."""

from __future__ import annotations

from pathlib import Path

from .spec import EvaluationSpec


def evaluate_for_experiment(checkpoint: Path, files: dict[str, str], ev: EvaluationSpec, out: Path, *,
                            device: str = "auto", progress: bool = True) -> dict:
    """Rows {dataset, setting, stack_size, order, region, <metrics>} for ``checkpoint`` on ``files``."""
    from ..evaluate import evaluate

    rows = []
    for dataset, path in files.items():
        found, _ = evaluate(checkpoint, [path], out / dataset, settings=tuple(ev.settings), device=device,
                            progress=progress)
        for r in found:
            rows.append({"dataset": dataset, "setting": r["setting"], "stack_size": None, "order": None,
                         "region": "all", **{k: v for k, v in r.items() if k not in ("file", "setting")}})
    return {"rows": rows}
