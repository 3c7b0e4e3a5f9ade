"""Evaluation protocols, checked against values worked out by hand on small arrays: the DDFF-12 toolbox's
metrics and its Scharr bumpiness, DFV's clipping, AiFDepthNet's masks and its per-image averaging,
DDFF-12's disparity conversion; and evaluation of files that hold only some ground truth (the schema-v2
reader's interface, imitated on schema-v1 files), of several files of different sizes in one call,
and the published rows."""

import json
import math
from types import SimpleNamespace

import cv2
import h5py
import numpy as np
import pytest
import torch
from train_fixtures import single_torch_thread, synthetic_file, tiny_run, write_synthetic  # noqa: F401

from focalstack.dataset import FocalStackFile, FocalStackWriter, SceneRecord
from focalstack.train.data import Norm
from focalstack.train.eval_data import without_no_data
from focalstack.train.evaluate import evaluate, evaluate_model
from focalstack.train.metrics import aifdepthnet_metrics, scharr, toolbox_bumpiness_map, toolbox_metrics
from focalstack.train.protocols import (
    AIFDEPTHNET,
    DDFF12,
    DDFF12_BF,
    DFV,
    FOCALSTACK,
    PROTOCOLS,
    disparity_from_depth,
    resolve_protocols,
    score_ddff12,
    score_dfv,
)

NORM = Norm()


# -- the DDFF-12 toolbox: Scharr derivatives and bumpiness ---------------------------------------------


def test_scharr_is_twice_the_derivative_inside_and_zero_on_the_border():
    x = np.tile(np.arange(8.0), (7, 1))  # f = x: columns 0..7
    dx = scharr(0.3 * x, 1)
    assert np.allclose(dx[1:-1, 1:-1], 0.6)  # (f(x+1) - f(x-1)) * (3 + 10 + 3) / 16
    assert not dx[[0, -1], :].any() and not dx[:, [0, -1]].any()  # scikit-image <= 0.16 zero the border
    assert not scharr(0.3 * x, 0).any()  # no change down the rows
    assert np.allclose(scharr(0.3 * x.T, 0)[1:-1, 1:-1], 0.6)


def test_scharr_matches_an_independent_convolution():
    img = np.random.default_rng(0).random((9, 11))
    h = np.array([[3, 10, 3], [0, 0, 0], [-3, -10, -3]]) / 16.0  # scikit-image's HSCHARR_WEIGHTS
    for axis, kernel in ((0, h), (1, h.T)):
        # convolution = correlation with the flipped kernel; BORDER_REFLECT is scipy.ndimage's 'reflect'
        ref = cv2.filter2D(img, cv2.CV_64F, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)
        ref[[0, -1], :] = 0
        ref[:, [0, -1]] = 0
        assert np.allclose(scharr(img, axis), ref, atol=1e-12)


def test_toolbox_bumpiness_of_a_parabola():
    # error c x^2 / 2: Scharr gives dx = 2 c x, dxx = 4 c; dy, dyy, dxy, dyx = 0 away from the border
    h, w, c = 7, 8, 0.001
    x = np.tile(np.arange(w, dtype=float), (h, 1))
    bump = toolbox_bumpiness_map(c * x**2 / 2)
    assert np.allclose(bump[2:-2, 1:-2], 4 * c)
    # row 1 sees the zeroed row 0 of dx: dxx = 13/16 * 4c, dxy = 2c * column
    assert bump[1, 1] == pytest.approx(c * math.hypot(3.25, 2.0))
    assert bump[1, 3] == pytest.approx(c * math.hypot(3.25, 6.0))
    assert not bump[[0, -1], :].any() and not bump[:, [0, -1]].any()
    assert np.allclose(toolbox_bumpiness_map(20 * c * x**2 / 2)[2:-2, 1:-2], 0.05)  # 0.08 clipped at 0.05
    # the metric: 100 x the mean over pixels with ground truth > 0 (here only those where the map is 4c)
    target = np.zeros((h, w))
    target[2:-2, 1:-2] = 1.0
    pred = target + c * x**2 / 2  # the error is the parabola everywhere, ignored pixels included
    assert toolbox_metrics(pred, target)["bump"] == pytest.approx(100 * 4 * c)
    assert toolbox_metrics(target + 20 * c * x**2 / 2, target)["bump"] == pytest.approx(100 * 0.05)


def test_toolbox_bumpiness_ignores_a_tilted_plane_inside():
    yy, xx = np.mgrid[0:9, 0:10].astype(float)
    bump = toolbox_bumpiness_map(0.01 * xx - 0.02 * yy + 0.3)
    assert np.allclose(bump[2:-2, 2:-2], 0.0, atol=1e-15)


def test_toolbox_metrics_by_hand():
    target = np.array([[1.0, 2.0], [0.0, 4.0]])  # one pixel without ground truth
    pred = np.array([[1.5, 1.0], [7.0, 4.0]])  # errors 0.5, -1, 0 (the 7 is ignored)
    m = toolbox_metrics(pred, target, badpix=0.07)
    assert m["mse"] == pytest.approx((0.25 + 1) / 3)
    assert m["rms"] == pytest.approx(math.sqrt(1.25 / 3))
    assert m["logrms"] == pytest.approx(math.sqrt((math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3))
    assert m["absrel"] == pytest.approx((0.5 + 0.5) / 3)
    assert m["sqrel"] == pytest.approx((0.25 + 0.5) / 3)
    # ratios 1.5, 2, 1 against 1.25, 1.5625, 1.953: percent
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((100 / 3, 200 / 3, 200 / 3))
    assert m["badpix"] == pytest.approx(200 / 3)  # |0.5| and |1| > 0.07
    assert m["bump"] == 0.0  # a 2 x 2 image is all border
    assert "badpix" not in toolbox_metrics(pred, target)  # only when asked for
    assert toolbox_metrics(pred, np.zeros((2, 2))) is None


def test_toolbox_metrics_count_a_zero_prediction_as_a_pixel_but_not_in_the_log():
    target = np.array([[1.0, 2.0]])
    m = toolbox_metrics(np.array([[0.0, 2.0]]), target)
    assert m["mse"] == pytest.approx(0.5)
    assert m["logrms"] == 0.0  # ln 0 is masked out, as the toolbox's np.ma.log does
    assert m["delta1"] == pytest.approx(50.0)  # the zero is not within any threshold
    assert m["absrel"] == pytest.approx(0.5)


# -- DFV: clipping to [0, 1.5] m -------------------------------------------------------------------


def test_dfv_clips_both_to_one_and_a_half_metres_and_ignores_zero():
    gt = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]])  # 2 and 3 m count as 1.5 m; 0 is ignored
    pred = torch.tensor([[[1.2, 1.8], [5.0, -0.4]]])  # 1.8 -> 1.5 (exact), -0.4 -> 0
    s = score_dfv({"depth_m": pred}, {"depth_m": gt}, NORM)
    # errors 0.2, 0, -1.5 over N = 3
    assert s["mse"] == [pytest.approx((0.04 + 2.25) / 3)]
    assert s["absrel"] == [pytest.approx((0.2 / 1 + 1.5 / 1.5) / 3)]
    assert s["delta1"] == [pytest.approx(200 / 3)]  # 1.2 and 1.5 within 1.25; 0 never
    assert set(s) == {c.key for c in DFV.columns}
    assert score_dfv({"depth_m": pred}, {}, NORM) == {}


# -- AiFDepthNet: three masks ----------------------------------------------------------------------


def test_aifdepthnet_masks_by_hand():
    gt = np.array([[0.05, 0.5], [1.8, 2.5]])
    pred = np.array([[0.1, 0.7], [1.8, 2.0]])  # errors 0.05, 0.2, 0, -0.5
    m = aifdepthnet_metrics(pred, gt)
    assert (m["mae"], m["mse"]) == pytest.approx(((0.05 + 0.2 + 0.5) / 4, (0.0025 + 0.04 + 0.25) / 4))
    assert m["rmse"] == pytest.approx(math.sqrt(0.2925 / 4))
    assert (m["mae_2"], m["mse_2"]) == pytest.approx((0.25 / 3, 0.0425 / 3))  # 2.5 m left out
    # 0.1 <= gt <= 1.5: only the 0.5 m pixel
    assert (m["mae_fp"], m["mse_fp"], m["rmse_fp"]) == pytest.approx((0.2, 0.04, 0.2))
    assert m["logrms_fp"] == pytest.approx(math.log(1.4))
    assert (m["absrel_fp"], m["sqrel_fp"]) == pytest.approx((0.4, 0.08))
    assert set(m) == {c.key for c in AIFDEPTHNET.columns}


def test_aifdepthnet_mask_edges_and_an_empty_mask():
    m = aifdepthnet_metrics(np.array([[0.2, 1.0, 3.0]]), np.array([[0.1, 1.5, 2.0]]))
    assert m["mae_fp"] == pytest.approx((0.1 + 0.5) / 2)  # 0.1 and 1.5 are inside the focus range
    assert m["mae_2"] == pytest.approx((0.1 + 0.5 + 1.0) / 3)  # 2.0 is inside 0 < gt <= 2
    m = aifdepthnet_metrics(np.array([[1.0]]), np.array([[2.5]]))
    assert m["mae"] == pytest.approx(1.5) and m["mae_2"] is None and m["absrel_fp"] is None
    m = aifdepthnet_metrics(np.array([[-0.1]]), np.array([[1.0]]))  # a depth <= 0 in the log: 1 mm
    assert m["logrms_fp"] == pytest.approx(abs(math.log(1e-3)))


# -- DDFF-12: disparity ----------------------------------------------------------------------------


def test_ddff12_calibration_spans_the_datasets_disparity_range():
    # baseline = K2 / flens * 1e-3 m, f_sub = 521.4052 px
    assert DDFF12_BF == pytest.approx(1982.0250823695178 / 7317.020641763665 * 1e-3 * 521.4052, rel=1e-15)
    # slices focused from 0.5 m to 7 m: ddff-pytorch clips ground truth to [0.0202, 0.2825] px
    assert disparity_from_depth(np.array([0.5, 7.0])) == pytest.approx([0.2825, 0.0202], abs=5e-5)
    assert disparity_from_depth(np.array([0.0, -1.0])) == pytest.approx([DDFF12_BF / 1e-3] * 2)


def test_ddff12_scores_disparity_from_predicted_depth():
    gt_disp = torch.tensor([[[0.1, 0.2], [0.0, 0.25]]])  # one pixel without ground truth
    for offset, badpix in ((0.1, 100.0), (0.05, 0.0)):
        pred_depth = torch.where(gt_disp > 0, DDFF12_BF / (gt_disp + offset), torch.full_like(gt_disp, 2.0))
        s = score_ddff12({"depth_m": pred_depth.double()}, {"disparity_px": gt_disp.double()}, NORM)
        assert s["mse"] == [pytest.approx(offset**2)]
        assert s["rms"] == [pytest.approx(offset)]
        assert s["badpix"] == [pytest.approx(badpix)]  # threshold 0.07 px
        assert s["absrel"] == [pytest.approx(offset * (1 / 0.1 + 1 / 0.2 + 1 / 0.25) / 3)]
    assert score_ddff12({"depth_m": pred_depth}, {"depth_m": pred_depth}, NORM) == {}  # no disparity


def test_protocol_registry_and_names():
    assert list(PROTOCOLS) == ["focalstack", "dfv", "aifdepthnet", "ddff12"]
    assert [p.name for p in resolve_protocols(["ddff12", "dfv", "ddff12"])] == ["ddff12", "dfv"]
    with pytest.raises(ValueError, match="--protocol 'nope'"):
        resolve_protocols(["nope"])
    for p in PROTOCOLS.values():
        keys = [c.key for c in p.columns]
        assert len(keys) == len(set(keys)) and p.clipping and p.masks and p.averaging and p.follows
        assert p.headline in keys, p.name  # what reports compare models by is a column the protocol scores
        for row in p.published:
            assert set(row.values) <= set(keys) and row.source
    assert all(set(c.needs) == {"disparity"} for c in DDFF12.columns)


def test_without_no_data():
    v = without_no_data(np.array([1.0, -1.0, np.nan, np.inf, 2.0]), -1.0)
    assert v.dtype == np.float32 and v.tolist() == [1.0, 0.0, 0.0, 0.0, 2.0]
    assert without_no_data(np.array([0.0, 3.0]), None).tolist() == [0.0, 3.0]


# -- evaluation: a network of known output on files of known ground truth --------------------------


class ConstantDepth(torch.nn.Module):
    """Predicts ``depth_m`` everywhere (normalised as the networks' outputs are), zero defocus, and the
    mean of the stack as its AiF image when ``has_aif``."""

    def __init__(self, depth_m: float, has_aif: bool = False):
        super().__init__()
        self.depth_m, self.has_aif = depth_m, has_aif

    def forward(self, stack, focus):
        b, s, _, h, w = stack.shape
        out = {"depth": torch.full((b, h, w), self.depth_m / NORM.depth_scale), "defocus": torch.zeros(b, s, h, w)}
        if self.has_aif:
            out["aif"] = stack.mean(1)
        return out


def write_depths(path, depths, focus=(0.1, 0.3, 1.5)):
    """A schema-v1 file whose scene i has depth map ``depths[i]`` (metres); images, AiF, defocus zero."""
    h, w = depths[0].shape
    attrs = {
        "generator_version": "tests",
        "blender_version": "none",
        "created_utc": "2000-01-01T00:00:00Z",
        "preset": "hand-made",
        "config": {"hand_made": True},
        "defocus_model": "cycles",
    }
    with FocalStackWriter.create_or_resume(path, n_slices=len(focus), height=h, width=w, attrs=attrs) as wr:
        for i, d in enumerate(depths):
            wr.append(
                SceneRecord(
                    stack=np.full((len(focus), h, w, 3), 100, np.uint8),
                    aif=np.zeros((h, w, 3), np.uint8),
                    depth=np.asarray(d, np.float32),
                    defocus=np.zeros((len(focus), h, w), np.float32),
                    edges=np.zeros((h, w), np.uint8),
                    focus_distance=np.asarray(focus, np.float32),
                    f_number=1.0,
                    focal_length_mm=2.9,
                    sensor_width_mm=3.1,
                    seed=i,
                    scene=json.dumps({"hand_made": i}),
                )
            )
    return str(path)


def run_model(model, files, protocols, **kw):
    return evaluate_model(model, NORM, files, [PROTOCOLS[p] for p in protocols], settings=("All",), **kw)


def test_dfv_and_aifdepthnet_average_per_image(tmp_path):
    # three scenes of constant depth 1.0, 2.0 and 0.5 m; the network says 1.1 m everywhere
    f = write_depths(tmp_path / "three.h5", [np.full((6, 5), z) for z in (1.0, 2.0, 0.5)])
    result = run_model(ConstantDepth(1.1), [f], ["dfv", "aifdepthnet"], batch_size=2)
    dfv, aif = result.rows
    # dfv: ground truth 2.0 counts as 1.5: errors 0.1, -0.4, 0.6
    assert dfv["mse"] == pytest.approx((0.01 + 0.16 + 0.36) / 3)
    assert dfv["rms"] == pytest.approx((0.1 + 0.4 + 0.6) / 3)  # the mean of per-image RMS
    assert dfv["absrel"] == pytest.approx((0.1 + 0.4 / 1.5 + 0.6 / 0.5) / 3)
    assert dfv["bump"] == pytest.approx(0.0)
    assert dfv["delta1"] == pytest.approx(100 / 3)  # ratios 1.1, 1.36, 2.2
    assert dfv["delta2"] == pytest.approx(200 / 3)
    # aifdepthnet: no clipping; the 2.0 m scene is outside 0.1..1.5 m, so absrel_fp averages two images
    assert aif["mae"] == pytest.approx((0.1 + 0.9 + 0.6) / 3)
    assert aif["mae_2"] == pytest.approx((0.1 + 0.9 + 0.6) / 3)
    assert aif["absrel_fp"] == pytest.approx((0.1 + 1.2) / 2)  # AiFDepthNet's code would print 1.3
    assert aif["sqrel_fp"] == pytest.approx((0.01 / 1.0 + 0.36 / 0.5) / 2)
    assert any("aifdepthnet" in n and "absrel_fp" in n and "1 of 3 scenes" in n for n in result.notes)


def test_focalstack_protocol_by_hand(tmp_path):
    f = write_depths(tmp_path / "two.h5", [np.full((4, 4), 1.0), np.full((4, 4), 2.5)])
    row = run_model(ConstantDepth(2.0, has_aif=True), [f], ["focalstack"]).rows[0]
    assert row["depth_mse"] == pytest.approx((1.0 + 0.25) / 2)
    assert row["depth_rmse"] == pytest.approx((1.0 + 0.5) / 2)
    assert row["depth_absrel"] == pytest.approx((1.0 + 0.2) / 2)
    assert row["defocus_mse"] == pytest.approx(0.0) and row["aif_psnr"] is not None


# A schema-v1 file read the way schema v2's reader reads an import that lacks some ground truth: ``has``
# answers from the file's declaration, records hold None for what is absent, and ``ground_truth`` gives
# each entry's ``no_data`` value (see the DDFF-12 and FoD500 imports of dataset/).
class PartialFile(FocalStackFile):
    absent = frozenset({"aif", "defocus", "edges"})
    with_disparity = False  # a DDFF-12 import: disparity = baseline * f_sub / depth, 0 where depth is 0

    def has(self, name: str) -> bool:
        return self.with_disparity if name == "disparity" else name not in self.absent

    @property
    def ground_truth(self) -> dict:
        return {"depth": SimpleNamespace(no_data=0.0), "disparity": SimpleNamespace(no_data=0.0)}

    def __getitem__(self, index):
        rec = super().__getitem__(index)
        for name in self.absent:
            setattr(rec, name, None)
        if self.with_disparity:
            rec.disparity = self.read("disparity", index)
        return rec

    def read(self, name: str, index: int):
        if name == "disparity" and self.with_disparity:
            depth = super().read("depth", index)
            return np.where(depth > 0, DDFF12_BF / np.maximum(depth, 1e-9), 0.0).astype(np.float32)
        if name in self.absent:
            raise AssertionError(f"{name!r} read from a file that does not hold it")
        return super().read(name, index)


class DDFF12Like(PartialFile):
    with_disparity = True


@pytest.fixture
def partial_files(monkeypatch):
    """Read files whose name starts with 'fod500' as FoD500 imports (no AiF, edges, defocus) and
    'ddff' as DDFF-12 imports (also disparity); others as they are."""

    def opener(path):
        name = str(path).rsplit("/", 1)[-1]
        cls = DDFF12Like if name.startswith("ddff") else PartialFile if name.startswith("fod500") else FocalStackFile
        return cls(path)

    monkeypatch.setattr("focalstack.train.data.FocalStackFile", opener)  # every reader of train/ opens files there


def test_missing_ground_truth_gives_none_and_one_note_per_file(tmp_path, partial_files):
    fod = write_depths(tmp_path / "fod500-test.h5", [np.full((5, 6), 0.6), np.full((5, 6), 1.2)])
    full = write_depths(tmp_path / "rendered.h5", [np.full((5, 6), 0.6)])
    result = evaluate_model(ConstantDepth(0.9, has_aif=True), NORM, [fod, full], [FOCALSTACK, DDFF12], settings=("All", "Random"))
    by = {(r["protocol"], r["file"], r["setting"]): r for r in result.rows}
    for setting in ("All", "Random"):
        r = by["focalstack", fod, setting]
        assert r["defocus_mse"] is None and r["aif_ssim"] is None and r["aif_psnr"] is None
        assert r["depth_mse"] == pytest.approx((0.09 + 0.09) / 2)
        assert by["focalstack", full, setting]["aif_psnr"] is not None
        assert by["focalstack", full, setting]["defocus_mse"] == pytest.approx(0.0)
        assert all(by["ddff12", f, setting][c.key] is None for f in (fod, full) for c in DDFF12.columns)
    notes = result.notes
    assert sum(fod in n and "no aif ground truth: focalstack aif_ssim, aif_psnr are '-'" in n for n in notes) == 1
    assert sum(fod in n and "no defocus ground truth: focalstack defocus_mse is '-'" in n for n in notes) == 1
    ddff_notes = [n for n in notes if "ddff12" in n]
    assert len(ddff_notes) == 2 and all("'disparity'" in n and "every ddff12 metric is '-'" in n for n in ddff_notes)
    assert not any(full in n and "focalstack" in n for n in notes)


def test_ddff12_on_a_ddff12_like_file_with_no_data_pixels(tmp_path, partial_files):
    depth = np.full((5, 7), 2.0)
    depth[0, :] = 0.0  # no ground truth in the first row (DDFF-12 disparity 0)
    f = write_depths(tmp_path / "ddff-val.h5", [depth, np.full((5, 7), 4.0)], focus=tuple(np.linspace(0.5, 7, 10)))
    result = run_model(ConstantDepth(2.5), [f], ["ddff12", "focalstack"])
    ddff, fs = result.rows
    # disparities BF/2 and BF/4 against BF/2.5 predicted, per stack, then the mean
    errors = [DDFF12_BF / 2.5 - DDFF12_BF / 2.0, DDFF12_BF / 2.5 - DDFF12_BF / 4.0]
    assert ddff["mse"] == pytest.approx(np.mean(np.square(errors)), rel=1e-5)
    assert ddff["rms"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert ddff["badpix"] == pytest.approx(0.0)  # both errors are below 0.07 px
    # focalstack masks depth beyond the checkpoint's max_depth (3 m): the 4 m stack has no valid pixel
    assert fs["depth_mse"] == pytest.approx(0.25) and fs["aif_ssim"] is None and fs["defocus_mse"] is None
    assert any("focalstack depth_mse" in n and "1 of 2 scenes" in n for n in result.notes)


def test_evaluate_reads_files_of_different_sizes_and_slice_counts_in_one_call(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    files = [
        str(synthetic_file("proto-a", 2, 32, 51)),
        str(write_synthetic(tmp_path / "small.h5", 3, 24, focus=(0.1, 0.3, 1.5), seed=52)),
        str(write_synthetic(tmp_path / "seven.h5", 2, 40, focus=tuple(np.geomspace(0.1, 1.5, 7)), seed=53)),
    ]
    result = evaluate(
        ckpt, files, tmp_path / "eval", protocols=("focalstack", "dfv", "aifdepthnet"), batch_size=2, progress=False
    )
    rows, paths = result  # unpacks as before
    assert [(r["protocol"], r["file"], r["setting"]) for r in rows] == [
        (p, f, s) for f in files for s in ("All", "Random") for p in ("focalstack", "dfv", "aifdepthnet")
    ]
    assert all(r[c.key] is not None and np.isfinite(r[c.key]) for r in rows for c in PROTOCOLS[r["protocol"]].columns)
    assert [r["scenes"] for r in rows[::6]] == [2, 3, 2]
    doc = json.loads(paths["json"].read_text())
    assert set(doc["results"]) == {"focalstack", "dfv", "aifdepthnet"} and doc["notes"] == []
    assert doc["meta"]["protocols"]["dfv"]["units"]["mse"] == "m^2" and "published" not in doc


def test_compare_published_adds_marked_rows_under_the_same_columns(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    f = str(synthetic_file("proto-a", 2, 32, 51))
    result = evaluate(
        ckpt,
        [f],
        tmp_path / "eval",
        protocols=("aifdepthnet", "ddff12", "dfv"),
        settings=("All",),
        compare_published=True,
        progress=False,
    )
    text = result.report(compare_published=True)
    header = next(ln for ln in text.splitlines() if ln.startswith("| file |") and "mae_fp (m)" in ln).split(" | ")
    row = next(ln for ln in text.splitlines() if ln.startswith("| published: AiFDepthNet | [2] |") and "0.0549" in ln)
    cells = dict(zip(header, row.split(" | ")))
    assert (cells["mae_fp (m)"], cells["mse_fp (m^2)"], cells["rmse_fp (m)"]) == ("0.0549", "0.0127", "0.1043")
    assert cells["absrel_fp"] == "0.1115" and cells["mae (m)"] == "-"  # 11.15 / 100 images
    assert "[2] AiFDepthNet: AiFDepthNet (Wang et al., ICCV 2021) Table 5" in text
    assert "| published: DDFF | [1] | 0.00097 |" in text and "DDFF-12 test split" in text
    assert "(no published rows are recorded for `dfv`)" in text
    doc = json.loads(result.paths["json"].read_text())
    assert doc["published"]["ddff12"][2] == {
        "method": "AiFDepthNet",
        "source": DDFF12.published[2].source,
        "values": {"mse": 8.6e-4},
    }
    csv_text = result.paths["csv"].read_text()
    assert "aifdepthnet,published: DefocusNet,,,,,,mae_fp,m,0.0637," in csv_text
    assert "published: DefocusNet" in result.paths["markdown"].read_text()
    plain = evaluate(ckpt, [f], tmp_path / "plain", protocols=("aifdepthnet",), settings=("All",), progress=False)
    assert "published" not in plain.report() and "published" not in plain.paths["csv"].read_text()


def test_the_command_prints_dashes_and_each_note_once(tmp_path, partial_files):
    from click.testing import CliRunner

    from focalstack.train.cli import main

    fod = write_depths(tmp_path / "fod500-test.h5", [np.full((8, 8), 0.6), np.full((8, 8), 1.2)])
    args = [
        "evaluate",
        "-c",
        str(tiny_run("fod") / "best.pt"),
        "--data",
        fod,
        "-o",
        str(tmp_path / "e"),
        "-q",
        "--protocol",
        "focalstack",
        "--protocol",
        "ddff12",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    all_row = next(ln for ln in lines if ln.startswith(f"| {fod} | All |") and "(m" not in ln)
    assert all_row.endswith("| - | - | - |") and all_row.split(" | ")[2] != "-"  # depth yes; defocus, AiF no
    assert sum("no aif ground truth" in ln for ln in lines) == 1  # once per file, not per setting
    assert sum("every ddff12 metric is '-'" in ln for ln in lines) == 1
    doc = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert doc["results"]["ddff12"][fod]["Random"]["mse"] is None
    assert doc["results"]["focalstack"][fod]["All"]["aif_psnr"] is None


def test_an_unknown_protocol_is_one_line_naming_the_option(tmp_path):
    from click.testing import CliRunner

    from focalstack.train.cli import main

    result = CliRunner().invoke(main, ["evaluate", "-c", "x.pt", "--data", "y.h5", "--protocol", "dvf"])
    assert result.exit_code != 0 and result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "--protocol" in result.output.splitlines()[-1] and "dvf" in result.output.splitlines()[-1]
    with pytest.raises(ValueError, match="--protocol 'dvf'"):
        evaluate("x.pt", ["y.h5"], tmp_path, protocols=("dvf",))


# -- regions and stack subsets ---------------------------------------------------------------------


def test_flat_area_mask_keeps_large_plain_areas_and_drops_texture_and_its_surroundings():
    from focalstack.train.metrics import flat_area_mask

    img = np.full((1, 3, 40, 40), 0.5, np.float32)
    img[:, :, :, :20] = np.random.default_rng(0).uniform(0, 1, (1, 3, 40, 20))  # textured left half
    img[:, :, 30:, 30:] += np.linspace(0, 1 / 255, 10, dtype=np.float32)  # a gentle ramp: still flat
    mask = flat_area_mask(torch.from_numpy(img))[0].numpy()
    assert not mask[:, :20].any()  # texture
    # column 20 is plain but its central difference reaches into the texture; 4 px (half of 9 x 9) more
    assert not mask[:, 20:25].any()
    assert mask[:, 25:].all()  # plain, and the 1/255-per-10-px ramp is below 3 levels per pixel
    steep = img.copy()
    steep[:, :, 10, 30] = 0.5 + 7 / 255  # a one-pixel bump: its neighbours' central differences are 3.5 levels
    around = flat_area_mask(torch.from_numpy(steep))[0].numpy()
    assert not around[6:15, 26:35].any() and around[20:, 25:].all()


def test_the_flat_region_scores_depth_over_flat_pixels_only(tmp_path):
    # depth 1 m where the AiF is textured, 2 m where it is plain; the network says 2 m everywhere
    h, w = 16, 40
    depth = np.full((h, w), 2.0)
    depth[:, :20] = 1.0
    aif = np.full((h, w, 3), 128, np.uint8)
    aif[:, :20] = np.random.default_rng(1).integers(0, 256, (h, 20, 3))
    path = tmp_path / "flat.h5"
    write_depths(path, [depth])
    with h5py.File(path, "r+") as f:
        f["aif"][0] = aif
    result = run_model(ConstantDepth(2.0), [str(path)], ["focalstack"], regions=("all", "flat"))
    whole, flat = result.rows
    assert (whole["region"], flat["region"]) == ("all", "flat")
    assert whole["depth_mse"] == pytest.approx(0.5)  # half the pixels 1 m off
    assert flat["depth_mse"] == pytest.approx(0.0)  # the flat ones, right
    assert flat["defocus_mse"] is None and flat["aif_psnr"] is None  # a region scores depth alone


def test_a_scene_without_a_flat_area_is_noted_as_left_out_of_the_flat_region_only(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "two.h5"
    write_depths(path, [np.full((16, 40), 1.0), np.full((16, 40), 1.0)])
    with h5py.File(path, "r+") as f:
        f["aif"][0] = rng.integers(0, 256, (16, 40, 3))  # texture everywhere: no flat area
        f["aif"][1] = 128  # flat everywhere
    result = run_model(ConstantDepth(1.0), [str(path)], ["focalstack"], regions=("all", "flat"))
    assert [r["scenes"] for r in result.rows] == [2, 2]
    skipped = [n for n in result.notes if "scenes have no ground-truth pixel" in n]
    assert skipped and all("depth_mse" in n and "in the flat region: 1 of 2 scenes" in n for n in skipped), result.notes


def test_stack_subsets_choose_k_slices_the_same_in_both_orders():
    from focalstack.train.data import SourceInfo
    from focalstack.train.plan import plan_subsets

    src = SourceInfo("x.h5", 1.0, 6, 10, (8, 8))
    scenes = [np.arange(6)]
    ordered = [k for b in plan_subsets([src], scenes, 4, 3, "sorted", 0) for k in b]
    shuffled = [k for b in plan_subsets([src], scenes, 4, 3, "random", 0) for k in b]
    assert [len(k.slices) for k in ordered] == [3] * 6
    assert all(list(k.slices) == sorted(k.slices) for k in ordered)
    assert [sorted(a.slices) for a in ordered] == [sorted(b.slices) for b in shuffled]
    assert any(list(b.slices) != sorted(b.slices) for b in shuffled)
    assert len({k.slices for k in ordered}) > 1  # scenes get different choices
    too_big = plan_subsets([src], scenes, 4, 11, "sorted", 0)
    assert too_big == []


def test_subset_rows_say_their_stack_size_and_order(tmp_path):
    f = write_depths(tmp_path / "s.h5", [np.full((4, 4), 1.0)] * 3, focus=(0.1, 0.2, 0.4, 0.8, 1.5))
    result = run_model(ConstantDepth(1.5), [f], ["focalstack"], stack_sizes=(2, 5), orders=("sorted", "random"))
    labels = [(r["setting"], r["stack_size"], r["order"]) for r in result.rows]
    assert labels == [("All", None, None), ("All", 2, "sorted"), ("All", 2, "random"), ("All", 5, "sorted"), ("All", 5, "random")]
    assert all(r["depth_mse"] == pytest.approx(0.25) for r in result.rows)
    from focalstack.train.results import markdown_table

    table = markdown_table(result.rows)
    assert "None" not in table and "| All | - | - |" in table and "| All | 2 | sorted |" in table
    regions = markdown_table([{**result.rows[0], "region": "flat"}, {k: v for k, v in result.rows[0].items() if k != "region"}])
    assert "| All | flat |" in regions and "| All | all |" in regions  # no region: whole images
