"""What predict makes of a real focal stack's files: the order a folder gives, the orientation a viewer shows,
files it must refuse (cut short, several pages), values that mean nothing to the network, and an output
folder's own files."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps
from train_fixtures import tiny_run

from focalstack.train.checkpoint import CheckpointError, load_checkpoint
from focalstack.train.cli import main
from focalstack.train.image_files import collect_images, read_image


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def last_line(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    return lines[-1]


def write_png(path, seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), (rng.random((h, w, 3)) * 255).astype(np.uint8))
    return path


def test_a_folder_gives_its_images_in_natural_order_without_hidden_files(tmp_path):
    """'img10' sorted before 'img2' as text, pairing a numbered stack with the wrong distances; a hidden
    thumbnail ('.s4_thumb.png', macOS '._s0.png') was taken as a slice."""
    folder = tmp_path / "stack"
    folder.mkdir()
    for name in ("img1.png", "img10.png", "img2.png", "img20.png", "img3.png", ".thumb.png", "._img1.png"):
        write_png(folder / name)
    with pytest.warns(UserWarning, match=r"stack: its files are taken in natural order \(img1.png, img2.png, img3.png"):
        got = collect_images([folder])
    assert [p.name for p in got] == ["img1.png", "img2.png", "img3.png", "img10.png", "img20.png"]
    cased = tmp_path / "cased"
    cased.mkdir()
    for name in ("b.png", "A.png", "C.png"):
        write_png(cased / name)
    with warnings.catch_warnings():  # an order both ways agree on is not warned of, whatever the letters' case
        warnings.simplefilter("error")
        assert [p.name for p in collect_images([cased])] == ["A.png", "b.png", "C.png"]
    twice = r"img2.png: given twice \(as .*img2.png\); one image per focus distance"
    with pytest.warns(UserWarning, match="natural order"), pytest.raises(ValueError, match=twice):
        collect_images([folder, folder / "img2.png"])


def _oriented(tmp_path, suffix: str, orientation: int) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric image saved losslessly with EXIF ``orientation``: (what read_image gives, what a viewer
    shows, by Pillow's own exif_transpose)."""
    yy, xx = np.mgrid[0:24, 0:32]
    rgb = np.dstack([xx * 7, yy * 10, (xx * yy) % 256]).astype(np.uint8)
    stored = Image.fromarray(rgb)
    exif = stored.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    stored.save(path, exif=exif, **({"lossless": True} if suffix == ".webp" else {}))
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
    return read_image(path), shown


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_every_exif_orientation_is_turned_upright_as_a_viewer_shows_it(tmp_path, suffix):
    """OpenCV ignored the orientation of a WebP and refused a TIFF turned by 90 degrees ('not a readable
    image', after a dump of its own errors)."""
    for orientation in range(1, 9):
        got, shown = _oriented(tmp_path, suffix, orientation)
        assert got.shape == shown.shape, (orientation, got.shape, shown.shape)
        np.testing.assert_array_equal(got, shown, err_msg=f"orientation {orientation}")


def test_a_sixteen_bit_colour_tiff_is_turned_where_a_reader_can_and_refused_where_none_can(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from focalstack.train.image_files import upright

    yy, xx = np.mgrid[0:24, 0:32]
    rgb = (np.dstack([xx * 7, yy * 10, (xx * yy) % 256]) * 250).astype(np.uint16)
    for orientation in (2, 3, 4):
        tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb", extratags=[(274, "H", 1, orientation, False)])
        np.testing.assert_allclose(read_image(tmp_path / "c.tif"), upright(rgb, orientation) / 65535.0, atol=1e-7)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb", extratags=[(274, "H", 1, 6, False)])
    with pytest.raises(ValueError, match=r"c.tif: a TIFF stored turned by 90 degrees \(EXIF orientation 6\) .* upright"):
        read_image(tmp_path / "c.tif")


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA"])
def test_a_grey_or_rgba_tiff_is_turned_as_stored_says_or_refused_where_pillow_would_scramble_it(tmp_path, mode):
    """Pillow decodes grey and RGBA TIFFs turned by 90 degrees into pixels that are no turn of the stored ones
    (its own exif_transpose agrees with itself, so the reference here is the stored array, read by tifffile)."""
    tifffile = pytest.importorskip("tifffile")
    from focalstack.train.image_files import upright

    yy, xx = np.mgrid[0:24, 0:32]
    grey = (xx * 7 + yy * 3).astype(np.uint8)
    rgba = np.dstack([grey, 255 - grey, grey // 2, np.full_like(grey, 255)]).astype(np.uint8)
    array = {"L": grey, "I;16": grey.astype(np.uint16) * 250, "RGBA": rgba}[mode]
    for orientation in range(1, 9):
        stored = Image.fromarray(array)
        exif = stored.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"g{orientation}.tif"
        stored.save(path, exif=exif)
        np.testing.assert_array_equal(tifffile.imread(path), array)  # written as stored
        if orientation > 4:
            with pytest.raises(ValueError, match=r"a TIFF stored turned by 90 degrees"):
                read_image(path)
            continue
        scale = 65535.0 if mode == "I;16" else 255.0
        want = upright(array, orientation).astype(np.float32) / scale
        want = np.repeat(want[..., None], 3, axis=2) if want.ndim == 2 else want[..., :3]
        np.testing.assert_allclose(read_image(path), want, atol=1e-7, err_msg=f"orientation {orientation}")


def test_a_jpeg_with_a_cameras_embedded_preview_is_one_image(tmp_path):
    """Cameras and phones store a preview or an HDR gain map after the photo (MPF): Pillow counts two frames,
    which are not two slices."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8))
    photo.save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[photo.resize((12, 8))])
    with Image.open(tmp_path / "camera.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert read_image(tmp_path / "camera.jpg").shape == (32, 48, 3)


def test_a_jpeg_cut_short_and_a_file_of_several_pages_are_refused(tmp_path):
    """libjpeg fills a JPEG cut short with grey and only warns; a multi-page TIFF was read as its first page."""
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "whole.jpg"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert read_image(tmp_path / "whole.jpg").shape == (64, 64, 3)
    with pytest.raises(ValueError, match=r"cut.jpg: the JPEG data ends early"):
        read_image(tmp_path / "cut.jpg")
    pages = [Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"stack.tif: holds 3 pages or frames; give one image per focus distance"):
        read_image(tmp_path / "stack.tif")


def test_twelve_bit_data_in_sixteen_bits_is_warned_of(tmp_path):
    cv2.imwrite(str(tmp_path / "raw12.png"), np.full((8, 8, 3), 4095, np.uint16))
    cv2.imwrite(str(tmp_path / "full.png"), np.full((8, 8, 3), 40000, np.uint16))
    with pytest.warns(UserWarning, match=r"raw12.png: a 16-bit image whose brightest value is 4095 of 65535"):
        read_image(tmp_path / "raw12.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "full.png")


def _stack(tmp_path, n=2):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        write_png(folder / f"img_{i}.png", seed=i)
    return folder


def test_values_that_mean_nothing_to_the_network_are_refused_before_it_runs(tmp_path, monkeypatch):
    """1e39 m became inf in float32 and an all-NaN depth map with exit 0; one focus distance (or one
    repeated) gave a confident depth map; two --refocus distances that print alike wrote one file; --refocus
    with a depth-only model was refused only after the network had run."""
    from focalstack.train import predict as predict_module

    folder = _stack(tmp_path)
    fod, depth_only = tiny_run("fod") / "best.pt", tiny_run("fod-depth") / "best.pt"
    out = tmp_path / "out"
    line = last_line(run(["predict", "-c", fod, "-f", "1e39,0.3", folder, "-o", out]))
    assert line == "Error: --focus-distances 1e+39: expected finite distances > 0 in metres"
    line = last_line(run(["predict", "-c", fod, "-f", "0.3,0.3", folder, "-o", out]))
    assert "focus distances 0.3, 0.3: depth from defocus needs images at two or more focus distances" in line
    line = last_line(run(["predict", "-c", fod, "-f", "0.1,0.3", folder, "-o", out, "--refocus", "0.5", "--refocus", "0.5"]))
    assert line == "Error: --refocus 0.5: given twice"
    line = last_line(run(["predict", "-c", fod, "-f", "0.1,0.3,0.7", folder, "-o", out]))
    assert "2 images but 3 focus distances: give one per image (images: img_0.png, img_1.png)" in line

    def never(*args, **kwargs):
        raise AssertionError("the network ran")

    monkeypatch.setattr(predict_module, "run_tiled", never)
    line = last_line(run(["predict", "-c", depth_only, "-f", "0.1,0.3", folder, "-o", out, "--refocus", "0.5"]))
    assert "--refocus needs a model with an AiF branch" in line
    assert not out.exists()


def test_refocused_images_that_print_alike_get_their_own_files_and_distances_far_off_are_warned_of(tmp_path):
    folder = _stack(tmp_path)
    out = tmp_path / "out"
    args = ["predict", "-c", tiny_run("fod") / "best.pt", "-f", "100,300", folder, "-o", out]
    result = run([*args, "--refocus", "0.5", "--refocus", "0.5000001", "--threads", 1])
    assert result.exit_code == 0, result.output
    assert "warning: focus distances from 100 to 300 m, far beyond the 0.1 to 1.5 m this checkpoint was trained at" in (
        result.output
    )
    assert {p.name for p in out.glob("refocus_*")} == {"refocus_0.5m.png", "refocus_0.5000001m.png"}


def test_a_non_finite_network_output_writes_nothing_and_unsigned_defocus_is_never_negative(tmp_path, monkeypatch):
    from focalstack.train import predict as predict_module

    folder = _stack(tmp_path)
    real = predict_module.run_tiled
    fod_depth = tiny_run("fod-depth") / "best.pt"

    def with_nan(*args, **kwargs):
        out = real(*args, **kwargs)
        out["depth"][..., 0, 0] = np.nan
        return out

    monkeypatch.setattr(predict_module, "run_tiled", with_nan)
    line = last_line(run(["predict", "-c", fod_depth, "-f", "0.1,1.5", folder, "-o", tmp_path / "nan"]))
    assert line == "Error: the network's depth holds non-finite values for this stack; nothing written"
    assert not (tmp_path / "nan").exists()

    def below_zero(*args, **kwargs):
        out = real(*args, **kwargs)
        out["defocus"] = out["defocus"] - 10.0  # far below the smallest blur, in normalised units
        return out

    monkeypatch.setattr(predict_module, "run_tiled", below_zero)
    ckpt = load_checkpoint(fod_depth)
    assert run(["predict", "-c", fod_depth, "-f", "0.1,1.5", folder, "-o", tmp_path / "neg"]).exit_code == 0
    defocus = np.load(tmp_path / "neg" / "defocus.npy")
    signed = ckpt["norm"].get("signed_defocus", False) if isinstance(ckpt["norm"], dict) else False
    assert signed or defocus.min() >= 0.0


def test_a_file_of_the_users_that_the_prediction_would_replace_is_kept_without_force(tmp_path):
    """docs: 'a folder without an earlier prediction loses no file'; its depth.npy was replaced without a word."""
    folder = _stack(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    np.save(mine / "depth.npy", np.ones((2, 2)))
    args = ["predict", "-c", tiny_run("fod-depth") / "best.pt", "-f", "0.1,1.5", folder, "-o", mine]
    line = last_line(run(args))
    assert line.endswith("mine: holds depth.npy, a file the prediction writes; pass --force to replace it")
    assert np.load(mine / "depth.npy").shape == (2, 2) and sorted(p.name for p in mine.iterdir()) == ["depth.npy"]
    assert run([*args, "--force"]).exit_code == 0
    assert np.load(mine / "depth.npy").shape == (24, 32)
    assert json.loads((mine / "prediction.json").read_text())["images"][0].endswith("img_0.png")


def test_a_checkpoint_that_is_a_folder_or_text_says_so(tmp_path):
    run_folder = tiny_run("fod-depth")
    with pytest.raises(CheckpointError, match=r"a folder, expected a checkpoint file; did you mean .*best.pt\?"):
        load_checkpoint(run_folder)
    (tmp_path / "notes.pt").write_text("hello notes\n")
    with pytest.raises(CheckpointError, match=r"notes.pt: not a focalstack-train checkpoint \(not a file that torch.save"):
        load_checkpoint(tmp_path / "notes.pt")
