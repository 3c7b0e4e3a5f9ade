"""Does the denoiser invent texture in ground truth? A sharp high-contrast checker rendered with denoiser settings.

Prints figures; asserts nothing. Run from the repository root with the project's venv:

    python benchmarks/denoiser_checker_bench.py                      # 48 and 96 px
    python benchmarks/denoiser_checker_bench.py --sizes 192

The scene: one camera-facing plane at 1 m with a checker of 0.05 / 0.9 albedo (cells 3.3 px, off the pixel
grid), uniform white light, focused at 1 m and at 0.3 m. Its only Monte Carlo noise is where a pixel straddles a
cell edge, so a denoiser has little to remove and much it could invent. For each setting the script prints the
mean absolute error (linear light, of the stored 8-bit images) of the all-in-focus image and of the defocused
slice against a 512-sample render without denoiser, and its ratio to the raw 16-sample error: the ratio
``tests/test_render_physics.py`` holds every preset's default to (at most 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from render_fixtures import UNIFORM_WHITE_WORLD, fronto_plane, frustum_half_width  # noqa: E402

from focalstack.dataset.colour import linear_to_srgb8, srgb_to_linear  # noqa: E402
from focalstack.render.config import RENDER_SETTINGS_V0, RenderSettings  # noqa: E402
from focalstack.render.scene import CameraSpec, MaterialSpec, SceneDescription, TextureLayer  # noqa: E402

SETTINGS = {
    "raw 16 samples": dict(samples=16, denoise=False),
    "OIDN high, accurate (RENDER_SETTINGS_V0)": RENDER_SETTINGS_V0.to_dict(),
    "OIDN balanced (the default)": RenderSettings().to_dict(),
    "OIDN fast": {**RenderSettings().to_dict(), "denoise_quality": "fast"},
    "OIDN high, fast prefilter": {**RENDER_SETTINGS_V0.to_dict(), "aif_prefilter": "fast", "slice_prefilter": "fast"},
}


def checker_scene(px: int) -> SceneDescription:
    cam = CameraSpec(2.9, 3.1, 1.0, [1.0, 0.3], px, px)
    half = frustum_half_width(1.0, cam)
    texture = TextureLayer("checker", scale=px / (6.6 * half), color_a=[0.05] * 3, color_b=[0.9] * 3)
    plane = fronto_plane(
        "checker",
        1.0,
        -1.5 * half,
        1.5 * half,
        -1.5 * half,
        1.5 * half,
        MaterialSpec([0.5] * 3, 1.0, 0.0, 0.0, textures=[texture]),
    )
    return SceneDescription(1, "checker", cam, [plane], [], UNIFORM_WHITE_WORLD)


def render(desc: SceneDescription, settings: dict) -> tuple[list[np.ndarray], float]:
    """[AiF, in-focus slice, defocused slice] as stored (8-bit sRGB) in linear light, and the seconds it took."""
    from focalstack.render.blender import BlenderRenderer

    t = time.perf_counter()
    with BlenderRenderer(**settings) as renderer:
        out = renderer.render(desc)
    images = [out.aif, *out.slices]
    return [srgb_to_linear(linear_to_srgb8(x).astype(np.float64) / 255.0) for x in images], time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="48,96", help="image sizes in pixels, comma-separated")
    args = ap.parse_args(argv)
    for px in (int(s) for s in args.sizes.split(",")):
        desc = checker_scene(px)
        reference, seconds = render(desc, dict(samples=512, denoise=False))
        print(f"# {px} px: reference 512 samples in {seconds:.1f} s; mean |error| (AiF, defocused slice), ratio to raw")
        raw_error = None
        for name, settings in SETTINGS.items():
            images, seconds = render(desc, settings)
            error = np.array([np.abs(images[k] - reference[k]).mean() for k in (0, 2)])
            raw_error = error if raw_error is None else raw_error
            ratio = error / np.maximum(raw_error, 1e-12)
            print(f"  {name:42s} {error[0]:.4f} {error[1]:.4f}   x {ratio[0]:.2f} {ratio[1]:.2f}   {seconds:.1f} s")


if __name__ == "__main__":
    main()
