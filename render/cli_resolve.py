"""focalstack-render command lines resolved to the configurations they would render, without rendering, many
in one process: for callers that run the command later and must refuse a bad value before anything runs
(experiment files, which train/ reads without importing render/).

    python -m focalstack.render.cli_resolve < lines.json

reads a JSON list of argument lists and prints a JSON list with, for each, {"config": {...}} (as
``RenderConfig.to_dict``) or {"error": "one line"}.
"""

from __future__ import annotations

import inspect
import json
import sys

import click

from focalstack.dataset.cliutil import one_line

from .cli import config_from_options, main
from .config import ConfigError

# main's own parameters: where and how to render, not what (the rest it hands to config_from_options)
RUN_OPTIONS = set(inspect.signature(main.callback).parameters) - {"config_options"}


def resolve(args: list[str]) -> dict:
    """{"config": ...} for what ``focalstack-render ARGS`` would render, parsed as the command parses it; or
    {"error": ...} naming the bad option or value."""
    try:
        ctx = main.make_context("focalstack-render", list(args))
        config = config_from_options(**{k: v for k, v in ctx.params.items() if k not in RUN_OPTIONS})
    except click.ClickException as exc:
        return {"error": exc.format_message()}
    except click.exceptions.Exit:  # --help, --version: nothing to render
        return {"error": "options that print and exit (--help, --version) render nothing"}
    except Exception as exc:  # noqa: BLE001 - a preset that cannot be read, say: that line's answer, not the batch's
        return {"error": str(exc) if isinstance(exc, ConfigError) else one_line(exc)}
    return {"config": config.to_dict()}


if __name__ == "__main__":
    lines = json.load(sys.stdin)
    json.dump([resolve([str(a) for a in args]) for args in lines], sys.stdout)
