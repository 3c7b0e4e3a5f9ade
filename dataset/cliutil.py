"""What the three command lines share: one-line errors (number checks are in ``numbers``).

Every error that user input can cause ends a command with ``Error: <one line>`` and exit status 1 (click's
``ClickException``), never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import click

from .schema import DatasetError


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, white space folded (or its type's name). An
    OS error reads as a sentence, 'PATH: No such file or directory', not "[Errno 2] ...: 'PATH'"."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        names = " -> ".join(str(n) for n in (exc.filename, exc.filename2) if n is not None)
        text = f"{names}: {exc.strerror}" if names else exc.strerror
    for line in text.splitlines():
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


class _RefuseRepeatedValues:
    """Refuse an option that takes one value when it is given twice.

    click keeps the last value without a word, so ``evaluate -c a.pt -c b.pt`` would evaluate b.pt alone while
    the user believes both were. Options that may repeat are declared ``multiple``; flags and counts may repeat.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # shell completion parses partial lines: never refuse there
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))  # type: ignore[attr-defined]
            seen: set[str | None] = set()
            for param in order:
                if not isinstance(param, click.Option) or param.multiple or param.count or param.is_flag:
                    continue
                if param.name in seen:
                    name = max(param.opts, key=len)
                    raise click.UsageError(f"{name} was given more than once; it takes one value", ctx=ctx)
                seen.add(param.name)
        return super().parse_args(ctx, args)  # type: ignore[misc]


class Command(_RefuseRepeatedValues, click.Command):
    """Every focalstack command's class (``@click.command(cls=Command)``): refuses repeated one-value options."""


class Group(_RefuseRepeatedValues, click.Group):
    """Every focalstack command group's class: its own options and its subcommands' refuse repeats too."""

    command_class = Command
    group_class = type  # subgroups made with @group.group() are Groups as well


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}  # every focalstack-data command's


# focalstack-data's commands: a file problem is one line and exit status 1. h5py reports damaged metadata as
# RuntimeError (or MemoryError for absurd shapes).
friendly_errors = one_line_errors(
    DatasetError, OSError, RuntimeError, MemoryError, prefixes={RuntimeError: "damaged file: ", MemoryError: "damaged file: "}
)
