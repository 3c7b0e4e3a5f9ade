"""--ray: a local Ray instance renders the same file as one process, survives a killed task, and a killed
driver resumes. The driver is the only writer; tasks return records through Ray's object store."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest
from render_fixtures import assert_files_equal, render_command

from focalstack.dataset.validate import validate_file

pytestmark = [pytest.mark.blender, pytest.mark.slow]
ray = pytest.importorskip("ray")

RAY = ["--ray", "--threads", "1", "--ray-scenes-per-task", "2"]


def processes():
    """(pid, session id, command line) of every process we can see."""
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                sid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, IndexError, ValueError):
                continue
            yield int(p.name), sid, cmdline


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session: the driver, its local Ray instance and Ray's workers."""
    for pid, s, _ in processes():
        if s == sid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def complete_scenes(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["complete"][:].sum())
    except (OSError, KeyError):
        return 0


def test_local_ray_renders_the_file_one_process_renders(effects_preset, one_process, tmp_path):
    out = tmp_path / "ray.h5"
    done = subprocess.run(render_command(effects_preset, out, 4, *RAY), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert validate_file(out, full=True).valid
    assert_files_equal(one_process, out)


def test_a_task_killed_mid_range_is_retried_and_the_file_is_the_same(effects_preset, one_process, tmp_path):
    out = tmp_path / "retried.h5"
    one_task = ["--ray", "--threads", "2", "--ray-scenes-per-task", "4"]  # all four scenes in one task
    proc = subprocess.Popen(
        render_command(effects_preset, out, 4, *one_task),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    killed = None
    deadline = time.time() + 300
    try:
        while killed is None and time.time() < deadline and proc.poll() is None:
            tasks = [pid for pid, sid, cmd in processes() if sid == proc.pid and cmd.startswith("ray::render_scene_range")]
            if tasks:
                time.sleep(1.5)  # Blender is up and into the task's four scenes
                try:
                    os.kill(tasks[0], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed = complete_scenes(out)  # the driver has written none of the task's scenes yet
            time.sleep(0.05)
        assert killed == 0, "no task was caught mid-range"
        _, stderr = proc.communicate(timeout=900)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, stderr[-2000:]
    assert validate_file(out, full=True).valid
    assert_files_equal(one_process, out)


def test_a_killed_driver_resumes_to_the_same_file(effects_preset, one_process, tmp_path):
    out = tmp_path / "driver.h5"
    one_at_a_time = ["--ray", "--threads", "2", "--ray-scenes-per-task", "1"]  # scenes arrive one by one
    proc = subprocess.Popen(
        render_command(effects_preset, out, 4, *one_at_a_time),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    try:
        while complete_scenes(out) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None and 1 <= complete_scenes(out) < 4, "the run was not caught mid-way"
    finally:
        kill_session(proc.pid)
        proc.wait()
    done = subprocess.run(render_command(effects_preset, out, 4, *RAY), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after" in done.stderr
    assert_files_equal(one_process, out)


def test_a_task_no_node_can_take_is_refused_in_one_line_not_left_waiting(effects_preset, tmp_path):
    """--threads above the CPUs of this machine's Ray: the task was infeasible and the run waited at 0 % for ever."""
    out = tmp_path / "too-many.h5"
    cpus = os.cpu_count() or 1
    done = subprocess.run(
        render_command(effects_preset, out, 2, "--ray", "--threads", str(cpus + 1)), capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("Error")]
    assert done.returncode == 1 and lines == [
        f"Error: --threads {cpus + 1}: each task asks one node for {cpus + 1} CPUs, and this machine's Ray has {cpus} CPUs "
        "(ask for less)"
    ], done.stderr[-2000:]
    assert not out.exists()


def test_sigterm_stops_a_ray_render_as_ctrl_c_does(effects_preset, tmp_path):
    """ray.init replaced the command's SIGTERM handler: the driver exited 1 with no word."""
    out = tmp_path / "term.h5"
    proc = subprocess.Popen(
        # one task at a time (each takes every CPU), so that the run cannot finish before the signal
        render_command(effects_preset, out, 8, "--ray", "--threads", str(os.cpu_count() or 1), "--ray-scenes-per-task", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while complete_scenes(out) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        kill_session(proc.pid)
        proc.wait()
    assert proc.returncode == 1 and stderr.strip().splitlines()[-1] == "Error: interrupted", stderr[-2000:]
    assert 1 <= complete_scenes(out) < 8


class _FakeRay:
    def __init__(self, *nodes):
        self._nodes = list(nodes)

    def nodes(self):
        return self._nodes


def test_a_task_must_fit_one_node_cpus_and_gpus_together():
    """CPUs and GPUs were checked on separate nodes: a CPU node and a GPU node passed a task neither can take."""
    import warnings

    from focalstack.render.cluster import RaySettings, check_task_fits
    from focalstack.render.config import ConfigError

    cpu_node = {"Alive": True, "Resources": {"CPU": 8.0}}
    gpu_node = {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}
    dead_big = {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}
    head = {"Alive": True, "Resources": {"memory": 1e9}}  # a head node that takes no task
    ray_ = _FakeRay(cpu_node, gpu_node, dead_big, head)
    check_task_fits(ray_, RaySettings(threads=8), local=True)
    check_task_fits(ray_, RaySettings(threads=1, gpus=0.5), local=True)
    with pytest.raises(ConfigError, match=r"--threads 2 --ray-gpus-per-task 1: each task asks one node for 2 CPUs and 1 GPUs"):
        check_task_fits(ray_, RaySettings(threads=2, gpus=1.0), local=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_task_fits(ray_, RaySettings(threads=9), local=False)  # a cluster may still grow: warned
    assert len(caught) == 1 and "--threads 9: no node of the Ray cluster has that much now" in str(caught[0].message)
