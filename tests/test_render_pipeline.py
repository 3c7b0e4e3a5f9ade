"""Rendering whole datasets: valid files, resume after a killed run, workers, reproducibility."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from focalstack.dataset import FocalStackFile
from focalstack.dataset.validate import validate_file
from focalstack.render.sampling.sample import scene_seed

pytestmark = pytest.mark.blender

# Small and quick: 32 px, 2 samples, no denoiser.
FAST = ["--preset", "fod500", "--resolution", "32", "--samples", "2", "--no-denoise", "--seed", "3"]


def render_cli(*args, check=True):
    cmd = [sys.executable, "-m", "focalstack.render", *FAST, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=600)


def assert_same_scenes(a_path, b_path, n):
    with FocalStackFile(a_path) as a, FocalStackFile(b_path) as b:
        assert len(a) == len(b) == n
        np.testing.assert_array_equal(a.read_all("seed"), b.read_all("seed"))
        for i in range(n):
            sa, sb = a[i], b[i]
            assert sa.scene == sb.scene
            np.testing.assert_array_equal(sa.depth, sb.depth)
            np.testing.assert_array_equal(sa.defocus, sb.defocus)
            # Cycles' colour differs by ~1e-6 across processes: at most one 8-bit level.
            assert np.abs(sa.stack.astype(int) - sb.stack.astype(int)).max() <= 1
            assert np.abs(sa.aif.astype(int) - sb.aif.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Three scenes rendered in one uninterrupted run."""
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    render_cli("--scenes", "3", "--out", str(path))
    return path


def test_rendered_file_is_valid_and_complete(reference):
    report = validate_file(reference, full=True)
    assert report.valid, report.problems
    with FocalStackFile(reference) as f:
        assert len(f) == 3 and f.n_slices == 5 and f.image_size == (32, 32)
        scene = f[0]
        assert scene.depth.min() >= 0.1 - 1e-6 and scene.depth.max() <= 3.0 + 1e-6
        assert scene.edges.any() and scene.stack.std() > 5
        assert f.attrs["defocus_model"] == "cycles"
        assert f.config["seed"] == 3


def test_rerun_of_finished_file_renders_nothing(reference):
    result = render_cli("--scenes", "3", "--out", str(reference))
    assert "0 rendered now" in result.stdout
    with FocalStackFile(reference) as f:
        assert len(f) == 3


def test_killed_run_resumes_to_the_same_file(reference, tmp_path):
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "focalstack.render", *FAST, "--scenes", "3", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen = []

    def pump():  # tqdm's progress goes to stderr; watch it for the first finished scene
        for chunk in iter(lambda: proc.stderr.read(1), b""):
            seen.append(chunk)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + 300
    while b"1/3" not in b"".join(seen) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-way through scene 2
    proc.wait()
    with FocalStackFile(out) as f:
        assert 1 <= len(f) < 3
    result = render_cli("--scenes", "3", "--out", str(out))
    assert "resuming after" in result.stderr
    assert validate_file(out, full=True).valid
    assert_same_scenes(reference, out, 3)


def test_extending_a_file_appends_the_next_scenes(reference, tmp_path):
    out = tmp_path / "grow.h5"
    render_cli("--scenes", "1", "--out", str(out))
    render_cli("--scenes", "3", "--out", str(out))
    assert_same_scenes(reference, out, 3)


def test_workers_produce_the_same_file(reference, tmp_path):
    out = tmp_path / "workers.h5"
    render_cli("--scenes", "3", "--workers", "2", "--out", str(out))
    assert_same_scenes(reference, out, 3)
    assert not (tmp_path / "workers.h5.parts").exists()
    assert validate_file(out, full=True).valid


def test_stored_scene_description_renders_the_scene_again(reference):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.config import RenderConfig
    from focalstack.render.pipeline import make_record
    from focalstack.render.scene import SceneDescription

    with FocalStackFile(reference) as f:
        config = RenderConfig.from_dict(f.config)
        stored = f[1]
    desc = SceneDescription.from_json(stored.scene)
    with BlenderRenderer(**config.render.to_dict()) as r:
        again = make_record(desc, r.render(desc), config)
    np.testing.assert_array_equal(again.depth, stored.depth)
    np.testing.assert_array_equal(again.defocus, stored.defocus)
    assert np.abs(again.stack.astype(int) - stored.stack.astype(int)).max() <= 1
    assert np.abs(again.aif.astype(int) - stored.aif.astype(int)).max() <= 1


def test_plan_tasks_keeps_leftover_shards_and_splits_the_gaps():
    from focalstack.render.shards import plan_tasks

    # (start, stop, end): scenes up to end into the shard named start..stop
    assert plan_tasks(0, 10, 2, []) == [(0, 5, 5), (5, 10, 10)]
    assert plan_tasks(4, 10, 3, []) == [(4, 6, 6), (6, 8, 8), (8, 10, 10)]
    assert plan_tasks(10, 10, 2, []) == []
    # the shard keeps its range (it resumes after its 1 complete scene); the gap before it is split
    assert plan_tasks(0, 10, 2, [(5, 10, 1)]) == [(0, 2, 2), (2, 5, 5), (5, 10, 10)]
    # shards wholly merged already, or beyond the requested scenes, are not tasks
    assert plan_tasks(6, 8, 2, [(0, 6, 6), (6, 12, 0)]) == [(6, 12, 8)]
    # a rerun that asks for fewer scenes: the shard keeps its name and renders only up to them, and one that
    # holds them already is no task (its scenes wait to be merged), nor is the range it covers a gap
    assert plan_tasks(2, 4, 2, [(0, 3, 2), (3, 6, 1)]) == [(0, 3, 3)]
    assert plan_tasks(2, 5, 2, [(0, 3, 2), (3, 6, 1)]) == [(0, 3, 3), (3, 6, 5)]


def test_leftover_shards_of_a_killed_worker_run_are_resumed_and_merged(reference, tmp_path):
    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import open_writer, render_range
    from focalstack.render.shards import shard_folder, shard_path

    out = tmp_path / "salvage.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, samples=2, denoise=False, seed=3, scenes=3).validate()
    # A killed --workers run: the output exists empty, and the shard for scenes 1..2 holds scene 1 only.
    open_writer(config, out).close()
    shard_folder(out).mkdir()
    with open_writer(config, shard_path(out, 1, 3), 1) as shard:
        render_range(config, shard, 1, 2)
    render_cli("--scenes", "3", "--workers", "2", "--out", str(out))
    assert_same_scenes(reference, out, 3)
    assert not shard_folder(out).exists()


def test_a_rerun_that_asks_for_fewer_scenes_renders_only_what_is_missing_and_leaves_no_shard(reference, tmp_path):
    """A killed 6-scene --workers run rerun with --scenes 4 rendered scene 3 again into a new shard, merged the old
    shard's scene 4 after it without a word, counted wrong, and left the old shard behind for ever."""
    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import open_writer, render_range
    from focalstack.render.shards import shard_folder, shard_path

    out = tmp_path / "fewer.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, samples=2, denoise=False, seed=3, scenes=6).validate()
    shard_folder(out).mkdir()
    with open_writer(config, shard_path(out, 0, 3), 0) as shard:  # scene 0 of 0..2
        render_range(config, shard, 0, 1)
    with open_writer(config, shard_path(out, 3, 6), 3) as shard:  # scenes 3 and 4 of 3..5
        render_range(config, shard, 3, 5)
    done = render_cli("--scenes", "4", "--workers", "2", "--out", str(out))
    # scenes 1 and 2 rendered now; 0, 3 and 4 were rendered already (kept, as a file with more scenes keeps them)
    assert f"{out}: 5 scene(s), 2 rendered now" in done.stdout, done.stdout
    assert "resuming after 2 complete scene(s)" in done.stderr  # scene 0, and scene 3 waiting in its shard
    assert not shard_folder(out).exists()
    with FocalStackFile(out) as f:
        assert len(f) == 5
        np.testing.assert_array_equal(f.read_all("seed"), [scene_seed(3, i) for i in range(5)])
    with FocalStackFile(out) as f, FocalStackFile(reference) as ref:
        for i in range(3):
            np.testing.assert_array_equal(f[i].depth, ref[i].depth)
    again = render_cli("--scenes", "4", "--workers", "2", "--out", str(out))
    assert "0 rendered now" in again.stdout and "warning" not in again.stderr


def test_leftover_shards_of_other_settings_are_refused_before_anything_is_merged(tmp_path):
    """Shards an earlier run left (the output itself removed) were merged into a file of other settings without
    a check: a --preset test-wide-dof file held test-shape scenes, and validate passed it."""
    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import open_writer, render_range
    from focalstack.render.shards import shard_folder, shard_path

    out = tmp_path / "mixed.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, samples=3, denoise=False, seed=3, scenes=2).validate()
    shard_folder(out).mkdir()
    with open_writer(config, shard_path(out, 0, 2), 0) as shard:  # 3 samples; the command line renders 2
        render_range(config, shard, 0, 1)
    before = shard_path(out, 0, 2).read_bytes()
    for how in (["--workers", "2"], ["--workers", "1"]):
        done = render_cli("--scenes", "2", *how, "--out", str(out), check=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith(f"Error: {shard_path(out, 0, 2)}: exists with other settings: samples=3 (now 2)")
        assert "a shard that an earlier --workers run left" in lines[-1]
        assert not out.exists() and shard_path(out, 0, 2).read_bytes() == before


def test_a_file_of_another_sampler_is_not_resumed(reference, tmp_path):
    """Scenes of focalstack 0.1 (description format 1) or another sampler version are not drawn again by
    this one: extending such a file would mix two samplers in one dataset."""
    import json
    import shutil

    import h5py

    old = tmp_path / "old.h5"
    shutil.copy(reference, old)
    with h5py.File(old, "r+") as f:
        scene = json.loads(f["scene"][0])
        scene["info"]["sampler_version"] = 1
        f["scene"][0] = json.dumps(scene)
    before = old.read_bytes()
    done = render_cli("--scenes", "4", "--out", str(old), check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(old) in lines[0] and "sampler 1" in lines[0], done.stderr
    assert old.read_bytes() == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_a_render_between_two_renders_and_it_resumes(reference, tmp_path, sig):
    """Ctrl-C raised its KeyboardInterrupt inside Blender's Python callbacks during a render, where Blender
    swallowed it: the run went on to its last scene and exited 0. SIGTERM killed it without any cleanup."""
    out = tmp_path / "stopped.h5"
    cmd = [sys.executable, "-m", "focalstack.render", *FAST, "--scenes", "12", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen = []

    def pump():
        for chunk in iter(lambda: proc.stderr.read(1), b""):
            seen.append(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.time() + 300
    while b"1/12" not in b"".join(seen) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be stopped"
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 1
    reader.join(timeout=10)
    assert b"Error: interrupted" in b"".join(seen)
    with FocalStackFile(out) as f:
        assert 1 <= len(f) < 12
    assert validate_file(out, full=True).valid
    render_cli("--scenes", "3", "--out", str(out))  # resumes (or keeps) the first three: the reference's
    assert_same_scenes(reference, out, 3)


def test_a_shard_still_being_written_is_named_as_such_not_as_a_damaged_file(tmp_path):
    """A --workers run's main process SIGKILLed leaves its workers rendering into their shards; a rerun said the
    shard 'is not a readable HDF5 file' and advised removing the folder."""
    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import open_writer, render_range
    from focalstack.render.shards import shard_folder, shard_path

    out = tmp_path / "busy.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, samples=2, denoise=False, seed=3, scenes=2).validate()
    shard_folder(out).mkdir()
    shard = shard_path(out, 0, 2)
    with open_writer(config, shard, 0) as writer:
        render_range(config, writer, 0, 1)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); time.sleep(600)",
            str(shard),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        done = render_cli("--scenes", "2", "--workers", "2", "--out", str(out), check=False)
    finally:
        holder.kill()
        holder.wait()
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and lines[-1] == (
        f"Error: {shard}: locked by another process that has it open for writing (a render still running?): a worker "
        "of an earlier --workers run, whose main process was killed, may still be rendering into it; wait for it to "
        "end, or stop it"
    )
    assert not out.exists()


def test_a_task_that_fails_ends_the_run_at_once_with_its_own_error(tmp_path):
    """A scene's error in one --workers process waited for every other worker's whole range (hours) first."""
    from render_fixtures import failing_task

    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import RenderError
    from focalstack.render.shards import run_workers

    out = tmp_path / "fails.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, scenes=4)
    with pytest.raises(RenderError, match="^scene 0: the test's failure$"):
        run_workers(config, out, [(0, 2, 2), (2, 4, 4)], 2, None, task=failing_task)
    assert not out.with_suffix(".finished").exists()  # the other worker was stopped, not waited for


def test_a_shard_the_file_went_past_is_dropped_not_rendered_again(tmp_path):
    """A --ray run merges a --workers run's shard and renders on; the shard, now behind the file, was resumed by
    the next --workers run from its own end, rendering scenes the file holds already."""
    import dataset_fixtures as fx

    from focalstack.render.shards import existing_shards, merge_shards, plan_tasks, shard_path

    out = tmp_path / "ahead.h5"
    with fx.open_writer(out) as writer:
        for seed in range(4):
            writer.append(fx.make_record(seed))
        behind = shard_path(out, 2, 6)  # scene 2 of 2..5; the file holds 0..3
        behind.parent.mkdir()
        with fx.open_writer(behind) as shard:
            shard.append(fx.make_record(2))
        merge_shards(writer, out, 6)
        assert len(writer) == 4
    assert existing_shards(out) == []
    assert plan_tasks(4, 6, 2, []) == [(4, 5, 5), (5, 6, 6)]  # not (2, 6, 6), which renders scene 3 again


def test_each_worker_process_sees_one_gpu_of_the_list(tmp_path):
    from render_fixtures import gpu_task

    from focalstack.render.config import load_preset
    from focalstack.render.shards import run_workers

    out = tmp_path / "gpus.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, scenes=4)
    run_workers(config, out, [(0, 1, 1), (1, 2, 2), (2, 3, 3), (3, 4, 4)], 2, None, gpus=["7", "8"], task=gpu_task)
    seen = [tuple(p.read_text().split()) for p in sorted(tmp_path.glob("gpus.h5.*.gpu"))]
    assert len(seen) == 4 and all(cuda == hip for _, cuda, hip in seen)
    by_process = {pid: {cuda for p, cuda, _ in seen if p == pid} for pid, _, _ in seen}
    assert all(len(ids) == 1 for ids in by_process.values())  # a process keeps its GPU
    assert sorted(next(iter(ids)) for ids in by_process.values()) == ["7", "8"]  # two processes, one GPU each


@pytest.mark.parametrize("after", [0.0, 3.0])  # as soon as the workers exist (still starting), and while they render
def test_workers_end_with_a_main_process_killed_at_any_moment(tmp_path, after):
    """Workers read the main process's pid once started: a main process killed while they started left them (and
    their resource tracker) running for ever."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from render_fixtures import sleepy_task\n"
        "from focalstack.render.config import load_preset; from focalstack.render.shards import run_workers\n"
        "run_workers(load_preset('fod500'), sys.argv[2], [(0, 1, 1), (1, 2, 2)], 2, None, task=sleepy_task)\n"
    )
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", script, tests, str(tmp_path / "x.h5")], start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(_session_processes(proc.pid)) < 3:  # the main process and a worker
        time.sleep(0.01)
    time.sleep(after)
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and _session_processes(proc.pid):
        time.sleep(0.2)
    left = _session_processes(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _session_processes(sid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    return out
