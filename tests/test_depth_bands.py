"""benchmarks/depth_bands.py: its bands split the dfv error that ``evaluate`` reports, and count what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import load_benchmark, synthetic_file, tiny_run

from focalstack.dataset import FocalStackFile
from focalstack.train.evaluate import evaluate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "depth_bands.py"


def load_script():
    return load_benchmark("depth_bands")


def test_the_bands_add_up_to_the_dfv_error_and_count_the_true_depths(tmp_path):
    bands = load_script()
    ckpt = tiny_run("fod-depth") / "best.pt"
    data = synthetic_file("bands", 3, 32, 71)  # equal sizes: evaluate's mean of per-image means is the pooled mean
    rows = bands.depth_bands(str(ckpt), data)
    result = evaluate(ckpt, [str(data)], tmp_path / "eval", protocols=("dfv",), settings=("All",), progress=False)
    assert sum(r["mse_share"] for r in rows) == pytest.approx(result.rows[0]["mse"], rel=1e-4)

    with FocalStackFile(data) as f:
        depth = np.concatenate([f[i].depth.ravel() for i in range(len(f))])
    edges = np.asarray(bands.BANDS)
    counts = np.array([((depth >= a) & (depth < b)).sum() for a, b in zip(edges[:-1], edges[1:])])
    assert [r["pixels"] for r in rows] == pytest.approx(counts / counts.sum())
    assert [r["mean_truth"] for r in rows if r["pixels"]] == pytest.approx(
        [depth[(depth >= a) & (depth < b)].mean() for (a, b), n in zip(zip(edges[:-1], edges[1:]), counts) if n]
    )
    # a band's error is the error of its own pixels: the squared RMS times the pixel share is its MSE share
    full = [r for r in rows if r["pixels"]]
    assert [r["rms"] ** 2 * r["pixels"] for r in full] == pytest.approx([r["mse_share"] for r in full], abs=1e-9)
    assert all(0 <= r["too_far"] <= 1 for r in rows if r["pixels"])
    # the median ratio of predicted to true depth, from the same predictions the dfv error came from
    assert all(r["median_ratio"] > 0 for r in rows if r["pixels"])
    # a band no true depth falls in has no figures, and the table says so
    empty = bands.depth_bands(str(ckpt), data, bands=(0.0, 0.05, float("inf")))[0]  # the file's depths start at 0.12
    assert empty["pixels"] == 0 and empty["rms"] is None and empty["median_ratio"] is None
    assert "| 0 to 0.05 | 0% | 0 | - | - | - | - |" in bands.band_table([empty])


def test_cli_prints_one_table_per_checkpoint_and_refuses_a_missing_file_in_one_line(tmp_path):
    ckpt = tiny_run("fod-depth") / "best.pt"
    data = synthetic_file("bands", 3, 32, 71)
    out = tmp_path / "bands.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ckpt), str(ckpt), "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.count("| true depth (m) |") == 2 and "| 1.5 and beyond |" in done.stdout
    assert out.read_text().count("\n| all | 100% |") == 2
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ckpt), "--data", str(tmp_path / "no.h5")], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("no.h5: no such file")
    done = subprocess.run([sys.executable, str(SCRIPT), "no-such-weights", "--data", str(data)], capture_output=True, text=True)
    assert done.returncode == 2 and "no such checkpoint file, and no shipped weights of that name" in done.stderr


def test_local_contrast_is_the_luminance_spread_around_a_pixel_and_zero_on_a_flat_surface():
    bands = load_script()
    image = np.full((32, 32, 3), 128, np.uint8)
    checker = (np.indices((32, 16)).sum(0) % 2 * 255).astype(np.uint8)
    image[:, 16:] = checker[..., None]  # right half: black and white pixels, half of each in any 2 x 2
    contrast = bands.local_contrast(image)
    assert contrast.shape == (32, 32)
    assert np.abs(contrast[:, :12]).max() < 1e-6  # flat, three pixels from the checker: the 7 x 7 box sees none of it
    # a 7 x 7 box on the checker holds 24 or 25 white pixels of 49: standard deviation sqrt(p (1 - p)), about 0.5
    assert contrast[4:-4, 20:-4] == pytest.approx(np.sqrt(24 * 25) / 49, abs=1e-3)


def test_contrast_thirds_split_the_near_pixels_in_three_and_add_up_to_the_bands_below_the_clip():
    bands = load_script()
    ckpt = tiny_run("fod-depth") / "best.pt"
    data = synthetic_file("bands", 3, 32, 71)
    edges = bands.contrast_edges(data)
    assert edges[0] < edges[1]
    thirds = bands.contrast_thirds(str(ckpt), data, edges)
    rows = bands.depth_bands(str(ckpt), data)
    near = [r for r in rows if r["to"] <= bands.CLIP_M]
    assert [r["contrast"] for r in thirds] == ["low", "middle", "high"]
    assert sum(r["pixels"] for r in thirds) == pytest.approx(sum(r["pixels"] for r in near))
    assert sum(r["mse_share"] for r in thirds) == pytest.approx(sum(r["mse_share"] for r in near))
    assert [r["pixels"] for r in thirds] == pytest.approx([sum(r["pixels"] for r in near) / 3] * 3, rel=0.02)
    # every near pixel is in the third its own contrast says
    with FocalStackFile(data) as f:
        contrast = np.concatenate([bands.local_contrast(f[i].aif)[f[i].depth < bands.CLIP_M] for i in range(len(f))])
    assert (contrast <= edges[0]).mean() == pytest.approx(thirds[0]["pixels"] / sum(r["pixels"] for r in near))
    table = bands.contrast_table(thirds)
    assert f"| low (below {edges[0]:.3f}) |" in table and f"| high ({edges[1]:.3f} and above) |" in table


def test_cli_contrast_adds_a_table_and_refuses_a_file_without_near_pixels_in_one_line():
    ckpt = tiny_run("fod-depth") / "best.pt"
    data = synthetic_file("bands", 3, 32, 71)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ckpt), "--data", str(data), "--contrast"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.count("| local contrast, true depth below 1.5 m |") == 1 and "| all below 1.5 m |" in done.stdout
    far = synthetic_file("bands-far", 2, 32, 72, depth_range=(1.6, 2.9))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ckpt), "--data", str(far), "--contrast"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "no pixel nearer than 1.5 m to split by contrast"
    )


def test_contrast_refuses_a_file_without_all_in_focus_images_naming_it(tmp_path):
    from interop_fixtures import write_fod500_folder

    from focalstack.dataset.fod500 import import_fod500

    bands = load_script()
    folder = tmp_path / "fs_6"
    write_fod500_folder(folder, range(2))
    imported = tmp_path / "fod500.h5"
    import_fod500(folder, imported)  # FoD500 holds no all-in-focus images
    with pytest.raises(ValueError, match=r"fod500.h5: scene 0 has no all-in-focus image to measure contrast on"):
        bands.contrast_edges(imported)
