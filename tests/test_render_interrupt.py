"""held_signals: Ctrl-C during a scene is acted on once the scene is written (no Blender needed)."""

from __future__ import annotations

import os
import signal

import pytest

from focalstack.render.interrupt import held_signals


def test_a_signal_inside_the_block_is_raised_when_it_ends_and_the_block_runs_to_its_end(capsys):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with held_signals("stopping after this scene"):
            os.kill(os.getpid(), signal.SIGINT)
            done.append("written")  # a signal handler runs between bytecodes: by now it has run
    assert done == ["written"]
    assert "stopping after this scene" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_is_held_only_where_python_handles_it():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []  # held
        assert seen == [signal.SIGTERM]  # then handed to the handler it replaced
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_without_a_signal_nothing_happens():
    with held_signals("unused"):
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_notice_that_cannot_be_written_does_not_break_the_scene(monkeypatch):
    """stderr a closed pipe (tee stopped by the same Ctrl-C): the notice's BrokenPipeError was raised wherever
    the scene was, inside the write of its record too."""
    import io

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    monkeypatch.setattr("sys.stderr", Closed())
    done = []
    with pytest.raises(KeyboardInterrupt):
        with held_signals("stopping"):
            os.kill(os.getpid(), signal.SIGINT)
            done.append("written")
    assert done == ["written"]
