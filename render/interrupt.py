"""Ctrl-C and SIGTERM during a render: SIGTERM taken as Ctrl-C, both held until the scene being rendered is written,
then acted on."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

# Signals whose Python handlers are held (SIGTERM has one where the command line installs it).
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_signals(notice: str | None = None):
    """Hold SIGINT (and SIGTERM, where Python handles it) until the block ends, then act on the first one.

    Blender runs Python inside a render (Cycles' add-on, and its render engine's ``__del__`` whenever Blender
    frees it) and swallows any exception raised there: a KeyboardInterrupt that landed in one was lost and the
    run went on to its end. Held, it is raised here instead, between two scenes. ``notice`` is written to
    stderr when the first signal arrives. A second signal ends the process at once, as a kill would (files
    resume from their last complete scene). Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, object]] = []
    previous = {sig: signal.getsignal(sig) for sig in HELD_SIGNALS}
    previous = {sig: handler for sig, handler in previous.items() if callable(handler)}  # not SIG_DFL / SIG_IGN

    def hold(signum, frame):
        if pending:
            os._exit(128 + signum)
        pending.append((signum, frame))
        if notice:
            try:
                sys.stderr.write(f"\n{notice}\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr a closed pipe (tee stopped by the same Ctrl-C): no notice
                pass

    for sig in previous:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        signum, frame = pending[0]
        previous[signum](signum, frame)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (how schedulers and timeouts stop a job) ends a render as Ctrl-C does: its cleanup runs (a file
    it created that holds no scene yet is removed) and it exits with 'Error: interrupted', instead of dying at
    once."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
