"""What every importer does: read the source item by item into a new schema file, written under a
temporary name and renamed into place at the end, so a failed import leaves nothing where the output
should be (and a file that was there stays as it was)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import provenance
from .files import atomic_path
from .record import SceneRecord
from .schema import DatasetError
from .writer import FocalStackWriter

Progress = Callable[[Iterable, int], Iterable]  # (items, total) -> items, e.g. a tqdm bar around them

# A source item whose ground truth has a few values that are not finite or negative gets them marked as "no
# data" (0), as the peers' own clipping and masks treat them; more than this fraction is a broken file.
MAX_NO_DATA_REPAIR = 0.01


class NothingImported(DatasetError):
    """Every item of the source was skipped; ``skipped`` holds their one-line reasons, for the caller to list."""

    def __init__(self, message: str, skipped: Sequence[str]):
        super().__init__(message)
        self.skipped = list(skipped)


def mark_bad_as_no_data(
    values, where: str, what: str, bad: type[Exception] = DatasetError, unusable: str = "not finite or negative"
):
    """``values`` with its non-finite and negative entries set to 0, and how many there were; ``bad`` naming
    ``where`` when they are more than ``MAX_NO_DATA_REPAIR`` of the values (``unusable`` says what the caller
    counts as such, having made them NaN)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    broken = ~(np.isfinite(values) & (values >= 0))
    n = int(broken.sum())
    if n > MAX_NO_DATA_REPAIR * values.size:
        raise bad(
            f"{where}: {n} of {values.size} {what} values {unusable} (more than {MAX_NO_DATA_REPAIR:.0%}: is the file broken?)"
        )
    return (np.where(broken, np.float32(0), values) if n else values), n


def write_imported(
    out: str | os.PathLike,
    items: Sequence[Any],
    read: Callable[[Any], SceneRecord],
    *,
    n_slices: int,
    height: int,
    width: int,
    attrs: dict,
    ground_truth: provenance.Declaration,
    optional: tuple[str, ...],
    skip_bad: bool = False,
    progress: Progress | None = None,
    bad: type[Exception] = DatasetError,
    skipped: Sequence[str] = (),
) -> tuple[list, list[str]]:
    """Append ``read(item)`` for each of ``items`` to a new file ``out``. An item whose reading raises
    ``bad`` stops the import (the exception propagates), or with ``skip_bad`` is left out and its one-line
    message listed. Returns (the items imported, the skipped lines, after ``skipped`` given)."""
    imported, skipped = [], list(skipped)
    with atomic_path(out) as tmp:
        with FocalStackWriter.create(
            tmp, n_slices=n_slices, height=height, width=width, attrs=attrs, ground_truth=ground_truth, optional=optional
        ) as writer:
            for item in (progress or (lambda it, total: it))(items, len(items)):
                try:
                    rec = read(item)
                except bad as exc:
                    if not skip_bad:
                        raise
                    skipped.append(str(exc))
                    continue
                writer.append(rec)
                imported.append(item)
        if not imported:
            raise NothingImported(f"{Path(out)}: nothing could be imported ({len(skipped)} skipped)", skipped)
    return imported, skipped
