"""The whole loop in one call, for the README's first command: train briefly, evaluate, return the table.

    from focalstack.train import quick_train_and_evaluate
    print(quick_train_and_evaluate("data/small/train.h5", "data/small/test.h5", "runs/quick"))

The same from the shell:

    focalstack-train fit --data data/small/train.h5 --out runs/quick --epochs 2 --batch-size 2 --workers 0
    focalstack-train evaluate --checkpoint runs/quick/best.pt --data data/small/test.h5
"""

from __future__ import annotations

import os
from pathlib import Path


def quick_train_and_evaluate(
    train: str | os.PathLike | list,
    test: str | os.PathLike | list,
    out: str | os.PathLike,
    epochs: int = 2,
    batch_size: int = 2,
    arch: str = "fod",
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Train ``arch`` on ``train`` for ``epochs`` epochs (fresh run in ``out``, or resumed if ``out``
    already holds one), evaluate ``out/best.pt`` on ``test`` (All and Random), and return the Markdown
    table of metrics (also written to ``out/eval/``)."""
    from .evaluate import evaluate
    from .results import markdown_table
    from .trainer import TrainConfig, fit

    as_list = lambda x: [str(p) for p in x] if isinstance(x, (list, tuple)) else [str(x)]  # noqa: E731
    cfg = TrainConfig(
        data=as_list(train),
        out=str(out),
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        val_fraction=0.0,
        workers=0,
        device=device,
        seed=seed,
        progress=progress,
    )
    result = fit(cfg, resume=(Path(out) / "last.pt").is_file())
    rows, _ = evaluate(result.best, as_list(test), Path(out) / "eval", device=device, progress=progress)
    return markdown_table(rows)
