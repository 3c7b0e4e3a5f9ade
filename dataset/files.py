"""Replacing a file atomically: write beside it under a temporary name, then rename into place.

A crash or a refused write never leaves a half-written file where the caller asked for output; the
previous file, if any, stays until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    The new file gets the permissions a plain ``open()`` would give (mkstemp makes it private). With
    ``fsync`` its contents are flushed to disk before the rename (checkpoints: a power cut keeps one).
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, f"cannot write {path} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, default_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Create the folder ``path`` (and missing parents) for a command's output. If the block raises, the
    folders this call created are removed again where they are still empty: a command refused after
    making its ``--out`` leaves no empty folder that looks like a result."""
    path = Path(path)
    created = []  # deepest first
    missing = path.absolute()
    while not missing.exists() and missing != missing.parent:
        created.append(missing)
        missing = missing.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):  # not empty (the command wrote something), or gone
                folder.rmdir()
        raise


def default_mode(base: int) -> int:
    """The permissions a plain open() (0o666) or mkdir() (0o777) gives under this process's umask; mkstemp
    and mkdtemp make private files and folders, which the replaced path must not become."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (the same path once resolved, or the same inode: a link)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_input(out: str | os.PathLike, inputs, option: str = "-o") -> None:
    """DatasetError when ``out`` is one of ``inputs``: a command must never replace what it reads."""
    from .schema import DatasetError

    for source in inputs:
        if same_file(out, source):
            raise DatasetError(f"{option} {out}: is also an input ({source}); choose another output")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the one-writer lock of ``path`` (a file ``PATH.lock`` beside it, locked with ``flock``) while the
    block runs. Another holder is refused at once with a DatasetError naming its pid and host. The kernel
    drops the lock of a killed process, so a lock file left behind by a crash never blocks the next run."""
    import fcntl
    import socket
    from datetime import datetime, timezone

    from .schema import DatasetError

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise DatasetError(
                f"{path}: another process is writing it ({holder}); wait for it to finish or stop it (the lock is {lock})"
            ) from None
        try:  # the file we locked must still be the one at that name: a holder unlinks it when done
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file its holder had just removed: take the lock again, on the new one
    try:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {stamp}".encode(), 0)
        try:
            yield lock
        finally:
            lock.unlink(missing_ok=True)  # ours while we hold it; a waiter that opened it re-checks (above)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
