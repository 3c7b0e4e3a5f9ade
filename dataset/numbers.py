"""Number checks shared by every part: finite numbers, and comma-separated lists of them. Pure Python (the
command-line helpers that need click are in ``cliutil``)."""

from __future__ import annotations

import math


def parse_numbers(text: str, what: str, *, count: int | None = None, positive: bool = False, unit: str = "") -> list[float]:
    """'0.1, 0.3,1.5' -> [0.1, 0.3, 1.5]. ValueError naming ``what`` and the bad item otherwise.

    Numbers must be finite; with ``positive`` also > 0; with ``count`` exactly that many.
    """
    items = [item.strip() for item in str(text).split(",")]
    expected = f"{'positive ' if positive else ''}numbers{' in ' + unit if unit else ''} separated by commas"
    if count is not None:
        expected = f"{count} {expected}"
    if not any(items) or (count is not None and len(items) != count):
        raise ValueError(f"{what} {text!r}: expected {expected}")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{what} {text!r}: {item!r} is not a number; expected {expected}") from None
        if not math.isfinite(value) or (positive and not value > 0):
            raise ValueError(f"{what} {text!r}: {item!r} is not a finite{' positive' if positive else ''} number")
        out.append(value)
    return out


def is_finite_number(value) -> bool:
    """True for an int or float (not a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
