"""focalstack files in other people's trainers: each layout's keys, shapes, normalisation and channel order,
crops and flips applied alike to every array, random subsets in focus order, seeded per epoch, absent
ground truth as zeros with a flag; and the ten-line example of docs/training.md trains a model that is not ours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from train_fixtures import single_torch_thread, synthetic_file  # noqa: F401

from focalstack.dataset import FocalStackFile
from focalstack.dataset.samples import IMAGENET_MEAN, IMAGENET_STD, SampleOptions, SceneSamples
from focalstack.train.peer_data import PeerDataset

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def scene(path, i=0):
    with FocalStackFile(path) as f:
        return f[i]


def test_focalstack_layout_is_the_scene_in_channels_first_rgb_with_masks():
    path = synthetic_file("peer-a", 3, 32, 7)
    rec = scene(path, 1)
    s = PeerDataset([path])[1]
    assert s["stack"].shape == (5, 3, 32, 32) and s["stack"].dtype == torch.float32
    np.testing.assert_allclose(s["stack"][2].permute(1, 2, 0).numpy(), rec.stack[2] / 255.0, atol=1e-7)  # RGB
    np.testing.assert_array_equal(s["focus_distance"].numpy(), rec.focus_distance)
    np.testing.assert_array_equal(s["depth"].numpy(), rec.depth)
    np.testing.assert_allclose(s["aif"].permute(1, 2, 0).numpy(), rec.aif / 255.0, atol=1e-7)
    np.testing.assert_allclose(s["defocus"].numpy(), rec.defocus)
    assert s["has_aif"] and s["has_defocus"] and bool(s["depth_valid"].all())


def test_dfv_layout_normalises_like_dfv_and_scales_depth_and_focus():
    path = synthetic_file("peer-a", 3, 32, 7)
    rec = scene(path)
    stack, depth, focus = PeerDataset([path], layout="dfv", scale=0.2)[0]
    assert stack.shape == (5, 3, 32, 32) and depth.shape == (1, 32, 32) and focus.shape == (5,)
    want = (rec.stack[0] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(stack[0].permute(1, 2, 0).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(depth[0].numpy(), rec.depth * 0.2, rtol=1e-6)
    np.testing.assert_allclose(focus.numpy(), rec.focus_distance * 0.2, rtol=1e-6)


def test_aifdepthnet_layout_puts_slices_on_the_third_axis_with_focus_positions():
    path = synthetic_file("peer-a", 3, 32, 7)
    rec = scene(path)
    s = PeerDataset([path], layout="aifdepthnet")[0]
    assert s["stack_rgb_img"].shape == (3, 5, 32, 32) and s["focus_position"].shape == (1, 5)
    np.testing.assert_allclose(s["stack_rgb_img"][:, 3].permute(1, 2, 0).numpy(), rec.stack[3] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(s["depth"][0].numpy(), rec.depth)
    assert s["AiF_img"].shape == (3, 32, 32)


def test_crops_flips_and_subsets_apply_alike_to_every_array_and_follow_the_seed():
    path = synthetic_file("peer-a", 3, 32, 7)
    rec = scene(path)
    opts = SampleOptions(stack_size=3, crop=(16, 20), flips=True)
    samples = SceneSamples([path], opts)
    seen = set()
    for seed in range(12):
        s = samples.sample(0, np.random.default_rng(seed))
        assert s["stack"].shape == (3, 3, 16, 20) and s["depth"].shape == (16, 20)
        focus = s["focus_distance"]
        assert list(focus) == sorted(focus)  # a subset keeps the focus order
        slices = [int(np.flatnonzero(rec.focus_distance == f)[0]) for f in focus]
        # find the window and flips in the full scene from the depth map, then check the stack and AiF agree
        found = False
        for fy in (False, True):
            for fx in (False, True):
                d = rec.depth[:: -1 if fy else 1, :: -1 if fx else 1]
                for y in range(32 - 16 + 1):
                    for x in range(32 - 20 + 1):
                        if np.array_equal(d[y : y + 16, x : x + 20], s["depth"]):
                            img = rec.stack[slices][:, :: -1 if fy else 1, :: -1 if fx else 1][:, y : y + 16, x : x + 20]
                            if np.allclose(s["stack"].transpose(0, 2, 3, 1), img / 255.0, atol=1e-7):
                                found = True
                                seen.add((fy, fx))
        assert found, seed
    assert len(seen) >= 3  # flips are drawn
    a = PeerDataset([path], stack_size=3, crop=(16, 16), flips=True, seed=4)
    b = PeerDataset([path], stack_size=3, crop=(16, 16), flips=True, seed=4)
    assert torch.equal(a[2]["stack"], b[2]["stack"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["stack"], b[2]["stack"])


def test_absent_ground_truth_is_zeros_with_its_flag(tmp_path):
    import shutil

    import h5py

    src = tmp_path / "no-aif.h5"
    shutil.copy(synthetic_file("peer-a", 3, 32, 7), src)
    with h5py.File(src, "r+") as f:
        import json

        declared = json.loads(f.attrs["ground_truth"])
        declared["aif"] = declared["edges"] = {"source": "absent"}
        f.attrs["ground_truth"] = json.dumps(declared)
        del f["aif"], f["edges"]
    s = PeerDataset([src])[0]
    assert not s["has_aif"] and float(s["aif"].abs().sum()) == 0.0 and s["has_defocus"]
    batch = next(iter(DataLoader(PeerDataset([src, synthetic_file("peer-a", 3, 32, 7)]), batch_size=6)))
    assert batch["has_aif"].tolist() == [False] * 3 + [True] * 3


def test_bad_options_are_one_line_errors():
    path = synthetic_file("peer-a", 3, 32, 7)
    with pytest.raises(ValueError, match="layout 'dff': expected one of focalstack, dfv, aifdepthnet"):
        PeerDataset([path], layout="dff")
    with pytest.raises(Exception, match="smaller than the crop"):
        PeerDataset([path], crop=(64, 64))
    with pytest.raises(Exception, match="fewer than stack_size 9"):
        PeerDataset([path], stack_size=9)


def test_the_readme_example_trains_a_model_that_is_not_ours(tmp_path, monkeypatch):
    text = DOC.read_text()
    block = re.search(r"<!-- peer-data-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/training.md lost its PeerDataset example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    import shutil

    shutil.copy(synthetic_file("peer-a", 3, 32, 7), tmp_path / "data" / "train.h5")
    scope: dict = {}
    exec(compile(code, "docs/training.md example", "exec"), scope)
    losses = scope["losses"]
    assert len(losses) >= 20 and np.mean(losses[-5:]) < np.mean(losses[:5])  # it learnt something


def test_a_file_with_shorter_stacks_gives_samples_of_one_shape(tmp_path):
    import dataset_fixtures as fx

    path = tmp_path / "short.h5"
    with fx.open_writer(path, height=16, width=16) as w:  # three slices per scene
        w.append(fx.make_record(0))
        rec = fx.make_record(1)
        rec.stack_size = 2  # the third slice repeats the second
        rec.stack[2] = rec.stack[1]
        rec.focus_distance[2] = rec.focus_distance[1]
        rec.defocus[2] = rec.defocus[1]
        w.append(rec)
    batch = next(iter(DataLoader(PeerDataset([path]), batch_size=2)))
    assert batch["stack"].shape == (2, 3, 3, 16, 16)
    assert torch.equal(batch["stack"][1, 2], batch["stack"][1, 1])
    sub = PeerDataset([path], stack_size=3, random_order=True)[1]
    assert sub["stack"].shape[0] == 3
