"""Training on files that hold only some ground truth (imported FoD500: no AiF image or edges, defocus
derived; DDFF-12: no camera, no defocus, no AiF), alone and mixed with generated files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop_fixtures import write_ddff12_file, write_fod500_folder
from train_fixtures import TINY, synthetic_file

from focalstack.dataset.ddff12 import import_ddff12
from focalstack.dataset.fod500 import import_fod500
from focalstack.train.data import inspect_source, to_model_inputs
from focalstack.train.losses import FocusLoss, LossWeights
from focalstack.train.trainer import TrainConfig, fit


@pytest.fixture(scope="module")
def fod500(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fs_6") / "fs_6"
    write_fod500_folder(folder, range(3), holes=40)
    out = folder.parent / "fod500.h5"
    import_fod500(folder, out)
    return out


@pytest.fixture(scope="module")
def ddff(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ddff") / "ddff-trainval.h5"
    write_ddff12_file(raw, n_train=3, n_val=1, size=(32, 48))
    out = raw.parent / "ddff-train.h5"
    import_ddff12(raw, out, split="train")
    return out


def train(tmp_path, data, arch="fod", **kw):
    cfg = TrainConfig(
        data=[str(d) for d in data],
        out=str(tmp_path / "run"),
        arch=arch,
        arch_kwargs=dict(TINY) if arch != "fod-depth" else {"width": TINY["width"]},
        epochs=1,
        batch_size=2,
        val_fraction=0.0,
        device="cpu",
        progress=False,
        tensorboard=False,
        **kw,
    )
    result = fit(cfg)
    return result, (tmp_path / "run" / "train.log").read_text()


def test_sources_say_which_ground_truth_they_hold(fod500, ddff):
    assert inspect_source(str(fod500)).ground_truth == {"depth", "defocus"}
    info = inspect_source(str(ddff))
    assert info.ground_truth == {"depth"} and info.camera["f_number"] is None
    assert inspect_source(str(synthetic_file("partial-full", 4, 32, 3))).ground_truth == {"depth", "defocus", "aif", "edges"}


def test_fod500_alone_trains_with_the_aif_terms_off_said_once(fod500, tmp_path):
    result, log = train(tmp_path, [fod500], crop=[32, 32])
    assert log.count("aif loss off: no training file holds AiF images (fod500.h5)") == 1
    assert log.count("edges loss off") == 1
    row = result.history[-1]
    assert "train_aif" not in row and "train_edges" not in row
    assert np.isfinite(float(row["train_defocus"])) and np.isfinite(float(row["train_depth"]))


def test_ddff12_trains_depth_alone(ddff, tmp_path):
    result, log = train(tmp_path, [ddff], arch="fod-depth", stack_size=5, norm={"max_depth": 7.0})
    assert "defocus loss off: no training file holds defocus maps (ddff-train.h5)" in log
    row = result.history[-1]
    assert "train_defocus" not in row and np.isfinite(float(row["train_depth"])) and float(row["train_depth"]) > 0


def test_a_mix_trains_each_term_on_the_scenes_that_hold_its_ground_truth(fod500, tmp_path):
    full = synthetic_file("partial-mix", 4, 256, 5)
    result, log = train(tmp_path, [fod500, f"{full}:0.5"], crop=[32, 32])
    assert "aif loss only on the scenes of files that hold AiF images (not fod500.h5)" in log
    assert np.isfinite(float(result.history[-1]["train_aif"]))


def test_masked_terms_leave_out_what_a_sample_lacks():
    """A batch of two: the second sample has no AiF image and no defocus maps; its defocus pixels, and
    its wrong stand-in AiF, must not move the loss."""
    b, s, h, w = 2, 3, 8, 8
    torch.manual_seed(0)
    batch = {
        "stack": torch.randint(0, 255, (b, s, 3, h, w), dtype=torch.uint8),
        "focus": torch.full((b, s), 0.3),
        "depth": torch.full((b, h, w), 1.0),
        "defocus": torch.rand(b, s, h, w),
        "aif": torch.randint(0, 255, (b, 3, h, w), dtype=torch.uint8),
        "edges": torch.zeros(b, h, w, dtype=torch.uint8),
        "has_defocus": torch.tensor([True, False]),
        "has_aif": torch.tensor([True, False]),
        "has_edges": torch.tensor([True, False]),
    }
    from focalstack.train.data import Norm

    _, targets = to_model_inputs(batch, Norm(), torch.device("cpu"))
    out = {
        "defocus": torch.rand(b, s, h, w),
        "depth": torch.rand(b, h, w),
        "aif": torch.rand(b, 3, h, w),
        "edges": torch.randn(b, h, w),
    }
    loss = FocusLoss(LossWeights(perceptual=0.0))
    _, terms = loss(out, targets)
    first = {k: v[:1] for k, v in out.items()}
    _, alone = loss(first, {k: v[:1] for k, v in targets.items()})
    for name in ("defocus", "aif", "edges"):
        assert terms[name] == pytest.approx(float(alone[name]), rel=1e-6), name
    # the second sample's stand-ins really would change it
    targets["aif_valid"][:] = True
    assert float(loss(out, targets)[1]["aif"]) != pytest.approx(float(alone["aif"]), rel=1e-3)
