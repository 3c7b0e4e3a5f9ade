"""Random stack sizes: fewer slices per scene than the file holds, padded by repeating the last one."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from focalstack.dataset import FocalStackFile, validate_file
from focalstack.render.config import ConfigError, load_preset
from focalstack.render.sampling import sample_scene, scene_seed


def config_with(stack_size):
    return load_preset("fod500").with_overrides(scene={"stack_size": stack_size})


def test_stack_sizes_are_drawn_from_the_range_as_ordered_subsets():
    config = config_with([2, 4]).validate()
    sizes = set()
    for i in range(30):
        focus = sample_scene(config, scene_seed(0, i)).camera.focus_distances
        sizes.add(len(focus))
        assert set(focus) <= set(config.focus_distances)
        assert focus == sorted(focus, key=config.focus_distances.index)
    assert sizes == {2, 3, 4}


def test_default_keeps_every_slice():
    config = load_preset("fod500").validate()
    assert sample_scene(config, scene_seed(0, 0)).camera.focus_distances == config.focus_distances


def test_bad_stack_sizes_are_refused():
    with pytest.raises(ConfigError, match="stack_size"):
        config_with([0, 2]).validate()
    with pytest.raises(ConfigError, match="stack_size"):
        config_with("some").validate()
    with pytest.raises(ValueError, match="at most the camera's 5"):
        sample_scene(config_with([2, 6]).validate(), 1)


@pytest.mark.blender
def test_short_stacks_are_stored_padded_with_their_size(tmp_path):
    preset = tmp_path / "short.toml"
    builtin = resources.files("focalstack.render") / "presets" / "fod500.toml"
    text = builtin.read_text(encoding="utf-8").replace('stack_size = "all"', "stack_size = [1, 3]")
    preset.write_text(text)
    out = tmp_path / "short.h5"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "focalstack.render",
            "--preset",
            str(preset),
            "--resolution",
            "32",
            "--samples",
            "2",
            "--no-denoise",
            "--scenes",
            "3",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert validate_file(out, full=True).valid
    with FocalStackFile(out) as f:
        assert f.n_slices == 5
        for i in range(3):
            scene = f[i]
            n = scene.stack_size
            slices = scene.description["camera"]["slices"]
            assert 1 <= n <= 3 and len(slices) == n
            np.testing.assert_allclose(scene.focus_distance[:n], [s["focus_distance"] for s in slices], rtol=1e-6)
            for k in range(n, 5):
                np.testing.assert_array_equal(scene.stack[k], scene.stack[n - 1])
                np.testing.assert_array_equal(scene.defocus[k], scene.defocus[n - 1])
                assert scene.focus_distance[k] == scene.focus_distance[n - 1]


@pytest.mark.parametrize("stored", [-3, 0, 9])
def test_a_stored_stack_size_outside_the_slices_is_a_problem_and_refused_by_training_readers(tmp_path, stored):
    """It was clamped to 1..S: -3 and 0 scored one-slice stacks without a word, and validation passed them."""
    import h5py
    from train_fixtures import write_synthetic

    from focalstack.dataset import DatasetError
    from focalstack.train.data import inspect_source

    path = write_synthetic(tmp_path / "x.h5", 3, 32)
    with h5py.File(path, "r+") as f:
        f["stack_size"][1] = stored
    report = validate_file(path)
    assert not report.valid and any(f"scene 1: 'stack_size' is {stored}, expected 1 to 5" in p for p in report.problems)
    with pytest.raises(DatasetError, match=rf"x.h5: scene 1 has stack_size {stored}, expected 1 to 5"):
        inspect_source(str(path))
