"""--workers must give the same file as one process, in every dataset, also after a kill.

The scenes use every per-scene array the schema has beyond the required ones (focus breathing and
camera shake fill the slice geometry, random stack sizes fill ``stack_size``), so a copy path that
drops one of them shows here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from render_fixtures import assert_files_equal, render_command

from focalstack.dataset.validate import validate_file

pytestmark = pytest.mark.blender


def command(preset, out, scenes, workers):
    return render_command(preset, out, scenes, "--workers", str(workers))


def test_workers_give_the_same_file_in_every_dataset(effects_preset, one_process, tmp_path):
    preset = effects_preset
    out = tmp_path / "two.h5"
    tmp = tmp_path / "tmp"  # Blender's session folders go under TMPDIR
    tmp.mkdir()
    subprocess.run(
        command(preset, out, 4, 2), check=True, capture_output=True, timeout=600, env={**os.environ, "TMPDIR": str(tmp)}
    )
    assert validate_file(out, full=True).valid
    assert_files_equal(one_process, out)
    # workers exit, not terminated: Blender removes its session folder (one was left per worker before)
    assert list(tmp.iterdir()) == []


def test_killed_worker_run_resumes_to_the_same_file(effects_preset, one_process, tmp_path):
    preset = effects_preset
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        command(preset, out, 4, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    parts = tmp_path / "killed.h5.parts"
    deadline = time.time() + 300
    # kill once a shard holds at least one complete scene, i.e. mid-way
    while time.time() < deadline and proc.poll() is None:
        done = 0
        for shard in parts.glob("shard-*.h5") if parts.is_dir() else []:
            try:
                with h5py.File(shard, "r", locking=False) as f:
                    done += int(f["complete"][:].sum())
            except (OSError, KeyError):
                pass
        if done >= 1:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes
    proc.wait()
    subprocess.run(command(preset, out, 4, 2), check=True, capture_output=True, timeout=600)
    assert validate_file(out, full=True).valid
    assert_files_equal(one_process, out)


def _complete_in_shards(parts) -> int:
    done = 0
    for shard in parts.glob("shard-*.h5") if parts.is_dir() else []:
        try:
            with h5py.File(shard, "r", locking=False) as f:
                done += int(f["complete"][:].sum())
        except (OSError, KeyError):
            pass
    return done


def _children(pid: int) -> list[int]:
    """The multiprocessing children of ``pid`` (its rendering workers)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                if b"spawn_main" in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def _rendering(pids: list[int]) -> list[int]:
    """Those of ``pids`` that hold a shard open (a worker between two tasks holds none)."""
    out = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            if any(".parts/shard-" in os.readlink(fd) for fd in fds):
                out.append(pid)
        except OSError:
            continue
    return out


def _run_caught_mid_way(preset, out: Path, stderr=subprocess.PIPE) -> subprocess.Popen:
    """A 4-scene run of ``preset`` into ``out`` in 2 workers, returned once a shard holds a complete scene (or the
    run ended, or 5 minutes passed: the caller checks)."""
    proc = subprocess.Popen(
        command(preset, out, 4, 2), stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and _complete_in_shards(out.with_name(out.name + ".parts")) < 1:
        time.sleep(0.05)
    return proc


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_a_worker_that_dies_ends_the_run_in_one_line_and_the_rerun_resumes(effects_preset, one_process, tmp_path):
    """A worker killed (SIGKILL, the out-of-memory killer) left the parent waiting for its task for ever, silent."""
    out = tmp_path / "died.h5"
    proc = _run_caught_mid_way(effects_preset, out)
    try:
        workers = _children(proc.pid)
        rendering = _rendering(workers)
        assert proc.poll() is None and len(workers) == 2 and rendering, "the run was not caught mid-way"
        os.kill(rendering[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [ln for ln in stderr.splitlines() if ln.startswith("Error")]
    assert proc.returncode == 1 and lines == [
        f"Error: {out}: a --workers process died (killed, or out of memory?); the scenes finished are kept in "
        f"{out}.parts: run the same command again to resume"
    ], stderr[-2000:]
    time.sleep(1)
    assert _alive(workers) == []  # the other worker ended too
    subprocess.run(command(effects_preset, out, 4, 2), check=True, capture_output=True, timeout=600)
    assert validate_file(out, full=True).valid
    assert_files_equal(one_process, out)


def test_a_stored_breathing_shaken_scene_renders_again_from_its_description(one_process):
    """docs/data.md's recipe: the description in the file, with render settings alone, gives the scene again."""
    from focalstack.dataset import FocalStackFile
    from focalstack.render import BlenderRenderer, RenderConfig, SceneDescription, make_record

    with FocalStackFile(one_process) as f:
        config = RenderConfig.from_dict(f.config)
        stored = f[2]
    desc = SceneDescription.from_json(stored.scene)
    assert len({s.lens_mm for s in desc.camera.slices}) > 1 and any(any(s.rotation) for s in desc.camera.slices)
    with BlenderRenderer(**config.render.to_dict()) as renderer:
        again = make_record(desc, renderer.render(desc), config)
    for name, value in stored.arrays().items():
        if name in ("stack", "aif"):
            assert np.abs(again.array(name).astype(int) - value.astype(int)).max() <= 1, name
        elif name == "edges":
            assert np.mean(again.array(name) != value) < 0.02
        elif name == "scene":
            assert again.scene == value
        else:
            np.testing.assert_array_equal(again.array(name), value, err_msg=name)


def test_sigterm_stops_a_workers_run_and_its_workers_and_it_resumes(effects_preset, one_process, tmp_path):
    """SIGTERM to the main process alone (how a scheduler stops a job): one line, every worker stopped."""
    out = tmp_path / "term.h5"
    proc = _run_caught_mid_way(effects_preset, out)
    try:
        workers = _children(proc.pid)
        assert proc.poll() is None and workers, "the run was not caught mid-way"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1 and stderr.strip().splitlines()[-1] == "Error: interrupted", stderr[-2000:]
    time.sleep(1)
    assert _alive(workers) == []
    subprocess.run(command(effects_preset, out, 4, 2), check=True, capture_output=True, timeout=600)
    assert_files_equal(one_process, out)


def test_workers_end_with_a_main_process_that_is_killed(effects_preset, tmp_path):
    """SIGKILL of the main process alone left its workers (and a manager process) running for ever, holding the
    shards open and the terminal's pipes."""
    out = tmp_path / "orphans.h5"
    proc = _run_caught_mid_way(effects_preset, out, stderr=subprocess.DEVNULL)
    try:
        workers = _children(proc.pid)
        assert proc.poll() is None and workers, "the run was not caught mid-way"
        proc.kill()
        proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline and _alive(workers):
            time.sleep(0.1)
        assert _alive(workers) == []
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the session
        except ProcessLookupError:
            pass
