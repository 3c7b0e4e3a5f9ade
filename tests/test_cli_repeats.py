"""An option that takes one value, given twice, is refused in one line (click would keep the last silently)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from focalstack.dataset.cli import main as data_main
from focalstack.dataset.cliutil import Command, Group
from focalstack.render.cli import main as render_main
from focalstack.train.cli import main as train_main


def _commands(command: click.Command, path: str = ""):
    yield path or command.name, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path or command.name} {name}")


@pytest.mark.parametrize("cli", [train_main, data_main, render_main], ids=["train", "data", "render"])
def test_every_command_refuses_repeats(cli):
    """A command added later without cls=Command would silently keep the last value again."""
    for path, command in _commands(cli):
        assert isinstance(command, Group if isinstance(command, click.Group) else Command), path


@pytest.mark.parametrize(
    "cli, args, option",
    [
        (train_main, ["evaluate", "-c", "a.pt", "--checkpoint", "b.pt", "--data", "x.h5"], "--checkpoint"),
        (train_main, ["evaluate", "--checkpoint=a.pt", "-cb.pt", "--data", "x.h5"], "--checkpoint"),
        (train_main, ["fit", "--data", "x.h5", "--lr", "1e-3", "--lr", "1e-4"], "--lr"),
        (data_main, ["preview", "x.h5", "-k", "0", "--scene", "1", "-o", "p.png"], "--scene"),
        (render_main, ["--scenes", "2", "--scenes=3"], "--scenes"),
    ],
)
def test_a_repeated_one_value_option_is_refused(cli, args, option):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == f"Error: {option} was given more than once; it takes one value"


def test_repeatable_options_and_flags_still_repeat(tmp_path):
    """--data is declared repeatable and -q is a flag: the command runs and fails on the missing checkpoint."""
    missing = tmp_path / "none.pt"
    result = CliRunner().invoke(train_main, ["evaluate", "-c", str(missing), "--data", "a.h5", "--data", "b.h5", "-q", "-q"])
    assert result.exit_code == 1, result.output
    assert "no such checkpoint file" in result.output
    assert "more than once" not in result.output
