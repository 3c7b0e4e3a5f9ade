"""focalstack-data import fod500 / ddff12 and export fod500: miniature inputs in the documented layouts,
every array compared with what was written, bad input refused with one line, nothing half-written."""

from __future__ import annotations

import json
import os
import stat

import cv2
import dataset_fixtures as fx
import h5py
import interop_fixtures as ix
import numpy as np
import pytest
from click.testing import CliRunner

from focalstack.dataset import FocalStackFile, ddff12, fod500
from focalstack.dataset.cli import main
from focalstack.dataset.groundtruth import canny_edges, stored_defocus_maps
from focalstack.dataset.schema import DatasetError
from focalstack.dataset.validate import validate_file

FOCUS = np.float32([0.1, 0.15, 0.3, 0.7, 1.5])


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- import fod500 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fod_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fod") / "fs_6"
    return folder, ix.write_fod500_folder(folder, [0, 1, 399, 400, 401], holes=7)


@pytest.mark.parametrize("split, want", [("train", [0, 1, 399]), ("test", [400, 401]), ("all", [0, 1, 399, 400, 401])])
def test_import_fod500_gives_back_every_array(fod_folder, tmp_path, split, want):
    folder, written = fod_folder
    out = tmp_path / "fod.h5"
    result = run("import", "fod500", folder, "-o", out, "--split", split)
    assert result.exit_code == 0, result.output
    assert f"{len(want)} scene(s) imported" in result.output
    with FocalStackFile(out) as f:
        assert len(f) == len(want) and f.n_slices == 5 and f.image_size == (256, 256)
        assert [json.loads(s)["index"] for s in f.read_all("scene")] == want
        gt = f.ground_truth
        assert not gt["aif"].present and not gt["edges"].present and not gt["disparity"].present
        assert gt["depth"].source == "imported" and gt["depth"].no_data == 0.0
        assert gt["defocus"].recomputed and gt["defocus"].method == "thin_lens"
        assert f.attrs["defocus_model"] == "thin_lens" and f.attrs["source"] == "FoD500"
        for k, i in enumerate(want):
            rec = f[k]
            np.testing.assert_array_equal(rec.stack, written[i]["stack"])
            np.testing.assert_array_equal(rec.depth, written[i]["depth"].astype(np.float32))
            assert rec.depth.dtype == np.float32 and (rec.depth == 0).sum() == 7
            np.testing.assert_array_equal(rec.focus_distance, FOCUS)
            assert (rec.f_number, rec.focal_length_mm, rec.sensor_width_mm) == (1.0, np.float32(2.9), np.float32(3.1))
            assert rec.aif is None and rec.edges is None and rec.seed == -1
            want_defocus = stored_defocus_maps(rec.depth, FOCUS, 1.0, 2.9, 3.1, "thin_lens", no_data=0.0)
            assert np.array_equal(rec.defocus, want_defocus, equal_nan=True)
            assert np.isnan(rec.defocus[:, rec.depth == 0]).all() and np.isfinite(rec.defocus[:, rec.depth > 0]).all()
    report = validate_file(out, full=True)
    assert report.valid, report.problems


def test_import_fod500_defocus_is_defocus_nets_thin_lens(fod_folder, tmp_path):
    """|c| in pixels is defocus-net's |d - s| / d * f^2 / (N (s - f)) on the sensor over the pixel pitch."""
    folder, _ = fod_folder
    run("import", "fod500", folder, "-o", tmp_path / "fod.h5", "--split", "test")
    with FocalStackFile(tmp_path / "fod.h5") as f:
        rec = f[0]
    d, f_m, n, pitch = rec.depth.astype(np.float64), 2.9e-3, 1.0, 3.1e-3 / 256
    ok = d > 0
    for k, s in enumerate(FOCUS.astype(np.float64)):
        sensor = np.abs(d[ok] - s) / d[ok] * f_m**2 / (n * (s - f_m))
        np.testing.assert_allclose(np.abs(rec.defocus[k][ok]), sensor / pitch, rtol=1e-5)


def test_import_fod500_with_aif_derives_edges(tmp_path):
    folder = tmp_path / "dered"
    written = ix.write_fod500_folder(folder, [5, 6], aif=True)
    result = run("import", "fod500", folder, "-o", tmp_path / "a.h5")
    assert result.exit_code == 0 and "with AiF images" in result.output, result.output
    with FocalStackFile(tmp_path / "a.h5") as f:
        assert f.ground_truth["aif"].source == "imported" and f.ground_truth["edges"].method == "canny"
        for k, i in enumerate((5, 6)):
            np.testing.assert_array_equal(f[k].aif, written[i]["aif"])
            np.testing.assert_array_equal(f[k].edges, canny_edges(written[i]["aif"]))
    assert validate_file(tmp_path / "a.h5", full=True).valid


def _break(folder, how: str):
    if how == "missing slice":
        (folder / "000001_03All.tif").unlink()
        return "000001_03All.tif: missing"
    if how == "no depth":
        (folder / "000399Dpt.exr").unlink()
        return "000399Dpt.exr: missing (scene 399 has no depth)"
    if how == "no R channel":
        ix.write_exr(folder / "000001Dpt.exr", {"Y": np.ones((256, 256), np.float16)})
        return "000001Dpt.exr: no channel R (it has Y)"
    if how == "small slice":
        ix.write_tif(folder / "000000_02All.tif", np.zeros((128, 128, 3), np.uint8))
        return "000000_02All.tif: 128 x 128 px, expected FoD500's 256 x 256"
    if how == "small depth":
        d = np.ones((200, 256), np.float16)
        ix.write_exr(folder / "000400Dpt.exr", {"R": d, "G": d, "B": d})
        return "000400Dpt.exr: channel R is float16 of 256 x 200 px"
    if how == "all-zero depth":
        d = np.zeros((256, 256), np.float16)
        ix.write_exr(folder / "000001Dpt.exr", {"R": d, "G": d, "B": d})
        return "000001Dpt.exr: every depth value is 0 or unusable"
    if how == "not an exr":
        (folder / "000001Dpt.exr").write_bytes(b"no exr here")
        return "000001Dpt.exr: not a readable EXR file"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["missing slice", "no depth", "no R channel", "small slice", "small depth", "all-zero depth", "not an exr"]
)
def test_import_fod500_refuses_bad_input_naming_the_file(tmp_path, how):
    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0, 1, 399, 400])
    out = tmp_path / "out.h5"
    fx.write_file(out, 1)  # a good output from before: must survive the failed import untouched
    before = out.read_bytes()
    needle = _break(folder, how)
    assert_one_line_error(run("import", "fod500", folder, "-o", out, "--force"), needle, str(folder))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fs", "out.h5"]  # no temporary file left
    fresh = tmp_path / "fresh.h5"
    assert_one_line_error(run("import", "fod500", folder, "-o", fresh), needle)
    assert not fresh.exists()

    result = run("import", "fod500", folder, "-o", fresh, "--skip-bad")
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and needle in skipped[0]
    assert "3 scene(s) imported" in result.output and "1 skipped" in result.output
    assert validate_file(fresh, full=True).valid


def test_import_fod500_refuses_existing_output_and_empty_folders(tmp_path, fod_folder):
    out = fx.write_file(tmp_path / "have.h5", 1)
    assert_one_line_error(run("import", "fod500", fod_folder[0], "-o", out), "exists", "--force")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("import", "fod500", tmp_path / "empty", "-o", tmp_path / "x.h5"), "no FoD500 scenes")
    assert_one_line_error(run("import", "fod500", tmp_path / "nowhere", "-o", tmp_path / "x.h5"), "not a folder")
    assert not (tmp_path / "x.h5").exists()


def test_import_fod500_refuses_odd_names(tmp_path):
    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0])
    ix.write_tif(folder / "cover_All.tif", np.zeros((256, 256, 3), np.uint8))
    assert_one_line_error(
        run("import", "fod500", folder, "-o", tmp_path / "x.h5"), "cover_All.tif", "does not follow FoD500's pattern"
    )


# -- export fod500 ---------------------------------------------------------------------------------------
def fod500_like_file(path, n=2):
    """A generated file with FoD500's camera at 256 px, depth within 0.1 to 3 m."""
    config = fx.make_config(width=256, height=256, focus_distances=FOCUS.tolist())
    with fx.open_writer(path, n_slices=5, height=256, width=256, attrs=fx.make_attrs(config)) as w:
        for seed in range(n):
            rec = fx.make_record(seed, height=256, width=256, focus_distances=FOCUS)
            rec.stack_size = 4 if seed == 1 else None
            w.append(rec)
    return path


def test_export_then_import_gives_back_stack_depth_and_focus(tmp_path):
    src = fod500_like_file(tmp_path / "gen.h5")
    result = run("export", "fod500", src, "-o", tmp_path / "fs", "--start", 17)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and "numbered 000017 to 000018" in result.output
    names = {p.name for p in (tmp_path / "fs").iterdir()}
    # the flat folder holds FoD500's own files (and the description); the extras are in extra/
    assert names == {f"0000{i}_{j:02d}All.tif" for i in (17, 18) for j in range(5)} | {
        "000017Dpt.exr",
        "000018Dpt.exr",
        "focalstack.json",
        "extra",
    }
    assert {"000018Aif.tif", "000017_02Def.exr", "000018Extra.npz"} <= {p.name for p in (tmp_path / "fs/extra").iterdir()}
    assert run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "back.h5").exit_code == 0
    with FocalStackFile(src) as a, FocalStackFile(tmp_path / "back.h5") as b:
        assert len(a) == len(b) == 2
        for i in range(2):
            x, y = a[i], b[i]
            np.testing.assert_array_equal(y.stack, x.stack)
            np.testing.assert_array_equal(y.aif, x.aif)  # the Aif.tif extra, as DEReD names it
            np.testing.assert_array_equal(y.depth, x.depth.astype(np.float16).astype(np.float32))
            np.testing.assert_array_equal(y.focus_distance, x.focus_distance)
            assert json.loads(y.scene)["index"] == 17 + i
            # the same camera model: the thin lens's maps differed from a Cycles render's by up to 3 %
            np.testing.assert_allclose(y.defocus, x.defocus, rtol=2e-3, atol=1e-3)
        assert b.attrs["defocus_model"] == a.attrs["defocus_model"] == "cycles"


def test_an_export_of_another_camera_is_refused_on_import_and_one_beyond_half_floats_on_export(tmp_path):
    """Imported as FoD500, an export of another camera took FoD500's camera and focus distances without a
    word (its derived defocus wrong); depth beyond 65504 m was written to the half-float EXR as inf."""
    src = fod500_like_file(tmp_path / "gen.h5", 2)
    assert run("export", "fod500", src, "-o", tmp_path / "fs").exit_code == 0
    extra = tmp_path / "fs" / "extra" / "000001Extra.npz"
    arrays = dict(np.load(extra))
    arrays["f_number"] = np.float32(2.0)
    arrays["focus_distance"] = arrays["focus_distance"] * np.float32(2)
    np.savez_compressed(extra, **arrays)
    result = run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "back.h5")
    assert_one_line_error(result, "000001Extra.npz: scene 1 was exported with f_number 2; focus_distance 0.2, 0.3")
    assert not (tmp_path / "back.h5").exists()
    skipped = run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "back.h5", "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    with FocalStackFile(tmp_path / "back.h5") as f:
        assert len(f) == 1  # scene 0 has FoD500's camera

    with h5py.File(src, "r+") as f:
        depth = f["depth"][1]
        depth[0, :3] = 1e5
        f["depth"][1] = depth
    result = run("export", "fod500", src, "-o", tmp_path / "far")
    assert_one_line_error(result, "gen.h5: scene 1 has 3 depth value(s) up to 100000 m, beyond the 65504 m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.h5", "fs", "gen.h5"]


def test_export_is_read_by_a_loader_of_fod500s_documented_naming(tmp_path):
    src = fod500_like_file(tmp_path / "gen.h5", 2)
    run("export", "fod500", src, "-o", tmp_path / "fs")
    loaded = ix.load_fod500_folder(tmp_path / "fs")
    assert sorted(loaded) == [0, 1]
    with FocalStackFile(src) as f:
        for i in range(2):
            np.testing.assert_array_equal(loaded[i]["stack"], f[i].stack)
            np.testing.assert_allclose(loaded[i]["depth"], f[i].depth, rtol=1e-3)  # half precision


def test_export_extras_hold_defocus_and_every_other_dataset(tmp_path):
    from focalstack.dataset import exr

    src = fod500_like_file(tmp_path / "gen.h5", 2)
    run("export", "fod500", src, "-o", tmp_path / "fs", "--start", 3)
    with FocalStackFile(src) as f:
        rec = f[1]
        for j in range(5):
            defocus = exr.read_channels(tmp_path / "fs/extra" / f"000004_{j:02d}Def.exr")["R"]
            np.testing.assert_array_equal(defocus, rec.defocus[j])
        extra = np.load(tmp_path / "fs/extra" / "000004Extra.npz")
        assert set(extra.files) == set(rec.arrays()) - set(fod500.EXPORTED)
        for name in extra.files:
            value = rec.array(name)
            assert (str(extra[name]) == value) if name == "scene" else np.array_equal(extra[name], value), name
        assert int(extra["stack_size"]) == 4
    readme = json.loads((tmp_path / "fs" / "focalstack.json").read_text())
    assert readme["first_index"] == 3 and readme["differences_from_fod500"] == []


def test_export_warns_when_the_file_is_not_fod500_like_and_refuses_a_full_folder(tmp_path):
    src = fx.write_file(tmp_path / "small.h5", 2)  # 16 x 16 px, 3 slices at 0.1, 0.3, 1.5 m
    result = run("export", "fod500", src, "-o", tmp_path / "fs")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "16 x 16 px (FoD500: 256 x 256)" in warnings[0] and "3 slices (FoD500: 5)" in warnings[0]
    assert "DFV's dataloader/FoD500.py hard-codes 256 x 256 and five slices" in warnings[0]
    assert len(list((tmp_path / "fs").glob("*All.tif"))) == 6
    before = sorted(p.name for p in (tmp_path / "fs").iterdir())
    assert_one_line_error(run("export", "fod500", src, "-o", tmp_path / "fs"), "not an empty folder")
    assert sorted(p.name for p in (tmp_path / "fs").iterdir()) == before
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty").chmod(0o750)
    assert run("export", "fod500", src, "-o", tmp_path / "empty").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "fs", "small.h5"]  # no temporary folder left
    # the folders are not mkdtemp's private ones: a new one as mkdir makes it, an empty one keeps its mode
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "fs").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) == 0o750


def test_export_into_the_current_empty_folder(tmp_path, monkeypatch):
    """'-o .' ended in 'Invalid argument: .' (the folder is replaced by its absolute path's name)."""
    src = fx.write_file(tmp_path / "small.h5", 1)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = run("export", "fod500", src, "-o", ".")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "here").glob("000000_*All.tif"))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "small.h5"]


# -- import ddff12 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ddff_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddff") / "ddff-dataset-trainval.h5"
    return path, ix.write_ddff12_file(path, 3, 2)


@pytest.mark.parametrize("split", ["train", "val"])
def test_import_ddff12_gives_back_every_array(ddff_file, tmp_path, split):
    path, written = ddff_file
    out = tmp_path / "d.h5"
    result = run("import", "ddff12", path, "--split", split, "-o", out)
    assert result.exit_code == 0, result.output
    src = written[split]
    with FocalStackFile(out) as f:
        assert len(f) == len(src["stack"]) and f.n_slices == 10 and f.image_size == (24, 36)
        gt = f.ground_truth
        assert [n for n, g in gt.items() if g.present] == ["depth", "disparity"]
        assert gt["depth"].derived_from == ("disparity",) and gt["depth"].no_data == 0.0
        for i in range(len(f)):
            rec = f[i]
            np.testing.assert_array_equal(rec.stack, src["stack"][i])
            np.testing.assert_array_equal(rec.disparity, src["disp"][i])
            d = src["disp"][i].astype(np.float64)
            want = np.where(d > 0, ddff12.BF / np.where(d > 0, d, 1), 0).astype(np.float32)
            np.testing.assert_array_equal(rec.depth, want)
            assert ((rec.depth == 0) == (src["disp"][i] == 0)).all() and (rec.depth == 0).sum() == 10
            # back to disparity, as the DDFF-12 protocol scores it: equal to float32 rounding
            np.testing.assert_allclose(ddff12.disparity_from_depth(rec.depth), src["disp"][i], rtol=1.2e-7, atol=0)
            assert rec.f_number is None and rec.aif is None and rec.defocus is None and rec.edges is None
            assert rec.slice_focal_length_mm is None
        with pytest.raises(DatasetError, match="'f_number' \\(absent"):
            f.read("f_number", 0)
        focus = f.read_all("focus_distance")[0].astype(np.float64)
    np.testing.assert_allclose(focus[[0, -1]], [0.5, 7.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(ddff12.BF / focus), np.diff(ddff12.BF / focus)[0], rtol=1e-5)  # even in disparity
    report = validate_file(out, full=True)
    assert report.valid, report.problems


def test_ddff12_calibration_constants():
    assert ddff12.BASELINE_M == pytest.approx(1982.0250823695178 / 7317.020641763665 * 1e-3)
    assert ddff12.BF == pytest.approx(ddff12.BASELINE_M * 521.4052)
    np.testing.assert_allclose(ddff12.focus_disparities()[[0, -1]], [ddff12.BF / 0.5, ddff12.BF / 7])


def test_import_ddff12_streams_one_stack_at_a_time(ddff_file, tmp_path, monkeypatch):
    """The importer never reads the source whole: every access to the stack or disparity is one index."""
    path, _ = ddff_file
    seen = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name in ("/stack_train", "/disp_train"):
            seen.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    ddff12.import_ddff12(path, tmp_path / "d.h5", split="train")
    assert sorted(seen) == sorted((name, i) for name in ("/disp_train", "/stack_train") for i in range(3))


def test_import_ddff12_refuses_bad_input(tmp_path):
    path = tmp_path / "bad.h5"
    ix.write_ddff12_file(path, 3, 1)
    with h5py.File(path, "r+") as f:  # a few bad values: marked as no data, counted, the stack kept
        d = f["disp_train"][1]
        d[0, 0], d[0, 1] = -0.1, np.nan
        f["disp_train"][1] = d
    out = tmp_path / "d.h5"
    result = run("import", "ddff12", path, "--split", "train", "-o", out)
    assert result.exit_code == 0 and "3 scene(s) imported" in result.output
    assert "repaired: " in result.output and "disp_train[1]: 2 disparity value(s) not finite, negative" in result.output
    with FocalStackFile(out) as f:
        assert f.read("disparity", 1)[0, :2].tolist() == [0.0, 0.0] and f.read("depth", 1)[0, 0] == 0.0
        assert np.isfinite(f.read("depth", 1)).all()
    out.unlink()
    with h5py.File(path, "r+") as f:  # more than 1 %: a broken stack, refused
        d = f["disp_train"][1]
        d[:2] = -0.1
        f["disp_train"][1] = d
    assert_one_line_error(
        run("import", "ddff12", path, "--split", "train", "-o", out), "disp_train[1]", "negative", "more than 1%"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]
    result = run("import", "ddff12", path, "--split", "train", "-o", out, "--skip-bad")
    assert result.exit_code == 0 and "2 scene(s) imported" in result.output and "skipped: " in result.output
    with FocalStackFile(out) as f:
        assert [json.loads(s)["index"] for s in f.read_all("scene")] == [0, 2]
    with h5py.File(path, "r+") as f:
        del f["disp_val"]
    assert_one_line_error(run("import", "ddff12", path, "--split", "val", "-o", tmp_path / "v.h5"), "no dataset 'disp_val'")
    with h5py.File(path, "r+") as f:
        f.create_dataset("disp_val", data=np.zeros((1, 5, 5), np.float32))
    assert_one_line_error(
        run("import", "ddff12", path, "--split", "val", "-o", tmp_path / "v.h5"), "'disp_val'", "to match 'stack_val'"
    )
    assert_one_line_error(
        run("import", "ddff12", tmp_path / "none.h5", "--split", "val", "-o", tmp_path / "v.h5"), "no such file"
    )


def test_help_texts_explain_the_formats():
    for args in (["import"], ["import", "fod500"], ["import", "ddff12"], ["export"], ["export", "fod500"]):
        result = run(*args, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "Dpt.exr" in run("import", "fod500", "--help").output
    assert "disparity" in run("import", "ddff12", "--help").output
    assert "Aif.tif" in run("export", "fod500", "--help").output


def test_inspect_and_preview_work_with_what_an_import_holds(ddff_file, fod_folder, tmp_path):
    import cv2

    run("import", "ddff12", ddff_file[0], "--split", "val", "-o", tmp_path / "d.h5")
    run("import", "fod500", fod_folder[0], "--split", "test", "-o", tmp_path / "f.h5")
    out = run("inspect", tmp_path / "d.h5", "--full")
    assert out.exit_code == 0 and out.output.strip().endswith("valid"), out.output
    assert "f-number        none (no camera model)" in out.output
    assert "disparity         imported (DDFF-12 disp_<split>); 0 = no ground truth" in out.output
    assert "aif               absent" in out.output and "defocus model" not in out.output
    out = run("inspect", tmp_path / "f.h5")
    assert out.exit_code == 0 and "source          FoD500" in out.output
    assert "defocus           derived from depth by thin_lens, recomputed by readers (not stored)" in out.output
    assert "(7 pixel(s) without ground truth)" not in out.output and "14 pixel(s) without ground truth" in out.output
    for name in ("d", "f"):
        result = run("preview", tmp_path / f"{name}.h5", "-o", tmp_path / f"{name}.png")
        assert result.exit_code == 0, result.output
        img = cv2.imread(str(tmp_path / f"{name}.png"))
        assert img is not None and img.std() > 10


# -- what peers' loaders do with an export (written from their documented behaviour) ----------------------
def aifdepthnet_lists(folder):
    """AiFDepthNet's DefocusNet_gen_txt.py: every *.tif and *.exr of the folder, sorted, five TIFFs and one
    EXR per scene, in order."""
    tifs, exrs = sorted(folder.glob("*.tif")), sorted(folder.glob("*.exr"))
    return [(tifs[5 * k : 5 * k + 5], exrs[k]) for k in range(len(exrs))]


def dfv_split(folder):
    """DFV's dataloader/FoD500.py: scenes with int(name[:6]) < 400 train, the rest test; depth read as the
    half-float R, G and B channels of Dpt.exr."""
    from focalstack.dataset import exr

    names = sorted(p.name for p in folder.glob("*Dpt.exr"))
    for name in names:
        channels = exr.read_channels(folder / name)
        assert {"R", "G", "B"} <= set(channels) and channels["R"].dtype == np.float16
    return [n for n in names if int(n[:6]) < 400], [n for n in names if int(n[:6]) >= 400]


def defocusnet_split(folder):
    """defocus-net's util_func.py: files by sorted suffix, the first 80 % training."""
    stacks = sorted(p.name for p in folder.glob("*All.tif"))
    depths = sorted(p.name for p in folder.glob("*Dpt.exr"))
    n = int(len(depths) * 0.8)
    return depths[:n], depths[n:], stacks


@pytest.mark.parametrize("layout", ["fod500", "dered"])
def test_every_peer_loader_reads_the_export_it_is_meant_to(tmp_path, layout):
    src = fod500_like_file(tmp_path / "gen.h5", 3)
    result = run("export", "fod500", src, "-o", tmp_path / "fs", "--split", "test", "--layout", layout)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "fs"
    with FocalStackFile(src) as f:
        scenes = [f[i] for i in range(3)]
    # DFV: numbered from 400, so every scene is in its test split
    train, test = dfv_split(folder)
    assert train == [] and test == [f"{400 + i:06d}Dpt.exr" for i in range(3)]
    # AiFDepthNet: sorted-glob grouping gives each scene its own five slices (only without Aif.tif beside them)
    groups = aifdepthnet_lists(folder)
    ok = all(
        [p.name for p in tifs] == [f"{400 + k:06d}_{j:02d}All.tif" for j in range(5)] and e.name == f"{400 + k:06d}Dpt.exr"
        for k, (tifs, e) in enumerate(groups)
    )
    assert ok == (layout == "fod500")
    if layout == "fod500":
        for k, (tifs, _) in enumerate(groups):
            for j, t in enumerate(tifs):
                np.testing.assert_array_equal(cv2.imread(str(t))[..., ::-1], scenes[k].stack[j])
    # DEReD: {i:06d}Aif.tif beside the slices with --layout dered
    aif = folder / "000400Aif.tif"
    assert aif.exists() == (layout == "dered")
    if layout == "dered":
        np.testing.assert_array_equal(cv2.imread(str(aif))[..., ::-1], scenes[0].aif)
    # defocus-net: by suffix; the depth files pair with the stacks
    train, test, stacks = defocusnet_split(folder)
    assert len(train) + len(test) == 3 and len(stacks) == 15


def test_exported_tiffs_are_uncompressed_and_every_reader_reads_them(tmp_path):
    from PIL import Image

    src = fod500_like_file(tmp_path / "gen.h5", 1)
    run("export", "fod500", src, "-o", tmp_path / "fs")
    path = tmp_path / "fs" / "000000_00All.tif"
    with FocalStackFile(src) as f:
        want = f[0].stack[0]
    with Image.open(path) as im:
        assert im.info.get("compression") == "raw"  # not LZW: imageio's tifffile without imagecodecs reads it
        np.testing.assert_array_equal(np.asarray(im), want)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], want)
    import imageio.v3 as iio
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(path), want)  # no imagecodecs needed: uncompressed
    np.testing.assert_array_equal(iio.imread(path), want)


def test_import_fod500_marks_a_few_bad_depth_pixels_as_no_data_and_refuses_a_broken_map(tmp_path):
    written = ix.write_fod500_folder(tmp_path / "fs", [0, 1])
    d = written[1]["depth"].copy()
    d[0, :3] = [np.nan, np.inf, -0.5]
    ix.write_exr(tmp_path / "fs" / "000001Dpt.exr", {"R": d, "G": d, "B": d})
    result = run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "a.h5")
    assert result.exit_code == 0 and "2 scene(s) imported" in result.output, result.output
    assert "repaired: " in result.output and "000001Dpt.exr: 3 depth pixel(s) not finite or negative" in result.output
    with FocalStackFile(tmp_path / "a.h5") as f:
        depth = f.read("depth", 1)
        assert depth[0, :3].tolist() == [0.0, 0.0, 0.0] and np.isfinite(depth).all()
        assert np.isnan(f[1].defocus[:, 0, :3]).all()  # no depth, no defocus: as for FoD500's own holes
    d[:10] = np.nan  # 10 rows of 256: about 4 %
    ix.write_exr(tmp_path / "fs" / "000001Dpt.exr", {"R": d, "G": d, "B": d})
    assert_one_line_error(
        run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "b.h5"), "000001Dpt.exr", "not finite or negative (more than 1%"
    )


def test_a_test_split_numbered_as_training_is_refused_before_anything_is_written(tmp_path):
    """--split test --start 0 numbered a test set below 400, which DFV's loader reads as training, without a word."""
    src = fod500_like_file(tmp_path / "gen.h5", 1)
    result = run("export", "fod500", src, "-o", tmp_path / "fs", "--split", "test", "--start", 0)
    assert result.exit_code == 2 and "--split test --start 0: DFV's loader takes scenes numbered below 400" in result.output
    assert not (tmp_path / "fs").exists()
    assert run("export", "fod500", src, "-o", tmp_path / "fs", "--split", "test", "--start", 450).exit_code == 0


def test_an_export_mixed_with_fod500s_own_scenes_is_refused(tmp_path):
    """The export's defocus model is the whole file's: FoD500 scenes copied in beside it would take it."""
    import shutil

    src = fod500_like_file(tmp_path / "gen.h5", 1)
    assert run("export", "fod500", src, "-o", tmp_path / "fs").exit_code == 0
    for path in (tmp_path / "fs").glob("000000*"):  # scene 7, as FoD500's own: no extras
        shutil.copy(path, tmp_path / "fs" / path.name.replace("000000", "000007"))
    result = run("import", "fod500", tmp_path / "fs", "-o", tmp_path / "back.h5")
    assert_one_line_error(result, "scene 7 has no extra/000007Extra.npz", "defocus model 'cycles'")
    assert not (tmp_path / "back.h5").exists()


# -- the robustness probe of focalstack-data (stop 40) -------------------------------------------------------
def test_an_exported_test_split_of_over_100_scenes_comes_back_whole(tmp_path):
    """Import's test split was 400-499: scene 500 of an export numbered from 499 was dropped without a word,
    though DFV's loader, like the export, takes every scene from 400 on as test."""
    src = fod500_like_file(tmp_path / "gen.h5", 2)
    assert run("export", "fod500", src, "-o", tmp_path / "fs", "--split", "test", "--start", 499).exit_code == 0
    result = run("import", "fod500", tmp_path / "fs", "--split", "test", "-o", tmp_path / "back.h5")
    assert result.exit_code == 0 and "2 scene(s) imported" in result.output, result.output
    with FocalStackFile(tmp_path / "back.h5") as f:
        assert [json.loads(s)["index"] for s in f.read_all("scene")] == [499, 500]
    train = run("import", "fod500", tmp_path / "fs", "--split", "train", "-o", tmp_path / "t.h5")
    assert_one_line_error(train, "no FoD500 scenes of the train split")


def test_when_every_scene_is_skipped_the_reasons_are_listed_before_the_error(tmp_path):
    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0, 1])
    (folder / "000000_02All.tif").write_bytes(b"cut")
    (folder / "000001Dpt.exr").write_bytes(b"no exr")
    result = run("import", "fod500", folder, "-o", tmp_path / "o.h5", "--skip-bad")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and lines[-1].startswith("Error: ") and "nothing could be imported (2 skipped)" in lines[-1]
    assert [line.split(":")[0] for line in lines[:-1]] == ["skipped", "skipped"], result.output
    assert "000000_02All.tif: not a readable image" in lines[0] and "000001Dpt.exr: not a readable EXR" in lines[1]
    assert not (tmp_path / "o.h5").exists()


def test_a_skipped_scene_is_not_also_listed_as_repaired(tmp_path):
    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0, 1], aif=True)
    d = ix.load_fod500_folder(folder)[0]["depth"].astype(np.float16)
    d[0, :10] = np.nan  # a repair...
    ix.write_exr(folder / "000000Dpt.exr", {"R": d, "G": d, "B": d})
    ix.write_tif(folder / "000000Aif.tif", np.zeros((128, 128, 3), np.uint8))  # ...of a scene then skipped
    result = run("import", "fod500", folder, "-o", tmp_path / "o.h5", "--skip-bad")
    assert result.exit_code == 0 and "1 scene(s) imported" in result.output, result.output
    assert "skipped: " in result.output and "000000Aif.tif" in result.output
    assert "repaired:" not in result.output


def test_names_in_other_scripts_digits_are_not_taken_for_another_scenes_files(tmp_path):
    """int() reads full-width digits: '００００００_00All.tif' replaced scene 0's slices with what it held."""
    import shutil

    folder = tmp_path / "fs"
    written = ix.write_fod500_folder(folder, [0, 1])
    for j in range(5):
        shutil.copy(folder / f"000001_{j:02d}All.tif", folder / f"\uff10\uff10\uff10\uff10\uff10\uff10_{j:02d}All.tif")
    assert_one_line_error(run("import", "fod500", folder, "-o", tmp_path / "o.h5"), "does not follow FoD500's pattern")
    result = run("import", "fod500", folder, "-o", tmp_path / "o.h5", "--skip-bad")
    assert result.exit_code == 0 and "2 scene(s) imported" in result.output, result.output
    with FocalStackFile(tmp_path / "o.h5") as f:
        np.testing.assert_array_equal(f[0].stack, written[0]["stack"])


def test_an_aif_image_beside_the_slices_and_in_extra_is_refused_naming_both(tmp_path):
    import shutil

    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0, 1], aif=True)
    (folder / "extra").mkdir()
    shutil.copy(folder / "000001Aif.tif", folder / "extra" / "000000Aif.tif")
    result = run("import", "fod500", folder, "-o", tmp_path / "o.h5")
    assert_one_line_error(result, "000000Aif.tif and ", "extra/000000Aif.tif: two AiF images of scene 0")
    assert not (tmp_path / "o.h5").exists()


def _file_without_depth(path):
    from focalstack.dataset import provenance
    from focalstack.dataset.writer import FocalStackWriter

    declared = provenance.rendered_declaration("cycles")
    declared["depth"] = declared["defocus"] = provenance.ABSENT
    with FocalStackWriter.create(path, n_slices=5, height=16, width=16, attrs=fx.make_attrs(), ground_truth=declared) as w:
        rec = fx.make_record(0, height=16, width=16, focus_distances=FOCUS)
        rec.depth = rec.defocus = None
        w.append(rec)
    assert validate_file(path).valid
    return path


def test_export_of_a_file_without_depth_warns_that_no_loader_will_read_it(tmp_path):
    src = _file_without_depth(tmp_path / "nodepth.h5")
    result = run("export", "fod500", src, "-o", tmp_path / "fs")
    assert result.exit_code == 0, result.output
    assert "no depth, so no {i:06d}Dpt.exr" in result.output
    assert not list((tmp_path / "fs").glob("*.exr"))


def test_export_of_a_file_of_no_complete_scene_is_refused(tmp_path):
    src = fx.write_file(tmp_path / "none.h5", 0)
    assert_one_line_error(run("export", "fod500", src, "-o", tmp_path / "fs"), "none.h5: no complete scene to export")
    assert not (tmp_path / "fs").exists()


def test_export_into_the_working_folder_keeps_that_folder(tmp_path, monkeypatch):
    """'-o .' replaced the empty working folder by a new one: the shell was left in a deleted folder."""
    src = fx.write_file(tmp_path / "small.h5", 1)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    inode = os.stat(".").st_ino
    assert run("export", "fod500", src, "-o", ".").exit_code == 0
    assert os.stat(".").st_ino == inode == os.stat(tmp_path / "here").st_ino
    assert "focalstack.json" in os.listdir(".") and len([n for n in os.listdir(".") if n.endswith("All.tif")]) == 3
    assert not [n for n in os.listdir(".") if n.startswith(".")]  # the temporary folder inside it is gone
    assert sorted(os.listdir(tmp_path)) == ["here", "small.h5"]


def test_ddff12_a_damaged_chunk_is_one_stack_skipped_or_one_line(tmp_path):
    path = tmp_path / "gz.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "stack_train",
            data=rng.integers(0, 256, (3, 10, 8, 8, 3), dtype=np.uint8),
            chunks=(1, 10, 8, 8, 3),
            compression="gzip",
        )
        f.create_dataset("disp_train", data=rng.uniform(0.02, 0.28, (3, 8, 8)).astype(np.float32), chunks=(1, 8, 8))
        info = f["stack_train"].id.get_chunk_info(1)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        fh.write(bytes(16))
    out = tmp_path / "o.h5"
    assert_one_line_error(
        run("import", "ddff12", path, "--split", "train", "-o", out), f"{path}: stack 1 of split train unreadable"
    )
    assert not out.exists()
    result = run("import", "ddff12", path, "--split", "train", "-o", out, "--skip-bad")
    assert result.exit_code == 0 and "2 scene(s) imported" in result.output, result.output
    assert "skipped: " in result.output and "stack 1 of split train unreadable" in result.output


def test_ddff12_a_disparity_too_small_for_a_float32_depth_is_no_data(tmp_path):
    """BF / 1e-40 overflows float32: the import wrote depth inf, exited 0, and validate refused the file."""
    path = tmp_path / "dd.h5"
    ix.write_ddff12_file(path, 2, 1, size=(16, 16))
    with h5py.File(path, "r+") as f:
        d = f["disp_train"][0]
        d[0, 0] = 1e-40
        f["disp_train"][0] = d
    out = tmp_path / "o.h5"
    result = run("import", "ddff12", path, "--split", "train", "-o", out)
    assert result.exit_code == 0 and "disp_train[0]: 1 disparity value(s)" in result.output, result.output
    assert validate_file(out, full=True).valid
    with FocalStackFile(out) as f:
        assert f.read("depth", 0)[0, 0] == 0 and f.read("disparity", 0)[0, 0] == 0
        assert np.isfinite(f.read_all("depth")).all()


def test_ddff12_a_stack_without_any_ground_truth_is_refused_as_fod500s_is(tmp_path):
    path = tmp_path / "dd.h5"
    ix.write_ddff12_file(path, 2, 1, size=(8, 8))
    with h5py.File(path, "r+") as f:
        f["disp_train"][1] = np.zeros((8, 8), np.float32)
    out = tmp_path / "o.h5"
    assert_one_line_error(
        run("import", "ddff12", path, "--split", "train", "-o", out), "disp_train[1]: every disparity is 0", "no ground truth"
    )
    result = run("import", "ddff12", path, "--split", "train", "-o", out, "--skip-bad")
    assert result.exit_code == 0 and "1 scene(s) imported" in result.output, result.output


def test_openexrs_own_warnings_reach_neither_stdout_nor_stderr(tmp_path, capfd):
    import ctypes

    from focalstack.dataset import exr

    folder = tmp_path / "fs"
    ix.write_fod500_folder(folder, [0])
    data = (folder / "000000Dpt.exr").read_bytes()
    (folder / "000000Dpt.exr").write_bytes(data[: int(len(data) * 0.7)])
    capfd.readouterr()
    with pytest.raises(DatasetError, match="not a readable EXR"):
        exr.read_channels(folder / "000000Dpt.exr")
    ctypes.CDLL(None).fflush(None)  # what the library buffered, as at exit
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_quieting_openexr_with_stderr_closed_leaves_stdout_working(tmp_path):
    """With descriptor 2 closed, a plain dup of 1 took number 2, the swap overwrote it, and stdout went to
    /dev/null for good."""
    import subprocess
    import sys

    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"no exr here")
    code = (
        "import os, sys\n"
        "from focalstack.dataset import exr\n"
        f"try:\n    exr.read_channels({str(bad)!r})\nexcept Exception:\n    pass\n"
        "os.write(1, b'still here')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=60)
    assert done.stdout == b"still here"
