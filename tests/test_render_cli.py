"""focalstack-render's handling of bad input: one line, non-zero exit, no traceback, no damage."""

from __future__ import annotations

import hashlib

import h5py
import pytest
from click.testing import CliRunner

from focalstack.render.cli import main
from focalstack.render.config import RenderConfig, load_preset
from focalstack.render.pipeline import open_writer


def run(args):
    result = CliRunner().invoke(main, args)
    return result, result.output.strip()


def assert_one_line_error(result, text, needle):
    assert result.exit_code != 0
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert needle.lower() in text.lower(), text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["--preset", "missing/file.toml"], "not found"),
        (["--f-number", "0"], "f-number = 0"),
        (["--f-number", "-2"], "f-number = -2"),
        (["--focus-distances", "0.1,0.002"], "focus distance 0.002"),
        (["--focus-distances", "0.1,abc"], "--focus-distances '0.1,abc': 'abc' is not a number"),
        (["--focus-distances", "0.1,inf"], "'inf' is not a finite"),
        (["--f-number", "inf"], "f-number = inf: expected a finite number"),
        (["--f-number", "nan"], "f-number = nan: expected a finite number"),
        (["--resolution", "0"], "resolution"),
        (["--resolution", "abc"], "resolution 'abc'"),
        (["--resolution", "12.5"], "resolution '12.5'"),
        (["--samples", "0"], "samples = 0"),
        (["--scenes", "0"], "scenes = 0"),
    ],
)
def test_bad_settings_get_one_line_error(tmp_path, args, needle):
    out = tmp_path / "x.h5"
    result, text = run([*args, "--out", str(out)])
    assert_one_line_error(result, text, needle)
    assert not out.exists()


def test_output_in_missing_folder(tmp_path):
    out = tmp_path / "nope" / "x.h5"
    result, text = run(["--out", str(out)])
    assert_one_line_error(result, text, "does not exist")
    assert not out.parent.exists()


def test_list_presets_names_fod500():
    result, text = run(["--list-presets"])
    assert result.exit_code == 0 and "fod500" in text.split()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_existing_file_with_other_settings_is_refused_and_untouched(tmp_path):
    out = tmp_path / "train.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7).validate()
    open_writer(config, out).close()
    before = _digest(out)
    result, text = run(["--out", str(out), "--resolution", "32", "--seed", "8", "--scenes", "2"])
    assert_one_line_error(result, text, "seed")
    result, text = run(["--out", str(out), "--resolution", "32", "--seed", "7", "--f-number", "2.8"])
    assert_one_line_error(result, text, "f_number")
    assert _digest(out) == before


def test_foreign_file_at_output_is_refused_and_untouched(tmp_path):
    out = tmp_path / "notes.h5"
    out.write_text("not hdf5")
    result, text = run(["--out", str(out), "--resolution", "32"])
    assert_one_line_error(result, text, "not")
    assert out.read_text() == "not hdf5"
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    before = _digest(foreign)
    result, text = run(["--out", str(foreign), "--resolution", "32"])
    assert_one_line_error(result, text, "format")
    assert _digest(foreign) == before


def test_config_validation_names_values():
    with pytest.raises(ValueError, match="f-number"):
        RenderConfig(preset="x", f_number=0).validate()
    with pytest.raises(ValueError, match="beyond the focal length"):
        RenderConfig(preset="x", focus_distances=[0.0029]).validate()


def test_assets_folder_without_usable_files_is_an_error(tmp_path):
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "broken.obj").write_text("v 1 2\nf 9 9 9\n")
    result, text = run(["--preset", "mirrors", "--assets", str(folder), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and str(folder) in error_lines[0], text
    assert not (tmp_path / "x.h5").exists()
