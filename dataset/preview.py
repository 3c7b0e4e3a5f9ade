"""Contact sheet of one scene: every focal slice, the AiF image, depth, defocus maps and edges.

Ground truth the file lacks (imported data sets) gets a panel saying so; nothing is drawn in its place.
Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state). Images are shown
with nearest interpolation, and the figure's resolution grows with the scene so that each panel shows
the image at least at its own size (up to 512 px), so 32 x 32 and 512 x 512 scenes are both legible.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .files import atomic_path
from .record import SceneRecord

PANEL_INCHES = 2.4  # width of one panel
MAX_COLUMNS = 6  # slices wrap onto further rows beyond this
DEPTH_CMAP = "viridis"
DEFOCUS_CMAP = "RdBu_r"  # diverging: blue in front of the focal plane, red behind, white in focus


def _figure(scene: SceneRecord, title: str | None, columns: int | None) -> Figure:
    stack = np.asarray(scene.stack)
    n_slices, height, width = stack.shape[:3]
    extras = [(name, draw) for name, draw in EXTRA_PANELS if getattr(scene, name) is not None]
    cols = max(columns or max(3, min(n_slices, MAX_COLUMNS)), 3 + len(extras))
    slice_rows = math.ceil(n_slices / cols)
    defocus_rows = slice_rows if scene.defocus is not None else 1  # one 'not in this file' panel
    rows = slice_rows + defocus_rows + 1
    aspect = min(max(height / width, 0.25), 4.0)
    panel_h = PANEL_INCHES * aspect
    # Enough dots that a panel shows every pixel of images up to 512 px (titles and colour bars take
    # some of the panel, hence the margin); at least 100 dpi so text stays crisp for tiny scenes.
    dpi = max(100.0, 1.2 * min(max(height, width), 512) / PANEL_INCHES)
    fig = Figure(figsize=(cols * PANEL_INCHES + 1.4, rows * (panel_h + 0.55) + 0.6), dpi=dpi, layout="constrained")
    # Three sub-figures (slices, defocus, AiF/depth/edges), each laid out on its own, so that a colour
    # bar in one does not shift the columns of the others.
    subfigures = fig.subfigures(3, 1, height_ratios=[slice_rows, defocus_rows, 1])
    assert isinstance(subfigures, np.ndarray)  # three of them: an array
    top, mid, low = subfigures
    axes = np.concatenate(
        [
            top.subplots(slice_rows, cols, squeeze=False),
            mid.subplots(defocus_rows, cols, squeeze=False),
            low.subplots(1, cols, squeeze=False),
        ]
    )
    for ax in axes.flat:
        ax.set_axis_off()

    focus = np.asarray(scene.focus_distance, dtype=np.float64)
    for k in range(n_slices):
        _show(axes[k // cols, k % cols], stack[k], f"slice {k}: focus {focus[k]:.3g} m")

    if scene.defocus is None:
        _absent(axes[slice_rows, 0], "defocus maps")
    else:
        _defocus_panels(mid, axes, scene, slice_rows, cols, _show)

    bottom = axes[rows - 1]
    if scene.aif is None:
        _absent(bottom[0], "all-in-focus")
    else:
        _show(bottom[0], scene.aif, "all-in-focus")
    if scene.depth is None:
        _absent(bottom[1], "depth")
    else:
        _depth_panel(low, bottom[1], scene, _show)
    if scene.edges is None:
        _absent(bottom[2], "edges")
    else:
        edges = np.asarray(scene.edges)
        _show(bottom[2], edges, f"edges ({int(np.count_nonzero(edges))} px)", cmap="gray", vmin=0, vmax=1)
    for ax, (name, draw) in zip(bottom[3:], extras):
        draw(ax, getattr(scene, name), _show)

    fig.suptitle(_default_title(scene) if title is None else title, fontsize=10)
    return fig


def _show(ax, img, label, **kw):
    """Draw ``img`` in ``ax`` with a title and no ticks; the image, for a colour bar."""
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([])
    im = ax.imshow(img, interpolation="nearest", **kw)
    ax.set_title(label, fontsize=9)
    return im


def _default_title(scene: SceneRecord) -> str:
    """'scene 3  seed 12  64x64 px  f/1  focal length 2.9 mm  sensor 3.1 mm' (what the file knows of it)."""
    height, width = np.asarray(scene.stack).shape[1:3]
    camera = ""
    if scene.f_number is not None:
        camera = f"  f/{scene.f_number:.3g}  focal length {scene.focal_length_mm:.3g} mm  sensor {scene.sensor_width_mm:.3g} mm"
    seed = f"  seed {scene.seed}" if scene.seed >= 0 else ""
    return f"scene {scene.index}{seed}  {width}x{height} px{camera}"


def _disparity_panel(ax, disparity, show) -> None:
    disparity = np.asarray(disparity, dtype=np.float64)
    show(ax, np.where(disparity > 0, disparity, np.nan), "disparity [px] (as given)", cmap=DEPTH_CMAP)


def _normals_panel(ax, normals, show) -> None:
    """Camera-frame unit normals as colour: (n + 1) / 2, so x is red, y green, z (towards the camera) blue."""
    show(ax, np.clip((np.asarray(normals, dtype=np.float32) + 1) / 2, 0, 1), "normals (camera frame)\nRGB = (n + 1) / 2")


def _objects_panel(ax, objects, show) -> None:
    objects = np.asarray(objects)
    n = len(np.unique(objects[objects > 0]))
    show(
        ax,
        np.where(objects > 0, objects % 20, np.nan),
        f"objects ({n} in view)\nblank = background",
        cmap="tab20",
        vmin=0,
        vmax=19,
    )


# Ground truth beyond AiF, depth and edges, in the bottom row when a scene has it: (record field, panel).
EXTRA_PANELS = (("disparity", _disparity_panel), ("normals", _normals_panel), ("objects", _objects_panel))


def _absent(ax, label: str) -> None:
    """A panel for ground truth the file does not have."""
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, "not in this file", ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes)
    ax.set_title(label, fontsize=9)


def _defocus_panels(mid, axes, scene: SceneRecord, slice_rows: int, cols: int, show) -> None:
    """The signed defocus maps on one symmetric scale, with a shared colour bar."""
    defocus = np.asarray(scene.defocus, dtype=np.float64)
    n_slices = len(defocus)
    focus = np.asarray(scene.focus_distance, dtype=np.float64)
    finite = defocus[np.isfinite(defocus)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    defocus_axes = []
    for k in range(n_slices):
        ax = axes[slice_rows + k // cols, k % cols]
        d = defocus[k]
        rng = f"[{np.nanmin(d):.2g}, {np.nanmax(d):.2g}] px" if np.isfinite(d).any() else "no data"
        im_def = show(ax, d, f"defocus @ {focus[k]:.3g} m\n{rng}", cmap=DEFOCUS_CMAP, vmin=-vmax, vmax=vmax)
        defocus_axes.append(ax)
    cb = mid.colorbar(im_def, ax=defocus_axes, shrink=0.9, aspect=25)
    cb.set_label("signed blur diameter [px]\n(+ behind focus, - in front)", fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _depth_panel(low, ax, scene: SceneRecord, show) -> None:
    """Depth with a colour bar in metres; pixels without ground truth (0 or not finite) are left blank."""
    depth = np.asarray(scene.depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    good = depth[valid]
    lo, hi = (float(good.min()), float(good.max())) if good.size else (0.0, 1.0)
    holes = int(depth.size - good.size)
    note = f"\n{holes} px without ground truth" if holes else ""
    im_depth = show(ax, np.where(valid, depth, np.nan), f"depth {lo:.3g} to {hi:.3g} m{note}", cmap=DEPTH_CMAP, vmin=lo, vmax=hi)
    cb = low.colorbar(im_depth, ax=ax, shrink=0.9, aspect=20)
    cb.set_label("depth [m]", fontsize=8)
    cb.ax.tick_params(labelsize=7)


def contact_sheet(scene: SceneRecord, *, title: str | None = None, columns: int | None = None) -> np.ndarray:
    """One RGB uint8 image (H', W', 3) showing every slice (labelled with its focus distance), the AiF
    image, depth with a colour bar in metres, the signed defocus maps on one symmetric diverging scale
    with a colour bar in pixels, and the edges. ``columns`` panels per row (default: up to 6)."""
    fig = _figure(scene, title, columns)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_contact_sheet(scene: SceneRecord, path: str | os.PathLike, **kwargs) -> Path:
    """Write ``contact_sheet(scene, **kwargs)`` to ``path`` (.png, .jpg); OSError if it cannot."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise OSError(f"{path}: expected a .png or .jpg file name")
    if not path.parent.is_dir():
        raise OSError(f"{path}: folder {path.parent} does not exist")
    image = contact_sheet(scene, **kwargs)
    try:
        # JPEG at 88: a contact sheet is mostly flat colour maps and text, which higher qualities only enlarge
        params = [cv2.IMWRITE_JPEG_QUALITY, 88] if path.suffix.lower() in (".jpg", ".jpeg") else []
        ok, encoded = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(image[..., ::-1]), params)
    except cv2.error as exc:
        raise OSError(f"{path}: cannot encode image ({exc})") from None
    if not ok:
        raise OSError(f"{path}: cannot encode image")
    # written by Python, not cv2.imwrite: a folder it may not write in is an OSError that names the file
    # (OpenCV printed its own warning first), and a failed write leaves no partial image
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
