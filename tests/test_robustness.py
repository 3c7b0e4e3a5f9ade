"""The robustness probe's findings, each a case that failed before: outputs that are inputs, resumed runs in
copied or moved folders, numeric options out of range, inputs accepted though nothing sensible could come of
them, and temporary files left by a killed checkpoint write. Every refusal is one line, inputs untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from train_fixtures import TINY, single_torch_thread, synthetic_file, tiny_run  # noqa: F401

from focalstack.dataset.cli import main as data_main
from focalstack.train.cli import main as train_main


def invoke(main, args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert lines[-1].startswith("Error: "), result.output
    for frag in fragments:
        assert frag in lines[-1], (frag, lines[-1])


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# -- outputs that are inputs ---------------------------------------------------------------------------------
def test_an_import_never_replaces_its_own_source(tmp_path):
    from interop_fixtures import write_ddff12_file

    src = tmp_path / "ddff.h5"
    write_ddff12_file(src)
    before = digest(src)
    result = invoke(data_main, ["import", "ddff12", src, "--split", "val", "--force", "-o", src])
    assert_one_line_error(result, "is also an input")
    assert digest(src) == before


def test_a_link_to_the_input_is_the_input(tmp_path):
    from interop_fixtures import write_ddff12_file

    src = tmp_path / "ddff.h5"
    write_ddff12_file(src)
    os.link(src, tmp_path / "alias.h5")
    result = invoke(data_main, ["import", "ddff12", src, "--split", "val", "--force", "-o", tmp_path / "alias.h5"])
    assert_one_line_error(result, "is also an input")


def test_preview_never_writes_over_the_file_it_reads(tmp_path):
    src = tmp_path / "scene.png"
    shutil.copy(synthetic_file("robust-a", 2, 32, 3), src)  # an HDF5 file under an image's name
    before = digest(src)
    assert_one_line_error(invoke(data_main, ["preview", src, "-o", src]), "is also an input")
    assert digest(src) == before


# -- resumed runs ------------------------------------------------------------------------------------------
def fit_args(data, out, *extra):
    return [
        "fit",
        "--data",
        data,
        "--out",
        out,
        "--arch",
        "fod-depth",
        "--width",
        4,
        "--epochs",
        1,
        "--batch-size",
        2,
        "--val-fraction",
        0,
        "--no-tensorboard",
        "-q",
        "--threads",
        1,
        *extra,
    ]


def test_a_copied_run_resumes_into_its_own_folder_and_a_moved_one_from_elsewhere(tmp_path, monkeypatch):
    data = tmp_path / "data" / "train.h5"
    data.parent.mkdir()
    shutil.copy(synthetic_file("robust-train", 4, 32, 5), data)
    monkeypatch.chdir(tmp_path)
    result = invoke(train_main, fit_args("data/train.h5", "runs/a"))  # a relative data path
    assert result.exit_code == 0, result.output
    log_a = (tmp_path / "runs/a/train.log").read_text()
    shutil.copytree(tmp_path / "runs/a", tmp_path / "runs/b")
    result = invoke(train_main, ["fit", "--out", "runs/b", "--resume", "--epochs", 2, "-q", "--threads", 1])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs/a/train.log").read_text() == log_a  # the original run is untouched
    assert "resuming runs/b/last.pt" in (tmp_path / "runs/b/train.log").read_text()
    shutil.move(tmp_path / "runs/b", tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative data path of the first run must still resolve
    result = invoke(train_main, ["fit", "--out", tmp_path / "moved", "--resume", "--epochs", 3, "-q", "--threads", 1])
    assert result.exit_code == 0, result.output
    assert f"resuming {tmp_path / 'moved' / 'last.pt'}" in (tmp_path / "moved/train.log").read_text()


def test_a_killed_checkpoint_write_leaves_no_temporary_file_after_the_resume(tmp_path):
    data = synthetic_file("robust-train", 4, 32, 5)
    out = tmp_path / "run"
    assert invoke(train_main, fit_args(data, out)).exit_code == 0
    stale = out / "last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    result = invoke(train_main, ["fit", "--out", out, "--resume", "--epochs", 2, "-q", "--threads", 1])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not list(out.glob("*.tmp"))


# -- numeric options and inputs that make no sense -------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--loss-weight", "defocus=0", "--loss-weight", "depth=0"], ["nothing to train", "weighted 0"]),
        (["--width", 0], ["--width 0", "expected an integer >= 1"]),
        (["--aif-blocks", -1], ["--aif-blocks -1", "expected an integer >= 0"]),
        (["--threads", -2], ["--threads", "-2"]),
        (["--max-time", 0], ["--max-time 0.0", "seconds > 0"]),
        (["--max-time", "nan"], ["--max-time nan"]),
    ],
)
def test_fit_refuses_values_nothing_can_come_of_in_one_line(tmp_path, extra, fragments):
    data = synthetic_file("robust-train", 4, 32, 5)
    args = fit_args(data, tmp_path / "run")
    if "--aif-blocks" in extra:
        args[args.index("fod-depth")] = "fod"
    if extra[0] in args:  # a one-value option is refused when given twice: replace the base value instead
        at = args.index(extra[0])
        del args[at : at + 2]
    result = invoke(train_main, [*args, *extra])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_threads_below_one_are_refused(tmp_path, command):
    ckpt = tiny_run("fod") / "best.pt"
    data = synthetic_file("robust-a", 2, 32, 3)
    args = ["evaluate", "-c", ckpt, "--data", data] if command == "evaluate" else ["predict", "-c", ckpt, tmp_path]
    assert_one_line_error(invoke(train_main, [*args, "-o", tmp_path / "o", "--threads", -2]), "--threads", "-2")


def test_evaluate_refuses_a_stack_size_no_file_has_and_flat_regions_without_aif(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    data = synthetic_file("robust-a", 2, 32, 3)  # five slices
    result = invoke(train_main, ["evaluate", "-c", ckpt, "--data", data, "-o", tmp_path / "e", "--stack-size", 9, "-q"])
    assert_one_line_error(result, "--stack-size 9: no file has stacks of 9 slices", "robust-a.h5: 5")
    no_aif = tmp_path / "no-aif.h5"
    shutil.copy(data, no_aif)
    with h5py.File(no_aif, "r+") as f:
        import json

        declared = json.loads(f.attrs["ground_truth"])
        declared["aif"] = {"source": "absent"}
        declared["edges"] = {"source": "absent"}
        f.attrs["ground_truth"] = json.dumps(declared)
        del f["aif"], f["edges"]
    result = invoke(train_main, ["evaluate", "-c", ckpt, "--data", no_aif, "-o", tmp_path / "f", "--region", "flat", "-q"])
    assert_one_line_error(result, "--region flat", "no-aif.h5 does not hold")
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def test_render_refuses_repeated_focus_distances_and_a_preset_of_random_bytes(tmp_path):
    from focalstack.render.cli import main as render_main

    result = invoke(render_main, ["--focus-distances", "0.5,0.5", "--out", tmp_path / "x.h5"])
    assert_one_line_error(result, "0.5 given more than once")
    junk = tmp_path / "junk.toml"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    assert_one_line_error(invoke(render_main, ["--preset", junk, "--out", tmp_path / "x.h5"]), "not UTF-8 text")
    assert not (tmp_path / "x.h5").exists()


# -- one writer per file, and Ray addresses --------------------------------------------------------------------
HOLD = """
import sys, time
from focalstack.dataset.files import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_render_on_the_same_file_is_refused_naming_the_writer(tmp_path):
    import subprocess
    import sys

    from focalstack.render.cli import main as render_main

    out = tmp_path / "x.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke(render_main, ["--scenes", 1, "--resolution", 32, "--out", out])
        assert_one_line_error(result, "another process is writing it", f"pid {holder.pid} on host")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the killed holder's lock: its lock file no longer blocks anyone
    from focalstack.dataset.files import exclusive_lock

    assert (tmp_path / "x.h5.lock").exists()
    with exclusive_lock(out) as lock:
        assert f"pid {os.getpid()}" in lock.read_text()
    assert not (tmp_path / "x.h5.lock").exists()


@pytest.mark.parametrize(
    "address, needle",
    [
        ("not an address", "expected HOST:PORT"),
        ("127.0.0.1:1", "cannot connect to 127.0.0.1:1"),
        ("SILENT", "within 2 s"),  # a port that accepts connections and never answers (not Ray)
    ],
)
def test_an_unreachable_ray_address_is_one_line_in_bounded_time_and_writes_nothing(tmp_path, address, needle):
    import socket
    import time

    from focalstack.render.cli import main as render_main

    if address == "SILENT":
        pytest.importorskip("ray")
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        address = f"127.0.0.1:{silent.getsockname()[1]}"
    out = tmp_path / "x.h5"
    t = time.monotonic()
    result = invoke(render_main, ["--scenes", 1, "--resolution", 32, "--ray", address, "--ray-timeout", 2, "--out", out])
    assert_one_line_error(result, needle)
    assert time.monotonic() - t < 20
    assert not out.exists() and not list(tmp_path.iterdir())
    if needle == "within 2 s":
        silent.close()


def test_scenes_a_killed_run_left_in_shards_count_as_done_up_to_the_scenes_asked():
    from focalstack.render.job import _ready_in_shards

    shards = [(0, 3, 2), (3, 6, 2)]  # scenes 0, 1 of 0..2 and 3, 4 of 3..5 done
    assert _ready_in_shards(shards, 0, 6) == 4
    assert _ready_in_shards(shards, 1, 6) == 3  # scene 0 is in the file already
    assert _ready_in_shards(shards, 1, 4) == 2  # scene 4 lies past the scenes asked


@pytest.mark.parametrize("option", ["--ray-timeout", "--ray-gpus-per-task"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_ray_numbers_must_be_finite_and_not_negative(tmp_path, option, value):
    from focalstack.render.cli import main as render_main

    result = invoke(render_main, ["--scenes", 1, "--ray", "127.0.0.1:1", option, value, "--out", tmp_path / "x.h5"])
    assert_one_line_error(result, option)
    assert not (tmp_path / "x.h5").exists()


FIT_NUMBERS = [
    "--epochs",
    "--batch-size",
    "--lr",
    "--weight-decay",
    "--grad-clip",
    "--val-fraction",
    "--depth-scale",
    "--defocus-scale",
    "--focus-scale",
    "--max-depth",
    "--samples-per-epoch",
    "--seed",
    "--max-steps",
    "--checkpoint-every",
    "--workers",
    "--width",
    "--max-time",
    "--threads",
]


@pytest.mark.parametrize("option", FIT_NUMBERS)
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_every_numeric_option_of_fit_refuses_negative_and_non_finite_values(tmp_path, option, value):
    if value == "inf" and option in ("--max-depth",):
        pytest.skip("an infinite depth limit means none")
    data = synthetic_file("robust-train", 4, 32, 5)
    result = invoke(
        train_main, ["fit", "--data", data, "--out", tmp_path / "run", "--epochs", 1, "-q", "--no-tensorboard", option, value]
    )
    assert_one_line_error(result, option if option != "--threads" else "--threads")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "--batch-size"],
        ["evaluate", "--max-scenes"],
        ["evaluate", "--seed"],
        ["evaluate", "--stack-size"],
        ["predict", "--tile"],
        ["predict", "--width"],
        ["predict", "--f-number"],
        ["predict", "--focal-length-mm"],
        ["predict", "--sensor-width-mm"],
    ],
)
@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_every_numeric_option_of_evaluate_and_predict_refuses_bad_values(tmp_path, args, value):
    ckpt = tiny_run("fod") / "best.pt"
    command, option = args
    if command == "evaluate":
        base = ["evaluate", "-c", ckpt, "--data", synthetic_file("robust-a", 2, 32, 3), "-o", tmp_path / "o", "-q"]
    else:
        import cv2

        (tmp_path / "ph").mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / "ph" / f"{i}.png"), np.zeros((40, 40, 3), np.uint8))
        base = ["predict", "-c", ckpt, "-f", "0.1,1.5", tmp_path / "ph", "-o", tmp_path / "o"]
    assert_one_line_error(invoke(train_main, [*base, option, value]))
    assert not (tmp_path / "o").exists()


WRITE = """
import sys, time
sys.path.insert(0, sys.argv[2])
import dataset_fixtures as fx
w = fx.open_writer(sys.argv[1])
w.append(fx.make_record(0))
print("writing", flush=True)
time.sleep(60)
"""


def test_a_reader_opened_during_a_write_gets_a_clear_message(tmp_path):
    import subprocess
    import sys

    from focalstack.dataset import FocalStackFile
    from focalstack.dataset.schema import DatasetError

    path = tmp_path / "busy.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE, str(path), str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        with pytest.raises(DatasetError, match="locked by another process that has it open for writing"):
            FocalStackFile(path)
        result = invoke(data_main, ["inspect", path])
        assert_one_line_error(result, "locked by another process")
    finally:
        writer.kill()
        writer.wait()


# -- shipped weights ---------------------------------------------------------------------------------------------
def test_shipped_weights_are_found_by_short_name_and_stay_small(tmp_path, monkeypatch):
    from focalstack.train import checkpoint as ck

    root = Path(__file__).resolve().parents[1] / "weights"
    assert sum(p.stat().st_size for p in root.iterdir() if p.is_file()) < 40_000_000
    for pt in root.glob("*.pt"):  # every shipped checkpoint has its model card
        assert (root / f"{pt.stem}.md").is_file(), pt.name
    exported = tmp_path / "fod-test.pt"
    ck.export_weights(tiny_run("fod") / "best.pt", exported, half=True)
    monkeypatch.setattr(ck, "bundled_weights", lambda: {"fod-test": exported})
    assert ck.resolve_checkpoint("fod-test") == exported
    assert ck.load_checkpoint("fod-test")["weights_only"]
    with pytest.raises(ck.CheckpointError, match="no shipped weights of that name .shipped: fod-test."):
        ck.load_checkpoint("fod-nope")
    result = invoke(train_main, ["evaluate", "-c", "fod-nope", "--data", synthetic_file("robust-a", 2, 32, 3), "-q"])
    assert_one_line_error(result, "no shipped weights of that name")
    # a local file of a shipped name is taken first (documented); when it is no checkpoint, the error says so
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fod-test").write_text("junk")
    with pytest.raises(ck.CheckpointError, match="it is a file here, so the shipped weights fod-test were not used"):
        ck.load_checkpoint("fod-test")


def test_an_export_over_its_size_limit_keeps_the_file_that_was_there(tmp_path):
    from focalstack.train import checkpoint as ck

    dst = tmp_path / "w.pt"
    ck.export_weights(tiny_run("fod") / "best.pt", dst, half=True)
    before = digest(dst)
    with pytest.raises(ck.CheckpointError, match="over 1000"):
        ck.export_weights(tiny_run("fod") / "best.pt", dst, max_bytes=1000, half=True)
    assert digest(dst) == before and not list(tmp_path.glob("*.tmp"))


@pytest.mark.blender
def test_rerunning_a_finished_render_neither_opens_it_for_writing_nor_stops_for_its_readers(tmp_path):
    from focalstack.dataset import FocalStackFile
    from focalstack.render.cli import main as render_main

    out = tmp_path / "x.h5"
    args = ["--scenes", 1, "--resolution", 32, "--samples", 1, "--no-denoise", "--out", out]
    assert invoke(render_main, args).exit_code == 0
    before, stamp = digest(out), out.stat().st_mtime_ns
    with FocalStackFile(out):  # a training run validating on it holds it open for reading
        result = invoke(render_main, args)
    assert result.exit_code == 0 and "0 rendered now" in result.output, result.output
    assert digest(out) == before and out.stat().st_mtime_ns == stamp
    # settings that differ are still refused, untouched
    result = invoke(render_main, [*args[:-2], "--seed", 5, "--out", out])
    assert_one_line_error(result, "exists with other settings")


# -- a scene whose camera no optics can use ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, row, value, fragment",
    [
        ("f_number", 1, 0.0, "scene 1: 'f_number' is 0.0, expected a number > 0"),
        ("f_number", 2, np.inf, "scene 2: 'f_number' is inf, expected a number > 0"),
        ("focus_distance", 0, [0.7, 0.1, -1.0, 0.3, 1.5], "scene 0: 'focus_distance' [0.7, 0.1, -1, 0.3, 1.5] m, expected"),
        ("focus_distance", 0, [np.nan] * 5, "scene 0: 'focus_distance' [nan, nan, nan, nan, nan] m, expected"),
    ],
)
def test_a_scene_with_an_impossible_camera_is_refused_by_every_reader_naming_file_and_scene(tmp_path, name, row, value, fragment):
    """Training, evaluation and export divided by a zero f-number (a traceback) or focused inside the lens."""
    from focalstack.dataset import DatasetError, FocalStackFile

    bad = tmp_path / "bad.h5"
    shutil.copy(synthetic_file("robust-camera", 4, 32, 9), bad)
    with h5py.File(bad, "r+") as f:
        f[name][row] = value
    with FocalStackFile(bad) as f:
        with pytest.raises(DatasetError, match="^" + __import__("re").escape(f"{bad}: {fragment}")):
            f[row]
        f[3]  # the other scenes still read
    for workers in (0, 1):  # checked before any DataLoader worker starts: a worker's error names no file
        result = invoke(
            train_main, ["evaluate", "-c", tiny_run("fod-depth") / "last.pt", "--data", bad, "-q", "--workers", workers]
        )
        assert_one_line_error(result, str(bad), fragment)
    result = invoke(data_main, ["export", "fod500", bad, "-o", tmp_path / "out"])
    assert_one_line_error(result, str(bad), fragment)
    assert not (tmp_path / "out").exists()


def test_a_folder_it_may_not_write_in_is_named_by_the_file_asked_for(tmp_path, monkeypatch):
    """The error named the temporary file (x.h5.r7oe_7yb.tmp). Tests run as root, where every folder is
    writable: the temporary file's creation is made to fail as it would."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.h5.abc123.tmp"))

    source = synthetic_file("robust-salvage", 2, 32, 4)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    result = invoke(data_main, ["salvage", source, "-o", tmp_path / "x.h5"])
    assert_one_line_error(result, f"cannot write {tmp_path / 'x.h5'} (Permission denied)")
    assert ".tmp" not in result.output


@pytest.mark.parametrize("value, shown", [(0.0, "0.0"), (float("nan"), "nan"), ("3", "'3'")])
def test_a_checkpoint_whose_normalisation_is_not_a_positive_number_is_refused_naming_it(tmp_path, value, shown):
    """0 scaled every depth to 0 and NaN made NaN metrics, both with exit 0; a string ended in a traceback."""
    import torch

    ckpt = torch.load(tiny_run("fod") / "best.pt", weights_only=True)
    ckpt["norm"]["depth_scale"] = value
    torch.save(ckpt, tmp_path / "edited.pt")
    data = synthetic_file("robust-a", 2, 32, 3)
    result = invoke(train_main, ["evaluate", "-c", tmp_path / "edited.pt", "--data", data, "-o", tmp_path / "e", "-q"])
    assert_one_line_error(result, "edited.pt: norm depth_scale is", shown, "expected a finite number > 0")
    assert not (tmp_path / "e").exists()


def test_evaluate_scores_each_request_once_and_refuses_an_order_without_subsets(tmp_path):
    """--order random without --stack-size was ignored; a repeated --stack-size or --setting printed the same
    rows twice; a file given twice repeated its rows in the tables and kept one in metrics.json."""
    ckpt = tiny_run("fod") / "best.pt"
    data = synthetic_file("robust-a", 2, 32, 3)
    base = ["evaluate", "-c", ckpt, "-o", tmp_path / "e", "-q", "--protocol", "dfv"]
    result = invoke(train_main, [*base, "--data", data, "--order", "random"])
    assert_one_line_error(result, "--order random: orders the K slices of --stack-size subsets")
    link = tmp_path / "same.h5"
    link.symlink_to(data)
    result = invoke(train_main, [*base, "--data", data, "--data", link])
    assert_one_line_error(result, f"--data {link}: given more than once (as {data})")
    assert not (tmp_path / "e").exists()
    once = invoke(train_main, [*base, "--data", data, "--setting", "All", "--stack-size", "3"])
    twice = invoke(
        train_main, [*base, "--data", data, "--setting", "All", "--setting", "All", "--stack-size", "3", "--stack-size", "3"]
    )
    assert once.exit_code == twice.exit_code == 0, twice.output
    assert twice.output == once.output
    rows = [line for line in once.output.splitlines() if "robust-a" in line]
    assert len(rows) == 2, once.output  # All, and the 3-slice subsets


def test_a_model_whose_depth_is_not_finite_gets_a_note_and_valid_json(tmp_path):
    """metrics.json held 'Infinity', which JSON parsers refuse, and the dfv table looked ordinary: it clips
    predictions into its depth range."""
    import json

    import torch

    ckpt = torch.load(tiny_run("fod") / "best.pt", weights_only=True)
    biases = [k for k in ckpt["model"] if k.startswith("depth") and k.endswith("bias")]
    ckpt["model"][biases[-1]] = torch.full_like(ckpt["model"][biases[-1]], 3e38)
    torch.save(ckpt, tmp_path / "huge.pt")
    data = synthetic_file("robust-a", 2, 32, 3)
    args = ["evaluate", "-c", tmp_path / "huge.pt", "--data", data, "-o", tmp_path / "e", "-q"]
    result = invoke(train_main, [*args, "--protocol", "dfv", "--protocol", "focalstack"])
    assert result.exit_code == 0, result.output
    assert "gave depth that is not finite at" in result.output
    text = (tmp_path / "e" / "metrics.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
