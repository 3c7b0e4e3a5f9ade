"""Shared pytest setup: tests marked 'blender' are skipped where bpy is not installed."""

import importlib.util

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_BPY:
        return
    skip = pytest.mark.skip(reason="needs bpy (pip install 'focalstack[render]')")
    for item in items:
        if "blender" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def effects_preset(tmp_path_factory):
    """A preset file whose scenes fill every optional dataset (render_fixtures.EFFECTS_PRESET)."""
    from render_fixtures import EFFECTS_PRESET

    path = tmp_path_factory.mktemp("preset") / "effects-test.toml"
    path.write_text(EFFECTS_PRESET)
    return path


@pytest.fixture(scope="session")
def one_process(effects_preset, tmp_path_factory):
    """Four scenes of the effects preset rendered by one process: the reference for workers and Ray."""
    import subprocess

    import h5py
    import numpy as np
    from render_fixtures import render_command

    out = tmp_path_factory.mktemp("one") / "one.h5"
    subprocess.run(render_command(effects_preset, out, 4, "--workers", "1"), check=True, capture_output=True, timeout=600)
    with h5py.File(out) as f:  # the scenes really use what the tests are about
        assert not np.allclose(f["slice_homography"][:], np.eye(3))
        assert not np.allclose(f["slice_pose"][:], np.eye(4))
        assert (f["stack_size"][:] < 5).all()
        assert len(set(f["slice_focal_length_mm"][:].ravel().tolist())) > 1
    return out
