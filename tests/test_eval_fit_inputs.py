"""What evaluate and fit say about the scenes they did not use: a stack-size row with no scene of that many
slices, incomplete scenes of a stopped render; and a new run in a folder that an earlier run left without a
checkpoint."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest
from train_fixtures import synthetic_file, tiny_fit_config, tiny_run

from focalstack.train.evaluate import evaluate
from focalstack.train.trainer import fit


def _with_incomplete(tmp_path, name="inc.h5"):
    """Three complete scenes and a fourth begun: what a render killed mid-scene leaves."""
    path = tmp_path / name
    shutil.copy(synthetic_file("evalfit-base", 3, 32, 41), path)
    with h5py.File(path, "r+") as f:
        for name in f:
            f[name].resize(4, axis=0)
        f["stack"][3] = f["stack"][0]
    return path


def test_a_stack_size_row_counts_the_scenes_it_scored_and_says_which_were_left_out(tmp_path):
    """The row of a file whose stacks are shorter than --stack-size said 'scenes: 4' with every value empty and
    no note: it counted the scenes planned, not those scored."""
    five, three = synthetic_file("evalfit-five", 3, 32, 42), synthetic_file("evalfit-three", 4, 32, 43, n_slices=3)
    files = [str(five), str(three)]
    ckpt = tiny_run("fod-depth") / "best.pt"
    result = evaluate(ckpt, files, tmp_path / "e", settings=("All",), stack_sizes=(5,), progress=False)
    rows = {(r["file"], r["stack_size"]): r for r in result.rows}
    assert rows[str(three), 5]["scenes"] == 0 and rows[str(three), 5]["depth_rmse"] is None
    assert rows[str(five), 5]["scenes"] == 3 and rows[str(five), 5]["depth_rmse"] is not None
    assert rows[str(three), None]["scenes"] == 4  # the whole stacks: every scene
    assert f"{three}: --stack-size 5: 4 of 4 scenes have fewer distinct slices and are left out; no value" in result.notes
    assert not [n for n in result.notes if str(five) in n and "left out" in n]


def test_incomplete_scenes_of_a_stopped_render_are_named_by_evaluate_and_fit(tmp_path):
    path = _with_incomplete(tmp_path)
    result = evaluate(tiny_run("fod-depth") / "best.pt", [str(path)], tmp_path / "e", settings=("All",), progress=False)
    assert result.rows[0]["scenes"] == 3
    assert f"{path}: 1 incomplete scene(s) (a render stopped or still running) left out; 3 complete" in result.notes
    cfg = tiny_fit_config(tmp_path, data=[str(path)], epochs=1)
    fit(cfg)
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"{path}: 1 incomplete scene(s) left out (a render stopped or still running)" in log
    three = synthetic_file("evalfit-three", 4, 32, 43, n_slices=3)
    fit(tiny_fit_config(tmp_path, name="val3", val_data=[str(three)], epochs=1))
    log = (tmp_path / "val3" / "train.log").read_text()
    assert "stack size 5" in log and f"{three}: validated on its stacks of 3 slices (training takes 5)" in log


def test_a_run_that_left_no_checkpoint_is_cleared_by_the_next_and_a_foreign_folder_is_not(tmp_path):
    """A run killed before its first checkpoint left train.log, metrics.csv and config.json: the next run
    appended its log to the old one and mixed its TensorBoard curves with the old ones."""
    cfg = tiny_fit_config(tmp_path, epochs=1)
    fit(cfg)
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt"):
        (run / name).unlink()
    (run / "tb").mkdir(exist_ok=True)
    (run / "tb" / "events.old").write_text("old curves")
    (run / "train.log").write_text("the killed run's log\n")
    (run / "metrics.csv").write_text("epoch,loss\n")  # killed before its first epoch ended: no row yet
    fit(tiny_fit_config(tmp_path, epochs=1))
    log = (run / "train.log").read_text()
    assert "the killed run's log" not in log and "removed train.log, metrics.csv, config.json, tb of an earlier run" in log
    assert not (run / "tb" / "events.old").exists()
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # a header and this run's one epoch

    # a run refused (here for its data) removes nothing: the clearing waits for every check
    (run / "last.pt").unlink()
    (run / "best.pt").unlink()
    (run / "metrics.csv").write_text("epoch,loss\n")  # killed before its first epoch ended
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(Exception, match="typo.h5: no such file"):
        fit(tiny_fit_config(tmp_path, data=[str(tmp_path / "typo.h5")], epochs=1))
    assert sorted(p.name for p in run.iterdir()) == before and (run / "train.log").read_text() == log
    # metrics of finished epochs without their checkpoints are a run's only record: refused, not cleared
    (run / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(ValueError, match=r"run: holds the metrics.csv of a run whose checkpoints were removed"):
        fit(tiny_fit_config(tmp_path, epochs=1))
    assert sorted(p.name for p in run.iterdir()) == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text(json.dumps({"project": "not a run"}))
    (mine / "train.log").write_text("my notes\n")
    with pytest.raises(ValueError, match=r"mine: holds a config.json that is not a run's settings; choose another --out"):
        fit(tiny_fit_config(tmp_path, name="mine", epochs=1))
    assert json.loads((mine / "config.json").read_text()) == {"project": "not a run"}
    assert (mine / "train.log").read_text() == "my notes\n"
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "train.log"]


def test_init_weights_built_with_other_options_and_a_folder_as_data_say_what_is_wrong(tmp_path):
    """--init weights of another --width said '72 of another shape (e.g. ...) tensors'; a folder given as --data
    said 'not a readable HDF5 file' with h5py's errno text."""
    from train_fixtures import TINY

    from focalstack.dataset.schema import DatasetError

    other = TINY["width"] * 2
    init = str(tiny_run("fod-depth") / "best.pt")
    cfg = tiny_fit_config(tmp_path, arch="fod-depth", arch_kwargs={"width": other}, init=init)
    built = rf"built with \{{'width': {TINY['width']}\}}, this run builds it with \{{'width': {other}\}}"
    with pytest.raises(ValueError, match=built):
        fit(cfg)
    (tmp_path / "folder").mkdir()
    with pytest.raises(DatasetError, match=r"folder: a folder, expected an HDF5 file"):
        evaluate(init, [str(tmp_path / "folder")], tmp_path / "e", progress=False)


def test_evaluate_notes_files_whose_blur_in_pixels_or_focus_range_the_checkpoint_never_saw(tmp_path):
    """A checkpoint trained at 32 px scored a 64 px file (twice the blur in pixels) without a word; a file of
    its own camera, or of its camera focused elsewhere (not compared), gets no such note."""
    from train_fixtures import write_synthetic

    from focalstack.train.evaluate import blur_scale

    ckpt = tiny_run("fod-depth") / "best.pt"  # trained on 32 px files of train_fixtures.CAMERA
    same = synthetic_file("evalfit-same", 2, 32, 44)
    larger = synthetic_file("evalfit-larger", 2, 64, 45)
    farther = write_synthetic(tmp_path / "farther.h5", 2, 32, focus=(0.1, 0.3, 0.7, 1.5, 3.0), seed=46)
    result = evaluate(ckpt, [str(same), str(larger), str(farther)], tmp_path / "e", settings=("All",), progress=False)
    assert not [n for n in result.notes if n.startswith(str(same))]
    assert f"{larger}: blur in pixels 2 x that of the checkpoint's training data (f/1 at 64 px, against f/1 at 32 px)" in (
        "\n".join(result.notes)
    )
    assert not [n for n in result.notes if n.startswith(str(farther))]
    doc = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert [n for n in doc["notes"] if "blur in pixels" in n] == [n for n in result.notes if "blur in pixels" in n]
    # the shipped weights' camera (f/0.25 at 64 px) gives the blur in pixels of FoD500's (f/1 at 256 px)
    lens = {"focal_length_mm": 2.9, "sensor_width_mm": 3.1}
    assert blur_scale({**lens, "f_number": 0.25}, 64) == pytest.approx(blur_scale({**lens, "f_number": 1.0}, 256))
    assert blur_scale({"f_number": None}, 64) is None  # DDFF-12: no camera model


# -- the data pipeline probe (stop 40) -------------------------------------------------------------------
def _grow(path, extra: int) -> None:
    """Append ``extra`` complete scenes (copies of scene 0 under new seeds): what a render that went on adds."""
    with h5py.File(path, "r+") as f:
        n = f["complete"].shape[0]
        for name in f:
            f[name].resize(n + extra, axis=0)
            for k in range(extra):
                f[name][n + k] = f[name][0]
        for k in range(extra):
            f["seed"][n + k] = 900 + k
            f["scene"][n + k] = json.dumps({"synthetic": "grown", "seed": 900 + k})


def test_a_run_is_not_resumed_on_a_file_that_has_grown_since_it_began(tmp_path):
    """The held-out scenes follow the scene count: after a render added scenes, the resumed run trained on
    scenes it had validated on and chose best.pt on others, without a word."""
    from focalstack.train.plan import split_scenes

    assert split_scenes(10, 0.2, 0)[1].tolist() != split_scenes(12, 0.2, 0)[1].tolist()  # why it matters
    path = tmp_path / "growing.h5"
    shutil.copy(synthetic_file("evalfit-grow", 6, 32, 44), path)
    cfg = tiny_fit_config(tmp_path, data=[str(path)], epochs=1, val_fraction=0.34)
    fit(cfg)
    _grow(path, 2)
    with pytest.raises(ValueError, match=r"growing\.h5: 8 complete scenes now, 6 when the run in .* last saved last\.pt"):
        fit(tiny_fit_config(tmp_path, data=[str(path)], epochs=2, val_fraction=0.34), resume=True)
    with h5py.File(path, "r+") as f:  # the file as it was: the run resumes
        for name in f:
            f[name].resize(6, axis=0)
    resumed = fit(tiny_fit_config(tmp_path, data=[str(path)], epochs=2, val_fraction=0.34), resume=True)
    assert [h["epoch"] for h in resumed.history][-1] == 2


def test_a_run_is_not_resumed_on_a_validation_file_that_has_changed(tmp_path):
    val = tmp_path / "val.h5"
    shutil.copy(synthetic_file("evalfit-val", 3, 32, 48), val)
    fit(tiny_fit_config(tmp_path, val_data=[str(val)], epochs=1))
    _grow(val, 1)
    with pytest.raises(ValueError, match=r"--val-data .*val\.h5: 4 complete scenes now, 3 .* the validation set would not"):
        fit(tiny_fit_config(tmp_path, val_data=[str(val)], epochs=2), resume=True)


def test_files_that_share_scenes_are_named_in_the_log(tmp_path):
    """A longer render of the same preset and seed held scenes that were held out of the shorter one: they
    leaked into training through it. A --val-data file of training scenes likewise."""
    short, long = tmp_path / "short.h5", tmp_path / "long.h5"
    shutil.copy(synthetic_file("evalfit-share", 4, 32, 45), short)
    shutil.copy(synthetic_file("evalfit-share-long", 6, 32, 45), long)
    other = synthetic_file("evalfit-other", 4, 32, 46)
    fit(tiny_fit_config(tmp_path, name="a", data=[str(short), str(long)], epochs=1, val_fraction=0.34))
    log = (tmp_path / "a" / "train.log").read_text()
    assert f"warning: {long}: 4 of its rendered scenes are also in {short} (the same description)" in log
    fit(tiny_fit_config(tmp_path, name="b", data=[str(long)], val_data=[str(short)], epochs=1))
    log = (tmp_path / "b" / "train.log").read_text()
    assert f"warning: --val-data {short}: 4 of its rendered scenes are training scenes of {long}" in log
    fit(tiny_fit_config(tmp_path, name="c", data=[str(short), str(other)], epochs=1, val_fraction=0.34))
    assert "warning" not in (tmp_path / "c" / "train.log").read_text()
    for path in (short, long):  # imported scenes (seed -1): descriptions name a file and an index, which differ
        with h5py.File(path, "r+") as f:  # exports of different files share: not compared
            f["seed"][...] = -1
    fit(tiny_fit_config(tmp_path, name="d", data=[str(short), str(long)], epochs=1, val_fraction=0.34))
    assert "warning" not in (tmp_path / "d" / "train.log").read_text()


def test_a_hard_link_to_a_file_is_the_same_file(tmp_path):
    import os

    src = tmp_path / "a.h5"
    shutil.copy(synthetic_file("evalfit-link", 4, 32, 47), src)
    os.link(src, tmp_path / "a_link.h5")
    with pytest.raises(ValueError, match="the same file as --data"):
        fit(tiny_fit_config(tmp_path, data=[str(src), str(tmp_path / "a_link.h5")], epochs=1))
    with pytest.raises(ValueError, match="also a training file"):
        fit(tiny_fit_config(tmp_path, data=[str(src)], val_data=[str(tmp_path / "a_link.h5")], epochs=1))
