"""Time and peak memory of ``focalstack-train predict`` on a phone-sized focal stack, per ``--tile``.

Makes a full-width ``fod`` checkpoint (one optimiser step on a small synthetic file: the weights do not
change the cost) and a stack of textured PNG images, then runs the command once per tile size under
``/usr/bin/time -v`` (wall time and maximum resident set size of the whole process), and prints how far each
tiled depth map lies from the whole image's (``--tile 0``, run first; the tests hold it within 1e-4 of the
3 m depth range).

    python benchmarks/predict_bench.py                                  # 10 x 720 x 1280, tiles 0, 256, 512
    python benchmarks/predict_bench.py --slices 5 --size 480x640 --tiles 0,256
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

BIN = Path(sys.executable).parent


def make_checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from train_fixtures import write_synthetic

    data = write_synthetic(folder / "train.h5", 2, 32)
    subprocess.run(
        [
            str(BIN / "focalstack-train"),
            "fit",
            "--data",
            str(data),
            "--out",
            str(folder / "run"),
            "--max-steps",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "1",
            "--val-fraction",
            "0",
            "-q",
            "--no-tensorboard",
        ],
        check=True,
    )
    return folder / "run" / "best.pt"


def make_stack(folder: Path, slices: int, h: int, w: int) -> list[float]:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.random((h // 16, w // 16, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((h, w, 3)).astype(np.float32)
    focus = np.geomspace(0.1, 1.5, slices)
    for i, sigma in enumerate(np.linspace(0.5, 3.0, slices)):
        img = np.clip(0.6 * base + 0.4 * cv2.GaussianBlur(fine, (0, 0), float(sigma)), 0, 1)
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), np.round(img * 255).astype(np.uint8))
    return [float(f) for f in focus]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--size", default="720x1280", help="HxW [720x1280]")
    ap.add_argument("--tiles", default="0,256,512", help="--tile values to run [0,256,512]")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        tmp = Path(tmp)
        ckpt = make_checkpoint(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        focus = make_stack(photos, a.slices, h, w)
        print(f"{a.slices} x {h} x {w}, fod (full width), {'torch default' if a.threads is None else a.threads} threads")
        print(f"{'tile':>6} {'wall s':>8} {'max RSS MB':>11} {'max |depth - whole| m':>22}")
        depths = {}
        tiles = [int(t) for t in a.tiles.split(",")]
        for tile in sorted(set(tiles), key=lambda t: (t != 0, tiles.index(t))):  # the whole image first: the reference
            out = tmp / f"out{tile}"
            cmd = [
                "/usr/bin/time",
                "-v",
                str(BIN / "focalstack-train"),
                "predict",
                "-c",
                str(ckpt),
                "-f",
                ",".join(f"{f:.4f}" for f in focus),
                str(photos),
                "-o",
                str(out),
                "--tile",
                str(tile),
            ]
            if a.threads:
                cmd += ["--threads", str(a.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
            seconds = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else float("nan")
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
            depths[tile] = np.load(out / "depth.npy")
            diff = float(np.abs(depths[tile] - depths[0]).max()) if 0 in depths else float("nan")
            print(f"{tile:>6} {seconds:>8.1f} {rss:>11.0f} {diff:>22.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
