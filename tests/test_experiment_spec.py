"""Experiment files are checked whole before anything runs: one line naming the file, table and value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from focalstack.train.experiments import ExperimentError, bundled_experiments, load_experiment

GOOD = """
name = "t"
[scales.tiny]
resolution = 32
epochs = 1
batch_size = 1
[datasets.train]
preset = "fod500"
scenes = { tiny = 2 }
[datasets.test]
preset = "test-shape"
scenes = 1
[models.m]
arch = "fod-depth"
data = ["train"]
[[evaluations]]
name = "e"
datasets = ["test"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_per_scale_values(tmp_path):
    exp = load_experiment(str(write(tmp_path, GOOD)), "tiny")
    assert exp.datasets["train"].scenes == 2 and exp.datasets["train"].resolution == 32
    assert exp.models["m"].train == {"epochs": 1, "batch_size": 1}
    assert exp.evaluations[0].models == ["m"] and exp.evaluations[0].settings == ["All", "Random"]


@pytest.mark.parametrize("change, needle", [
    (('preset = "fod500"', 'preset = "fod9000"'), "[datasets.train]: unknown preset 'fod9000'"),
    (('arch = "fod-depth"', 'arch = "resnet"'), "[models.m]: unknown architecture 'resnet'"),
    (('datasets = ["test"]', 'datasets = ["walls-test"]'), "names dataset 'walls-test', which [datasets] does not define"),
    (('data = ["train"]', 'data = ["nope"]'), "data names dataset 'nope'"),
    (('epochs = 1', 'epochs = 1\nwobble = 3'), "[scales.tiny]: unknown key(s) wobble"),
    (('scenes = { tiny = 2 }', 'scenes = { tiny = 2, huge = 9 }'), "names scale(s) huge the file does not define"),
    (('arch = "fod-depth"', 'arch = "fod-depth"\nlr = inf'), "[models.m]: --lr inf"),
    (('datasets = ["test"]', 'datasets = ["test"]\nsettings = ["Sometimes"]'), "settings = ['Sometimes']"),
    (('[models.m]', '[models.constant]'), "[models.constant]: 'constant' names the reports' constant-depth baseline"),
])
def test_bad_files_are_refused_naming_what_is_wrong(tmp_path, change, needle):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ExperimentError) as err:
        load_experiment(str(path), "tiny")
    assert needle in str(err.value) and "exp.toml" in str(err.value)


def test_a_scale_the_file_does_not_define_is_refused(tmp_path):
    with pytest.raises(ExperimentError, match="scale 'full' is not defined .the file defines tiny."):
        load_experiment(str(write(tmp_path, GOOD)), "full")


def test_bundled_experiments_load_at_every_scale():
    assert set(bundled_experiments()) >= {"paper-table1", "paper-depth", "walls-fix"}
    for name in bundled_experiments():
        for scale in ("tiny", "small", "full"):
            exp = load_experiment(name, scale)
            assert exp.scale == scale and exp.models and exp.evaluations
    table1 = load_experiment("paper-table1", "full")
    assert {m.arch for m in table1.models.values()} == {"fod-single-direct", "fod-single", "fod-aif-direct", "fod"}
    assert table1.datasets["train"].scenes == 1000 and table1.datasets["test-shape"].resolution == 256


def test_the_cli_refuses_a_bad_file_in_one_line_before_anything_runs(tmp_path):
    path = write(tmp_path, GOOD.replace('preset = "test-shape"', 'preset = "nowhere"'))
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "focalstack.train", "experiment", str(path), "--scale", "tiny",
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "unknown preset 'nowhere'" in done.stderr and not out.exists()
