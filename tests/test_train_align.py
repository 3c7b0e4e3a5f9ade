"""Aligning slices rendered with breathing/shake back into the reference view before training."""

import cv2
import numpy as np
import torch

from focalstack.train.data import FocalStackDataset, align_to_reference
from focalstack.train.plan import SampleKey

torch.set_num_threads(1)


def smooth_image(rng, size=64):
    img = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 3)


def breathing_and_shake(k):
    """A reference -> slice homography: magnification and a small rotation about the centre."""
    c = 31.5
    m, a = 1.0 + 0.02 * k, np.radians(1.5 * k)
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    rot_scale = np.array([[m * np.cos(a), -m * np.sin(a), 0], [m * np.sin(a), m * np.cos(a), 0], [0, 0, 1]])
    return np.linalg.inv(to_centre) @ rot_scale @ to_centre


def test_align_to_reference_undoes_the_stored_homography():
    rng = np.random.default_rng(0)
    ref = smooth_image(rng)
    hs = np.stack([breathing_and_shake(k) for k in range(3)]).astype(np.float32)
    # what a camera with geometry H sees: slice(H x) = ref(x)
    slices = np.stack([cv2.warpPerspective(ref, h.astype(np.float64), (64, 64)) for h in hs])
    aligned = align_to_reference(slices, hs)
    inner = (slice(10, -10), slice(10, -10))
    for k in range(1, 3):
        before = np.abs(slices[k][inner].astype(float) - ref[inner]).mean()
        after = np.abs(aligned[k][inner].astype(float) - ref[inner]).mean()
        assert after < 0.25 * before, (k, before, after)
    np.testing.assert_array_equal(aligned[0], slices[0])  # identity: untouched


def test_dataset_aligns_only_when_asked(tmp_path):
    from dataset_fixtures import make_attrs, make_config, make_record

    from focalstack.dataset import FocalStackWriter, SceneRecord

    path = tmp_path / "shaky.h5"
    rec = make_record(0, height=64, width=64)
    hs = np.stack([breathing_and_shake(k) for k in range(len(rec.focus_distance))]).astype(np.float32)
    rec = SceneRecord(**{**rec.__dict__, "slice_homography": hs})
    with FocalStackWriter.create_or_resume(
        path, n_slices=len(rec.focus_distance), height=64, width=64, attrs=make_attrs(make_config(width=64, height=64))
    ) as w:
        w.append(rec)
    key = SampleKey(file=0, scene=0, slices=tuple(range(len(hs))), crop=None, flip_h=False, flip_v=False)
    plain = FocalStackDataset([str(path)])[key]["stack"].numpy()
    aligned = FocalStackDataset([str(path)], align_slices=True)[key]["stack"].numpy()
    np.testing.assert_array_equal(plain[0], aligned[0])
    assert np.abs(plain[1].astype(int) - aligned[1].astype(int)).max() > 0
    expected = align_to_reference(rec.stack, hs).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(aligned, expected)
