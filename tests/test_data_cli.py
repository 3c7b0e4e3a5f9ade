"""focalstack-data: inspect, validate, preview; bad input gives one line and exit 1, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import dataset_fixtures as fx
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from focalstack.dataset.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = fx.write_file(tmp_path_factory.mktemp("cli") / "good.h5", 4)
    fx.append_incomplete(path)
    return path


def test_inspect_valid_file(good_file):
    result = run("inspect", good_file)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.strip().splitlines()[-1] == "valid"
    assert "4 complete, 1 incomplete" in out
    assert "3 slice(s) of 16 x 16 px" in out
    assert "focus distances 0.1, 0.3, 1.5 m  (4 scene(s))" in out
    assert "f-number        1" in out and "2.9 mm" in out and "3.1 mm" in out
    assert "seeds           0 to 3" in out
    assert "gzip" in out and "stack" in out
    assert "1 incomplete scene(s) will be re-rendered on resume" in out


def test_inspect_full_on_invalid_file_lists_problem(tmp_path):
    path = fx.write_file(tmp_path / "bad.h5", 3)
    with h5py.File(path, "r+") as f:
        d = f["defocus"][2]
        f["defocus"][2] = d * 1.1
    result = run("inspect", path, "--full")
    assert result.exit_code == 1
    assert "scene 2: 'defocus' slice" in result.output
    assert result.output.strip().splitlines()[-1].startswith("invalid")


def test_inspect_truncated_file(tmp_path):
    path = fx.truncate(fx.write_file(tmp_path / "t.h5", 3))
    assert_one_line_error(run("inspect", path), "t.h5", "not a readable HDF5 file")


def test_inspect_foreign_h5_names_format(tmp_path):
    path = fx.write_foreign_h5(tmp_path / "other.h5")
    assert_one_line_error(run("inspect", path), "'format'", "not a focalstack file")


def test_inspect_missing_and_non_hdf5(tmp_path):
    assert_one_line_error(run("inspect", tmp_path / "nope.h5"), "no such file")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_one_line_error(run("inspect", text), "not a readable HDF5 file")


def test_inspect_wrong_schema_version(tmp_path):
    path = fx.write_file(tmp_path / "v9.h5", 1)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 9
    assert_one_line_error(run("inspect", path), "'schema_version' is 9")


def test_inspect_missing_dataset_lists_problems(tmp_path):
    path = fx.write_file(tmp_path / "nodepth.h5", 1)
    with h5py.File(path, "r+") as f:
        del f["depth"]
    result = run("inspect", path)
    assert result.exit_code == 1
    assert "dataset 'depth' missing" in result.output


def test_validate_several_files(tmp_path, good_file):
    bad = fx.write_foreign_h5(tmp_path / "foreign.h5")
    result = run("validate", good_file, bad)
    assert result.exit_code == 1
    assert f"{good_file}: valid (4 complete scene(s), 1 warning(s))" in result.output
    assert f"{bad}: problem: attribute 'format'" in result.output
    ok = run("validate", good_file, "--full")
    assert ok.exit_code == 0 and len(ok.output.strip().splitlines()) == 1
    verbose = run("validate", good_file, "-v")
    assert "warning: 1 incomplete scene(s)" in verbose.output


def test_preview_writes_png(good_file, tmp_path):
    out = tmp_path / "sheet.png"
    result = run("preview", good_file, "--scene", 2, "-o", out)
    assert result.exit_code == 0, result.output
    img = cv2.imread(str(out))
    assert img is not None and img.dtype == np.uint8
    h, w = img.shape[:2]
    assert 400 <= h <= 3000 and 600 <= w <= 4000, img.shape  # 3 rows of panels, a few columns
    assert img.std() > 10  # not blank


def test_preview_scene_out_of_range(good_file, tmp_path):
    # 4 complete scenes; the incomplete 5th does not exist for readers
    result = run("preview", good_file, "--scene", 4, "-o", tmp_path / "x.png")
    assert_one_line_error(result, "--scene 4", "4 complete scene(s)", "0 to 3")
    assert not (tmp_path / "x.png").exists()
    assert_one_line_error(run("preview", good_file, "--scene", -1, "-o", tmp_path / "x.png"), "out of range")


def test_preview_output_folder_missing_and_bad_suffix(good_file, tmp_path):
    assert_one_line_error(run("preview", good_file, "-o", tmp_path / "no" / "x.png"), "does not exist")
    assert_one_line_error(run("preview", good_file, "-o", tmp_path / "x.gif"), ".png or .jpg")


def test_preview_that_cannot_be_written_is_one_line_of_its_own(good_file, tmp_path):
    """In a subprocess: OpenCV's imwrite printed a warning of its own on the process's stderr first. Tests run
    as root, which writes in any folder but sysfs's."""
    if not Path("/sys").is_dir():
        pytest.skip("needs a sysfs at /sys")
    done = subprocess.run(
        [sys.executable, "-m", "focalstack.dataset", "preview", str(good_file), "-o", "/sys/x.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr == "Error: cannot write /sys/x.png (Permission denied)\n", done.stderr


def test_preview_bad_file(tmp_path):
    path = fx.truncate(fx.write_file(tmp_path / "t.h5", 2))
    assert_one_line_error(run("preview", path, "-o", tmp_path / "x.png"), "not a readable HDF5 file")


def test_help_texts():
    for args in ([], ["inspect"], ["validate"], ["preview"]):
        result = run(*args, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.output
    assert "contact sheet" in run("preview", "--help").output


def test_python_dash_m_entry_point(good_file):
    """``python -m focalstack.dataset`` is the same command; errors leave no traceback on stderr."""
    ok = subprocess.run(
        [sys.executable, "-m", "focalstack.dataset", "validate", str(good_file)], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "focalstack.dataset", "inspect", str(good_file) + ".missing"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_dataset_imports_nothing_above_it():
    """dataset/ is the ground floor: no bpy, no torch, no render/ or train/ (docs/design.md)."""
    code = (
        "import sys, focalstack.dataset, focalstack.dataset.cli, focalstack.dataset.validate, "
        "focalstack.dataset.preview\n"
        "bad = [m for m in sys.modules if m in ('bpy', 'torch') or m.startswith(('focalstack.render', "
        "'focalstack.train'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
