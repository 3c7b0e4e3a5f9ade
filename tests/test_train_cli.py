"""focalstack-train's commands: evaluate writes every metric, predict runs on a folder of PNG files,
bad input ends in one line naming the file or value, and python -m focalstack.train works."""

import csv
import json
import math
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from train_fixtures import single_torch_thread, synthetic_file, tiny_run, write_synthetic  # noqa: F401

from focalstack.train.cli import main
from focalstack.train.metrics import ALL_METRICS, DEPTH_METRICS


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert lines[-1].startswith("Error: "), result.output
    for frag in fragments:
        assert frag in lines[-1], (frag, lines[-1])


def test_evaluate_writes_every_metric_for_all_and_random(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    test_a = synthetic_file("cli-test-a", 3, 32, 31)
    test_b = synthetic_file("cli-test-b", 2, 32, 32)
    result = run(["evaluate", "-c", ckpt, "--data", test_a, "--data", test_b, "-o", tmp_path, "-q", "--threads", 1])
    assert result.exit_code == 0, result.output
    assert result.output.count("| ") >= 4 and "depth_rmse (m)" in result.output and "`focalstack`" in result.output
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["meta"]["protocols"]["focalstack"]["units"]["depth_mse"] == "m^2"
    data = doc["results"]["focalstack"]
    assert set(data) == {str(test_a), str(test_b)}
    for per_file in data.values():
        assert set(per_file) == {"All", "Random"}
        for metrics in per_file.values():
            assert set(ALL_METRICS) <= set(metrics)
            assert all(np.isfinite(metrics[m]) for m in ALL_METRICS)
            assert 0 <= metrics["delta1"] <= metrics["delta2"] <= metrics["delta3"] <= 1
            assert metrics["depth_rmse"] == pytest.approx(metrics["depth_mse"] ** 0.5, rel=0.5)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))  # one value per line
    assert [(r["file"], r["setting"]) for r in rows[:: len(ALL_METRICS)]] == [
        (str(test_a), "All"),
        (str(test_a), "Random"),
        (str(test_b), "All"),
        (str(test_b), "Random"),
    ]
    assert [r["metric"] for r in rows[: len(ALL_METRICS)]] == list(ALL_METRICS)
    assert {r["protocol"] for r in rows} == {"focalstack"} and rows[0]["unit"] == "m^2"
    assert float(rows[1]["value"]) == pytest.approx(data[str(test_a)]["All"]["depth_rmse"])
    md = (tmp_path / "metrics.md").read_text()
    assert all(m in md for m in ALL_METRICS)


def test_evaluate_model_without_aif_reports_a_dash_and_says_why(tmp_path):
    ckpt = tiny_run("fod-depth") / "best.pt"
    result = run(
        ["evaluate", "-c", ckpt, "--data", synthetic_file("cli-test-a", 3, 32, 31), "-o", tmp_path, "--setting", "All", "-q"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "metrics.json").read_text())
    metrics = doc["results"]["focalstack"].popitem()[1]["All"]
    assert metrics["aif_ssim"] is None and all(metrics[m] is not None for m in DEPTH_METRICS)
    row = next(ln for ln in result.output.splitlines() if ln.startswith("| ") and "| All |" in ln)
    assert row.rstrip(" |").endswith("| - | -")  # aif_ssim, aif_psnr
    assert sum("has no AiF branch: aif_psnr, aif_ssim are '-'" in ln for ln in result.output.splitlines()) == 1
    assert doc["notes"] == [n for n in doc["notes"] if "no AiF branch" in n] and len(doc["notes"]) == 1


def _png_folder(folder, n=4, h=37, w=53, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"img_{i}.png"), (rng.random((h, w, 3)) * 255).astype(np.uint8))
    return folder


def test_predict_runs_on_a_folder_of_png_files(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    folder = _png_folder(tmp_path / "photos", n=4, h=37, w=53)
    out = tmp_path / "out"
    result = run(["predict", "-c", ckpt, "-f", "0.7,0.1,1.5,0.3", folder, "-o", out, "--refocus", "0.2", "--threads", 1])
    assert result.exit_code == 0, result.output
    depth = np.load(out / "depth.npy")
    assert depth.shape == (37, 53) and depth.dtype == np.float32
    png = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (37, 53)
    assert np.allclose(png, np.clip(np.round(depth * 1000), 0, 65535))  # millimetres
    assert cv2.imread(str(out / "depth_color.png")).shape == (37, 53, 3)
    assert np.load(out / "defocus.npy").shape == (4, 37, 53)
    assert len(list(out.glob("defocus_*_img_*.png"))) == 4
    assert cv2.imread(str(out / "aif.png")).shape == (37, 53, 3)
    assert cv2.imread(str(out / "edges.png"), cv2.IMREAD_UNCHANGED).shape == (37, 53)
    assert cv2.imread(str(out / "refocus_0.2m.png")).shape == (37, 53, 3)
    meta = json.loads((out / "prediction.json").read_text())
    assert meta["focus_distances_m"] == [0.7, 0.1, 1.5, 0.3] and len(meta["images"]) == 4


def test_predict_replaces_an_earlier_prediction_only_when_asked_and_whole(tmp_path):
    """predict once wrote over an earlier result file by file: a failure left old and new files mixed."""
    folder = _png_folder(tmp_path / "photos", n=2, h=24, w=24)
    out = tmp_path / "out"
    full = ["predict", "-c", tiny_run("fod") / "best.pt", "-f", "0.1,1.5", folder, "-o", out, "--refocus", "0.2"]
    assert run(full).exit_code == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == json.loads((out / "prediction.json").read_text())["files"]

    again = run(full)
    assert_one_line_error(again)
    assert "holds an earlier prediction (prediction.json); pass --force" in again.output
    (out / "edges.png").unlink()
    (out / "edges.png").mkdir()  # a file the new prediction cannot put in place
    blocked = run([*full, "--force"])
    assert_one_line_error(blocked)
    assert "edges.png is a folder" in blocked.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == {k: v for k, v in first.items() if k != "edges.png"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no scratch folder left
    (out / "edges.png").rmdir()

    # A model without an AiF branch: the earlier aif.png, edges.png and refocus image go, nothing old stays.
    depth_only = run(["predict", "-c", tiny_run("fod-depth") / "best.pt", "-f", "0.1,1.5", folder, "-o", out, "--force"])
    assert depth_only.exit_code == 0, depth_only.output
    files = sorted(p.name for p in out.iterdir())
    assert files == json.loads((out / "prediction.json").read_text())["files"]
    assert "aif.png" not in files and "refocus_0.2m.png" not in files and "depth.npy" in files

    inside = run(["predict", "-c", tiny_run("fod") / "best.pt", "-f", "0.1,1.5", folder, "-o", folder])
    assert_one_line_error(inside)
    assert "holds the input images" in inside.output and len(list(folder.iterdir())) == 2
    linked = tmp_path / "linked"  # a folder of links to the images is the images' folder too
    linked.mkdir()
    for image in folder.iterdir():
        (linked / image.name).symlink_to(image)
    assert (
        "holds the input images"
        in run(["predict", "-c", tiny_run("fod") / "best.pt", "-f", "0.1,1.5", linked, "-o", linked]).output
    )

    # No file is removed from a folder that holds no earlier prediction, whatever its name.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "aif.png").write_bytes(b"my own picture")
    assert run(["predict", "-c", tiny_run("fod-depth") / "best.pt", "-f", "0.1,1.5", folder, "-o", mine]).exit_code == 0
    assert (mine / "aif.png").read_bytes() == b"my own picture" and (mine / "prediction.json").exists()


def test_predict_in_tiles_equals_the_whole_image(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    folder = _png_folder(tmp_path / "photos", n=2, h=232, w=264)  # larger than a 48 px tile's 240 px window
    whole = run(["predict", "-c", ckpt, "-f", "0.1,1.5", folder, "-o", tmp_path / "whole", "--tile", "0"])
    tiled = run(["predict", "-c", ckpt, "-f", "0.1,1.5", folder, "-o", tmp_path / "tiled", "--tile", "48"])
    assert whole.exit_code == 0 and tiled.exit_code == 0, tiled.output
    a, b = np.load(tmp_path / "whole" / "depth.npy"), np.load(tmp_path / "tiled" / "depth.npy")
    assert a.shape == b.shape == (232, 264)
    # 96 px of context around each 48 px tile: the whole image's result, to 1e-4 of the 3 m depth range
    assert np.abs(a - b).max() <= 3e-4, np.abs(a - b).max()
    da, db = np.load(tmp_path / "whole" / "defocus.npy"), np.load(tmp_path / "tiled" / "defocus.npy")
    assert np.abs(da - db).max() <= 1e-3
    aif_a = cv2.imread(str(tmp_path / "whole" / "aif.png")).astype(int)
    assert np.abs(aif_a - cv2.imread(str(tmp_path / "tiled" / "aif.png")).astype(int)).max() <= 1


def test_predict_at_a_smaller_width_runs_on_the_resized_stack_and_scales_defocus_back(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    folder = _png_folder(tmp_path / "photos", n=2, h=40, w=64)
    small = tmp_path / "small"
    small.mkdir()
    for p in sorted(folder.iterdir()):  # what --width 32 should feed the network: the images resized by area
        cv2.imwrite(str(small / p.name), cv2.resize(cv2.imread(str(p)), (32, 20), interpolation=cv2.INTER_AREA))
    assert run(["predict", "-c", ckpt, "-f", "0.1,1.5", folder, "-o", tmp_path / "w", "--width", 32]).exit_code == 0
    assert run(["predict", "-c", ckpt, "-f", "0.1,1.5", small, "-o", tmp_path / "s"]).exit_code == 0
    meta = json.loads((tmp_path / "w" / "prediction.json").read_text())
    assert meta["size"] == [40, 64] and meta["network_size"] == [20, 32]
    depth, defocus = np.load(tmp_path / "w" / "depth.npy"), np.load(tmp_path / "w" / "defocus.npy")
    assert depth.shape == (40, 64) and defocus.shape == (2, 40, 64)
    assert cv2.imread(str(tmp_path / "w" / "aif.png")).shape == (40, 64, 3)

    def up(a):
        return cv2.resize(a, (64, 40), interpolation=cv2.INTER_LINEAR)

    # the small run's outputs, brought up: depth as it is, blur twice as many pixels (inputs differ by the
    # 8-bit rounding of the resized PNG files only)
    small_depth, small_defocus = np.load(tmp_path / "s" / "depth.npy"), np.load(tmp_path / "s" / "defocus.npy")
    assert np.abs(depth - up(small_depth)).max() <= 0.05 * np.abs(depth).max()  # (this network's depth is small)
    twice = np.stack([2 * up(d) for d in small_defocus])
    assert np.abs(defocus - twice).max() < 0.02 * np.abs(twice).max()
    assert np.abs(defocus - twice / 2).max() > 0.2 * np.abs(twice).max()  # not left in the network's pixels


def test_bad_input_gets_one_line_errors(tmp_path):
    ckpt = tiny_run("fod") / "best.pt"
    out = tmp_path / "runs"
    # missing file
    assert_one_line_error(run(["fit", "--data", tmp_path / "nope.h5", "--out", out / "a"]), "nope.h5", "no such file")
    # a file that is not schema-valid
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    assert_one_line_error(run(["fit", "--data", bad, "--out", out / "b"]), "bad.h5")
    assert_one_line_error(run(["evaluate", "-c", ckpt, "--data", bad, "-o", tmp_path / "e"]), "bad.h5")
    # stack sizes that differ within a batch
    three = write_synthetic(tmp_path / "three.h5", 2, 32, focus=(0.1, 0.3, 1.5))
    five = synthetic_file("cli-test-a", 3, 32, 31)
    assert_one_line_error(
        run(["fit", "--data", five, "--data", three, "--out", out / "c"]), "stack sizes differ", "three.h5", "--stack-size"
    )
    # images of different sizes in one stack
    folder = _png_folder(tmp_path / "mixed", n=2, h=32, w=32)
    cv2.imwrite(str(folder / "img_9.png"), np.zeros((20, 24, 3), np.uint8))
    assert_one_line_error(
        run(["predict", "-c", ckpt, "-f", "0.1,0.3,1.5", folder, "-o", tmp_path / "p"]), "different sizes", "img_9.png is 20x24"
    )
    assert_one_line_error(
        run(["predict", "-c", ckpt, "-f", "0.1,0.3", folder, "-o", tmp_path / "p"]), "3 images but 2 focus distances"
    )
    # a checkpoint from another architecture
    assert_one_line_error(
        run(["fit", "--resume", "--out", tiny_run("fod"), "--arch", "fod-depth"]), "architecture 'fod'", "fod-depth"
    )
    assert_one_line_error(
        run(["predict", "-c", bad, "-f", "0.1", folder / "img_9.png", "-o", tmp_path / "p"]),
        "bad.h5",
        "not a focalstack-train checkpoint",
    )
    cut = tmp_path / "cut.pt"
    whole = (tiny_run("fod") / "best.pt").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    cut_error = run(["evaluate", "-c", cut, "--data", five])
    assert_one_line_error(cut_error, "cut.pt: not a focalstack-train checkpoint (PytorchStreamReader failed reading zip")
    assert cut_error.output.rstrip().endswith(")") and "If you are seeing" not in cut_error.output  # torch's advice cut
    # bad values
    assert_one_line_error(run(["evaluate", "-c", cut, "--data", five, "--seed", "-1"]), "'--seed': -1 is not in the range")
    assert_one_line_error(run(["fit", "--data", five, "--out", out / "d", "--loss-weight", "depht=2"]), "depht=2")
    assert_one_line_error(run(["fit", "--data", five, "--out", out / "e", "--device", "cuda:7"]), "cuda:7")
    assert_one_line_error(
        run(["fit", "--data", five, "--out", out / "f", "--arch", "fod-depth", "--aif-width", "8"]), "--aif-width"
    )


def test_fit_command_trains_and_resumes(tmp_path):
    data = synthetic_file("cli-test-a", 3, 32, 31)
    args = [
        "fit",
        "--data",
        f"{data}:0.5",
        "--out",
        tmp_path / "r",
        "--epochs",
        1,
        "--batch-size",
        2,
        "--width",
        4,
        "--aif-width",
        4,
        "--aif-blocks",
        1,
        "--workers",
        0,
        "--threads",
        1,
        "--random-stack",
        "--crop",
        "24",
        "-q",
    ]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "best.pt").exists() and (tmp_path / "r" / "metrics.csv").exists()
    again = run(["fit", "--out", tmp_path / "r", "--resume", "--epochs", 2, "--workers", 0, "-q"])
    assert again.exit_code == 0, again.output
    assert len(list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))) == 2


def test_resume_without_epochs_keeps_the_runs_own(tmp_path):
    # --epochs' default (50) once replaced a finished 1-epoch run's own on --resume, training 49 more
    data = synthetic_file("cli-test-a", 3, 32, 31)
    args = [
        "fit",
        "--data",
        data,
        "--out",
        tmp_path / "r",
        "--epochs",
        1,
        "--batch-size",
        2,
        "--width",
        4,
        "--aif-width",
        4,
        "--aif-blocks",
        1,
        "--workers",
        0,
        "--threads",
        1,
        "-q",
    ]
    assert run(args).exit_code == 0
    again = run(["fit", "--out", tmp_path / "r", "--resume", "--workers", 0, "-q"])
    assert again.exit_code == 0, again.output
    assert len(list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))) == 1
    from focalstack.train.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "r" / "last.pt")["config"]["epochs"] == 1


def test_python_dash_m_runs_the_same_command_line():
    result = subprocess.run([sys.executable, "-m", "focalstack.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "fit" in result.stdout and "evaluate" in result.stdout
    assert "predict" in result.stdout


def test_quick_train_and_evaluate_returns_the_table(tmp_path):
    from focalstack.train import quick_train_and_evaluate

    train = synthetic_file("quick-train", 4, 32, 41)
    test = synthetic_file("quick-test", 2, 32, 42)
    table = quick_train_and_evaluate(train, test, tmp_path / "quick", epochs=1, progress=False)
    assert table.count("\n") == 4 and "| All |" in table and "| Random |" in table
    assert (tmp_path / "quick" / "eval" / "metrics.json").exists()


def test_fit_defaults_are_the_configuration_defaults(monkeypatch):
    import focalstack.train.cli as cli
    from focalstack.train.config import TrainConfig

    calls = []
    monkeypatch.setattr(cli, "run_fit", lambda cfg, resume, given=(): calls.append((cfg, resume)))
    result = run(["fit", "--data", "x.h5", "--out", "runs/x", "-q"])
    assert result.exit_code == 0, result.output
    cfg, resume = calls[0]
    assert not resume
    assert cfg == TrainConfig(data=["x.h5"], out="runs/x", progress=False)  # every other field its default
    assert cfg.workers == 0  # (the command line said 2 while TrainConfig said 0)


def test_option_defaults_and_choices_come_from_the_dataclasses_and_the_registry():
    import dataclasses
    import inspect

    from focalstack.train.config import TrainConfig
    from focalstack.train.data import Norm
    from focalstack.train.evaluate import evaluate
    from focalstack.train.losses import LossWeights
    from focalstack.train.models import ARCHITECTURES
    from focalstack.train.predict import predict

    fit = {p.name: p for p in main.commands["fit"].params}
    for cls in (TrainConfig, Norm):
        for f in dataclasses.fields(cls):
            # --arch and --epochs have no default, so that --resume can tell whether they were given
            given = f.name in ("arch", "epochs")
            if f.name in fit and not fit[f.name].is_flag and f.default is not dataclasses.MISSING and not given:
                assert fit[f.name].default == f.default, f.name
    assert {"lr", "epochs", "batch_size", "workers", "depth_scale", "max_depth"} <= fit.keys()
    assert list(fit["arch"].type.choices) == list(ARCHITECTURES)
    builder = inspect.signature(ARCHITECTURES[TrainConfig.arch]).parameters
    for name in ("width", "aif_width", "aif_blocks"):
        assert fit[name].help.endswith(f"[{builder[name].default}].")
    weights = " ".join(f"{f.name}={f.default:g}" for f in dataclasses.fields(LossWeights))
    assert f"[{weights}]" in fit["loss_weight"].help
    for command, fn in (("evaluate", evaluate), ("predict", predict)):
        signature = inspect.signature(fn).parameters
        params = [
            p
            for p in main.commands[command].params
            if p.name in signature and signature[p.name].default is not inspect.Parameter.empty
        ]
        assert len(params) >= 3, command
        for p in params:
            expected = signature[p.name].default
            assert (tuple(p.default) if p.multiple else p.default) == expected, (command, p.name)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--weight-decay", "inf"], "--weight-decay"),
        (["--grad-clip", "nan"], "--grad-clip"),
        (["--depth-scale", "inf"], "--depth-scale"),
        (["--max-depth", "nan"], "--max-depth"),
        (["--val-fraction", "nan"], "--val-fraction"),
        (["--val-fraction", "1"], "--val-fraction"),
        (["--loss-weight", "depth=inf"], "--loss-weight"),
        (["--loss-weight", "edges=nan"], "--loss-weight"),
        (["--loss-weight", "aif=-1"], "--loss-weight"),
        (["--crop", "inf"], "--crop"),
        (["--crop", "0x32"], "--crop"),
        (["--epochs", "0"], "--epochs"),
        (["--samples-per-epoch", "0"], "--samples-per-epoch"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
    ],
)
def test_fit_refuses_non_finite_and_out_of_range_numbers_naming_the_option(tmp_path, args, option):
    data = synthetic_file("cli-test-a", 3, 32, 31)
    result = run(["fit", "--data", data, "--out", tmp_path / "r", *args])
    assert_one_line_error(result, option, args[1].split("=")[-1])
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_config_check_refuses_non_finite_numbers_given_from_python():
    from focalstack.train.config import TrainConfig

    base = dict(data=["x.h5"], out="runs/x")
    for field, value, option in (
        ("lr", math.inf, "--lr"),
        ("val_fraction", math.nan, "--val-fraction"),
        ("loss_weights", {"depth": math.inf}, "--loss-weight depth=inf"),
        ("norm", {"focus_scale": -math.inf}, "--focus-scale"),
        ("crop", [32, 1.5], "--crop"),
        ("max_steps", 0, "--max-steps"),
        ("lr_schedule", "linear", "--lr-schedule 'linear': expected one of constant, cosine"),
    ):
        with pytest.raises(ValueError, match=re.escape(option)):
            TrainConfig(**base, **{field: value}).check()
    TrainConfig(**base).check()  # the defaults pass


@pytest.mark.parametrize(
    "args, option",
    [
        (["-f", "0.1,inf"], "--focus-distances"),
        (["-f", "0.1,nan"], "--focus-distances"),
        (["-f", "0.1,-0.3"], "--focus-distances"),
        (["-f", "0.1,0.3", "--refocus", "inf"], "--refocus"),
        (["-f", "0.1,0.3", "--refocus", "0.5", "--f-number", "nan"], "--f-number"),
        (["-f", "0.1,0.3", "--refocus", "0.5", "--focal-length-mm", "inf"], "--focal-length-mm"),
        (["-f", ""], "--focus-distances ''"),  # not a request for the checkpoint's distances
        # ignored without --refocus, yet recorded in prediction.json as the camera used
        (["-f", "0.1,0.3", "--f-number", "8"], "--f-number: the camera is --refocus's alone"),
        (["-f", "0.1,0.3", "--sensor-width-mm", "10"], "--sensor-width-mm: the camera is --refocus's alone"),
        # distances within the training camera's 2.9 mm focal length (no lens focuses there)
        (["-f", "0.002,0.3"], "--focus-distances 0.002: within the camera's focal length (2.9 mm)"),
        (["-f", "0.1,0.3", "--refocus", "0.001"], "--refocus 0.001: within the camera's focal length (2.9 mm)"),
        (
            ["-f", "0.1,0.3", "--refocus", "0.004", "--focal-length-mm", "5"],
            "--refocus 0.004: within the camera's focal length (5 mm)",
        ),
    ],
)
def test_predict_refuses_non_finite_numbers_naming_the_option(tmp_path, args, option):
    folder = _png_folder(tmp_path / "photos", n=2)
    result = run(["predict", "-c", tiny_run("fod") / "best.pt", folder, "-o", tmp_path / "out", *args])
    assert_one_line_error(result, option)
    assert not (tmp_path / "out").exists()


def test_predict_reads_images_as_viewers_show_them_and_refuses_float_images_beyond_0_to_1(tmp_path):
    """A phone's JPEG stores its pixels sideways and an EXIF orientation; a float TIFF may hold any scale,
    which clipping to [0, 1] whitened without a word."""
    from PIL import Image

    from focalstack.train.predict import read_image

    rgb = np.zeros((32, 24, 3), np.uint8)
    rgb[:4, :, 0] = 255  # a red band along the stored top edge
    stored = Image.fromarray(rgb)
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (24, 32, 3)
    assert upright[:, -4:, 0].mean() > 0.8 and upright[:, :-8, 0].mean() < 0.1  # the band is now on the right

    grey16 = (np.arange(32 * 24).reshape(32, 24) * 50).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    np.testing.assert_allclose(read_image(tmp_path / "grey16.png")[..., 1], grey16 / 65535.0, atol=1e-7)

    cv2.imwrite(str(tmp_path / "unit.tif"), np.full((8, 8, 3), 0.25, np.float32))
    assert 0.2 < float(read_image(tmp_path / "unit.tif").mean()) < 0.3
    rgba = np.dstack([np.full((8, 8, 3), 0.25, np.float32), np.ones((8, 8), np.float32)])
    cv2.imwrite(str(tmp_path / "rgba.tif"), rgba)  # OpenCV reads it only unchanged
    assert read_image(tmp_path / "rgba.tif").shape == (8, 8, 3)
    cv2.imwrite(str(tmp_path / "scaled.tif"), np.full((8, 8, 3), 0.25, np.float32) * 100)
    with pytest.raises(ValueError, match=r"scaled.tif: float image with values from 2\d\.?\d* to 2\d\.?\d*, expected 0 to 1"):
        read_image(tmp_path / "scaled.tif")


def test_predict_at_a_width_whose_images_do_not_fit_in_memory_is_one_line(monkeypatch):
    """--width 100000 ended in OpenCV's 'Insufficient memory' traceback."""
    from focalstack.train import predict as predict_module

    def no_memory(*args, **kwargs):
        raise cv2.error("OpenCV(4) error: (-4:Insufficient memory) Failed to allocate 120000000000 bytes")

    monkeypatch.setattr(predict_module.cv2, "resize", no_memory)
    expected = r"^--width 100000: 2 images of 100000 x 100000 px do not fit in memory \(the images are 24 px"
    with pytest.raises(ValueError, match=expected):
        predict_module.resize_stack(np.zeros((2, 3, 24, 24), np.uint8), 100000)


def test_predict_checks_the_checkpoints_own_distances_against_no_other_lens(tmp_path):
    """--focal-length-mm is the refocusing camera's: with -f left out, the checkpoint's distances (from 0.1 m)
    were refused as within a 200 mm lens."""
    folder = _png_folder(tmp_path / "photos", n=5, h=24, w=24)
    result = run(
        ["predict", "-c", tiny_run("fod") / "best.pt", folder, "-o", tmp_path / "out", "--focal-length-mm", 200, "--refocus", 1.0]
    )
    assert result.exit_code == 0, result.output


def test_resume_refuses_a_training_setting_it_would_ignore_and_data_other_than_the_runs(tmp_path):
    """--resume keeps the run's settings: --lr 0.5 was dropped without a word, and --data with another file
    switched the run to another data set (its validation losses compared across the two)."""
    import shutil

    data = tmp_path / "a.h5"
    shutil.copy(synthetic_file("resume-a", 4, 32, 1), data)
    other = synthetic_file("resume-three", 4, 32, 4, n_slices=3)
    base = ["fit", "--arch", "fod-depth", "--width", 4, "--batch-size", 2, "--no-tensorboard", "-q", "--threads", 1]
    assert run([*base, "--data", data, "--out", tmp_path / "r", "--epochs", 1, "--lr", "1e-3"]).exit_code == 0
    resume = [*base, "--out", tmp_path / "r", "--resume", "--epochs", 2]
    for extra, fragment in (
        (["--lr", 0.5], "--lr 0.5: the run in"),
        (["--loss-weight", "depth=7"], "--loss-weight depth 7: the run in"),
        (["--max-depth", 5], "--max-depth 5: the run in"),
        (["--no-flip"], "--no-flip: the run in"),
        (["--crop", "16x16"], "--crop 16,16: the run in"),
        (["--data", other], "the run used"),
        (["--val-data", other], "--val-data"),  # the run had none: another validation set
    ):
        result = run([*resume, *extra])
        assert_one_line_error(result, fragment)
    before = (tmp_path / "r" / "last.pt").read_bytes()
    assert run([*resume, "--lr", "1e-3", "--data", data]).exit_code == 0  # the run's own values: resumed
    assert (tmp_path / "r" / "last.pt").read_bytes() != before

    # files that moved are the run's own; other files under the old name are not
    moved = tmp_path / "moved"
    moved.mkdir()
    data.rename(moved / "a.h5")
    assert run([*base, "--out", tmp_path / "r", "--resume", "--epochs", 3, "--data", moved / "a.h5"]).exit_code == 0
    (moved / "a.h5").rename(tmp_path / "kept.h5")
    shutil.copy(other, moved / "a.h5")
    result = run([*base, "--out", tmp_path / "r", "--resume", "--epochs", 4, "--data", moved / "a.h5"])
    assert_one_line_error(result, "--data: the run trained on stacks of 5 slices", "these files give 3 slices")


def test_resume_follows_validation_files_that_moved(tmp_path):
    """--val-data on --resume was compared as a setting: files that moved made the run impossible to resume."""
    import shutil

    val = tmp_path / "v.h5"
    shutil.copy(synthetic_file("resume-val", 2, 32, 5), val)
    base = ["fit", "--arch", "fod-depth", "--width", 4, "--batch-size", 2, "--no-tensorboard", "-q", "--threads", 1]
    data = synthetic_file("resume-a", 4, 32, 1)
    assert run([*base, "--data", data, "--val-data", val, "--out", tmp_path / "r", "--epochs", 1]).exit_code == 0
    (tmp_path / "moved").mkdir()
    val.rename(tmp_path / "moved" / "v.h5")
    result = run([*base, "--out", tmp_path / "r", "--resume", "--epochs", 2, "--val-data", tmp_path / "moved" / "v.h5"])
    assert result.exit_code == 0, result.output


def test_resume_takes_samples_per_epoch_equal_to_the_default_it_amounted_to(tmp_path):
    """A run that left --samples-per-epoch unset trained with one epoch per training scene: on --resume that
    count was refused as "trained with the default" although it is the same plan; another count is refused."""
    import re

    base = ["fit", "--arch", "fod-depth", "--width", 4, "--batch-size", 2, "--no-tensorboard", "-q", "--threads", 1]
    data = synthetic_file("resume-a", 4, 32, 1)
    assert run([*base, "--data", data, "--out", tmp_path / "r", "--epochs", 1]).exit_code == 0
    n_train = int(re.search(r"(\d+) training and", (tmp_path / "r" / "train.log").read_text()).group(1))
    resume = [*base, "--out", tmp_path / "r", "--resume"]
    result = run([*resume, "--epochs", 2, "--samples-per-epoch", n_train + 1])
    assert_one_line_error(result, f"--samples-per-epoch {n_train + 1}: the run in", f"the default, {n_train} here")
    result = run([*resume, "--epochs", 2, "--samples-per-epoch", n_train])
    assert result.exit_code == 0, result.output
