"""The pictures of the README, made by the project's own commands: one 128 px scene of each preset family
(focalstack-render, seed 3), a contact sheet of the fod500 scene (focalstack-data preview), a gallery of
every preset (nearest and farthest slice, all-in-focus image, depth), and the report figures of the bundled
experiment walls-fix at scale tiny (focalstack-train experiment: a pipeline check, not results). About 10
minutes on 2 CPU cores.

    .venv/bin/python docs/make_pictures.py   # writes docs/img/scene.jpg, presets.jpg, report-curves.jpg, report-grid.jpg
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from focalstack.dataset import FocalStackFile

BIN = Path(sys.executable).parent
IMG = Path(__file__).resolve().parent / "img"
PRESETS = ("fod500", "walls", "mirrors", "test-shape", "test-appearance", "test-wide-dof", "test-medium-dof")
SIZE, SEED = 128, 3


def label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.rectangle(out, (0, 0), (tile.shape[1], 16), (0, 0, 0), -1)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def depth_colour(depth: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(depth, 1), np.percentile(depth, 99)
    grey = np.clip((depth - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)  # BGR


def main() -> int:
    IMG.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            out = Path(tmp) / f"{preset}.h5"
            subprocess.run(
                [
                    str(BIN / "focalstack-render"),
                    "--preset",
                    preset,
                    "--scenes",
                    "1",
                    "--seed",
                    str(SEED),
                    "--resolution",
                    str(SIZE),
                    "--out",
                    str(out),
                ],
                check=True,
            )
            with FocalStackFile(out) as f:
                rec = f[0]
            bgr = lambda rgb: np.ascontiguousarray(rgb[..., ::-1])  # noqa: E731
            s = rec.focus_distance
            tiles = [
                label(bgr(rec.stack[0]), f"{preset} ({s[0]:g} m)"),
                label(bgr(rec.stack[-1]), f"focused at {s[-1]:g} m"),
                label(bgr(rec.aif), "all-in-focus"),
                label(depth_colour(rec.depth), f"depth {rec.depth.min():.2f}-{rec.depth.max():.2f} m"),
            ]
            rows.append(np.concatenate(tiles, axis=1))
            if preset == "fod500":
                subprocess.run([str(BIN / "focalstack-data"), "preview", str(out), "-o", str(IMG / "scene.jpg")], check=True)
    cv2.imwrite(str(IMG / "presets.jpg"), np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 88])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "walls-fix"
        subprocess.run(
            [str(BIN / "focalstack-train"), "experiment", "walls-fix", "--scale", "tiny", "-o", str(run), "-q"], check=True
        )
        for src, name in (
            (run / "figures" / "training_curves.png", "report-curves.jpg"),
            (run / "figures" / "walls-test__fod500-walls.png", "report-grid.jpg"),
        ):
            cv2.imwrite(str(IMG / name), cv2.imread(str(src)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    for p in sorted(IMG.glob("*.jpg")):
        print(f"{p}: {p.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
