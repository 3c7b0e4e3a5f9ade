"""What the three command lines share: one-line errors and number lists typed by users.

Every error that user input can cause ends a command with ``Error: <one line>`` and exit status 1 (click's
``ClickException``), never a traceback.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import click


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, white space folded (or its type's name)."""
    for line in str(exc).splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(exc).__name__


def one_line_errors(*errors: type[BaseException], prefixes: Mapping[type, str] | None = None) -> Callable:
    """Decorator: ``errors`` raised by the command become click's one-line ``Error: ...`` (exit 1).

    ``prefixes`` puts a word before some types' messages (e.g. 'damaged file: ' for h5py's RuntimeError).
    Ctrl-C ends with 'interrupted' instead of a traceback.
    """
    prefixes = dict(prefixes or {})

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (click.exceptions.Exit, click.ClickException, click.Abort):
                raise  # click's own (Exit is a RuntimeError)
            except errors as exc:
                prefix = next((p for t, p in prefixes.items() if isinstance(exc, t)), "")
                raise click.ClickException(prefix + one_line(exc)) from None
            except KeyboardInterrupt:
                raise click.ClickException("interrupted") from None

        return wrapper

    return decorate


def parse_numbers(text: str, what: str, *, count: int | None = None, positive: bool = False,
                  unit: str = "") -> list[float]:
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
