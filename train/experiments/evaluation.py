"""The evaluations an experiment asks for, through ``focalstack.train.evaluate``: one row per dataset,
setting, stack size and order (where asked) and region, with every column of the protocol."""

from __future__ import annotations

from pathlib import Path

from .spec import EvaluationSpec


def evaluate_for_experiment(
    checkpoint: Path, files: dict[str, str], ev: EvaluationSpec, out: Path, *, device: str = "auto", progress: bool = True
) -> dict:
    """Rows {dataset, setting, stack_size, order, region, scenes, <metrics>} and notes for ``checkpoint``."""
    from ..evaluate import evaluate

    by_path = {path: name for name, path in files.items()}
    result = evaluate(
        checkpoint,
        list(files.values()),
        out,
        settings=tuple(ev.settings),
        protocols=(ev.protocol,),
        device=device,
        progress=progress,
        stack_sizes=tuple(ev.stack_sizes),
        orders=tuple(ev.orders),
        regions=tuple(ev.regions),
    )
    rows = [{"dataset": by_path[r["file"]], **{k: v for k, v in r.items() if k not in ("file", "protocol")}} for r in result.rows]
    return {"rows": rows, "notes": list(result.notes)}


def evaluate_constant_for_experiment(
    depth_m: float, norm, files: dict[str, str], ev: EvaluationSpec, *, progress: bool = True
) -> dict:
    """The same rows for ``baselines.ConstantDepth(depth_m)``: scored by the same code as the models."""
    import torch

    from ..baselines import ConstantDepth
    from ..evaluate import evaluate_model
    from ..protocols import resolve_protocols

    by_path = {path: name for name, path in files.items()}
    result = evaluate_model(
        ConstantDepth(depth_m, norm),
        norm,
        list(files.values()),
        resolve_protocols((ev.protocol,)),
        tuple(ev.settings),
        device=torch.device("cpu"),
        progress=progress,
        model_label=f"the constant {depth_m:.3f} m",
        stack_sizes=tuple(ev.stack_sizes),
        orders=tuple(ev.orders),
        regions=tuple(ev.regions),
    )
    rows = [{"dataset": by_path[r["file"]], **{k: v for k, v in r.items() if k not in ("file", "protocol")}} for r in result.rows]
    return {"rows": rows, "notes": list(result.notes), "depth_m": depth_m}
