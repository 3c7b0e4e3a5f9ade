"""The asset catalogue: bundled files, user folders (--assets), train/test split by content, broken files."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from focalstack.assets import (
    TEST_FRACTION,
    AssetWarning,
    asset_split,
    build_mesh,
    check_unchanged,
    load_catalogue,
)
from focalstack.assets.catalogue import bundled_folder, file_sha256
from focalstack.render.config import ConfigError, RenderConfig, RenderSettings
from focalstack.render.sampling import add_asset_dirs, sample_scene
from focalstack.render.scene import ShapeSpec

# A cube from (10, 10, 10) to (14, 14, 14), quads counter-clockwise seen from outside: normalising it
# must centre it and scale it to [-1, 1]^3.
CUBE_OBJ = """# a cube made by the test
v 10 10 10
v 14 10 10
v 14 14 10
v 10 14 10
v 10 10 14
v 14 10 14
v 14 14 14
v 10 14 14
f 1 4 3 2
f 5 6 7 8
f 1 2 6 5
f 2 3 7 6
f 3 4 8 7
f 4 1 5 8
"""


def _png_bytes(variant: int) -> bytes:
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.where((yy // 4 + xx // 4) % 2 == 0, 40 + variant % 200, 220).astype(np.uint8)
    ok, data = cv2.imencode(".png", img)
    assert ok
    return data.tobytes()


@pytest.fixture
def user_folder(tmp_path) -> tuple[Path, dict]:
    """A folder with a cube OBJ and a PNG texture of the same split (the PNG varies until it matches)."""
    folder = tmp_path / "my_assets"
    folder.mkdir()
    (folder / "cube.obj").write_text(CUBE_OBJ)
    split = asset_split(file_sha256(folder / "cube.obj"))
    for variant in range(200):
        data = _png_bytes(variant)
        if asset_split(hashlib.sha256(data).hexdigest()) == split:
            break
    (folder / "checker.png").write_bytes(data)
    (folder / "README.txt").write_text("not an asset: ignored")
    return folder, {"split": split, "cube": file_sha256(folder / "cube.obj"), "png": file_sha256(folder / "checker.png")}


def config(scene: dict) -> RenderConfig:
    return RenderConfig(preset="test", scene=scene, width=32, height=32)


# -- the split ------------------------------------------------------------------------------------------------


def test_split_is_by_content_hash_with_the_documented_fraction(tmp_path):
    rng = np.random.default_rng(0)
    splits = [asset_split(hashlib.sha256(rng.bytes(32)).hexdigest()) for _ in range(4000)]
    assert abs(splits.count("test") / len(splits) - TEST_FRACTION) < 0.03
    a, b = tmp_path / "a", tmp_path / "b" / "deeper"
    b.mkdir(parents=True)
    a.mkdir()
    (a / "one.obj").write_text(CUBE_OBJ)
    (b / "renamed.obj").write_text(CUBE_OBJ)
    ca, cb = load_catalogue([a], bundled=False), load_catalogue([b], bundled=False)
    assert ca.files[0].sha256 == cb.files[0].sha256 and ca.files[0].split == cb.files[0].split
    both = load_catalogue([a, b], bundled=False)
    assert len(both.select("mesh")) == 1, "the same content is listed once"


def test_bundled_catalogue_is_small_complete_and_split_both_ways():
    cat = load_catalogue([])
    assert not cat.skipped
    for kind in ("mesh", "texture", "envmap"):
        for split in ("train", "test"):
            assert cat.select(kind, split), f"no bundled {split} {kind}"
    for a in cat.files:
        assert a.split == asset_split(a.sha256) == asset_split(file_sha256(a.path))
        assert Path(a.path).is_relative_to(bundled_folder())
    assert {Path(a.path).suffix for a in cat.select("mesh")} == {".obj", ".ply", ".stl", ".glb"}
    assert {Path(a.path).suffix for a in cat.select("texture")} == {".png", ".jpg"}
    assert [(a.kind, a.sha256) for a in cat.files] == sorted(
        [(a.kind, a.sha256) for a in cat.files], key=lambda k: (("mesh", "texture", "envmap").index(k[0]), k[1])
    )
    total = sum(p.stat().st_size for p in bundled_folder().rglob("*") if p.is_file())
    assert total < 1_000_000
    for a in cat.select("mesh"):
        v, f = build_mesh(ShapeSpec("mesh_file", {"path": a.path, "sha256": a.sha256}))
        lo, hi = v.min(axis=0), v.max(axis=0)
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
        assert abs((hi - lo).max() / 2 - 1) < 1e-6 and len(f) == a.info["triangles"]


def test_make_bundled_reproduces_the_committed_meshes(tmp_path):
    from focalstack.assets.make_bundled import make_all

    written = make_all(tmp_path)
    names = {p.relative_to(tmp_path) for p in written}
    committed = {p.relative_to(bundled_folder()) for p in bundled_folder().rglob("*") if p.is_file()}
    assert names == committed
    for rel in names:
        if rel.parts[0] == "meshes":  # our own writers: byte-identical (images go through OpenCV's encoders)
            assert (tmp_path / rel).read_bytes() == (bundled_folder() / rel).read_bytes(), rel


# -- user folders -----------------------------------------------------------------------------------------------


def test_user_folder_files_are_catalogued_and_meshes_normalised(user_folder):
    folder, info = user_folder
    cat = load_catalogue([folder], bundled=False)
    assert cat.folders == [str(folder.resolve())]
    (mesh,) = cat.select("mesh")
    (texture,) = cat.select("texture")
    assert (mesh.name, mesh.sha256, mesh.split) == ("cube.obj", info["cube"], info["split"])
    assert (texture.name, texture.sha256, texture.split) == ("checker.png", info["png"], info["split"])
    lo, hi = texture.info["luminance_range"]
    assert 0 <= lo < hi <= 1
    v, f = build_mesh(ShapeSpec("mesh_file", {"path": mesh.path, "sha256": mesh.sha256}))
    assert len(v) == 8 and len(f) == 12
    np.testing.assert_allclose(v.min(axis=0), -1) and np.testing.assert_allclose(v.max(axis=0), 1)
    with_bundled = load_catalogue([folder])
    assert len(with_bundled) == len(load_catalogue([])) + 2


def test_a_sampled_scene_names_the_user_files(user_folder):
    folder, info = user_folder
    scene = add_asset_dirs(
        {"split": info["split"], "bundled_assets": False, "mesh_file_probability": 1.0,
         "image_texture_probability": 1.0, "objects": [2, 3]},
        [folder],
    )  # fmt: skip
    assert scene["asset_dirs"] == [str(folder.resolve())]
    cfg = config(scene).validate()
    d = sample_scene(cfg, 4)
    objects = [o for o in d.objects if o.role == "object"]
    assert objects and all(o.shape.family == "mesh_file" for o in objects)
    assert all(o.shape.params == {"path": str(folder.resolve() / "cube.obj"), "sha256": info["cube"]} for o in objects)
    layers = [t for o in d.objects for t in o.material.textures]
    assert layers and all(t.kind == "image" and t.params["path"] == str(folder.resolve() / "checker.png") for t in layers)
    named = {(a.kind, a.sha256, a.split) for a in d.info.assets}
    assert named == {("mesh", info["cube"], info["split"]), ("texture", info["png"], info["split"])}
    assert sample_scene(cfg, 4).to_json() == d.to_json()
    # the other split has none of these files: a preset of that split cannot use them
    other = "test" if info["split"] == "train" else "train"
    with pytest.raises(ConfigError, match=f"no {other}-split mesh"):
        config({**scene, "split": other}).validate()


def test_mesh_file_refuses_changed_content(user_folder):
    folder, info = user_folder
    path = folder / "cube.obj"
    build_mesh(ShapeSpec("mesh_file", {"path": str(path), "sha256": info["cube"]}))
    path.write_text(CUBE_OBJ.replace("v 14 14 14", "v 15 15 15"))
    with pytest.raises(ValueError, match="changed"):
        build_mesh(ShapeSpec("mesh_file", {"path": str(path), "sha256": info["cube"]}))


def test_broken_files_are_skipped_with_a_warning_naming_them(user_folder):
    folder, _ = user_folder
    (folder / "broken.obj").write_text("this is not a mesh\n")
    (folder / "half.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\n")
    (folder / "noise.stl").write_bytes(np.random.default_rng(1).bytes(300))
    (folder / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(AssetWarning) as caught:
        cat = load_catalogue([folder], bundled=False)
    messages = " ".join(str(w.message) for w in caught)
    for name in ("broken.obj", "half.ply", "noise.stl", "bad.png"):
        assert name in messages
    assert sorted(a.name for a in cat.files) == ["checker.png", "cube.obj"]
    assert {Path(p).name for p, _ in cat.skipped} == {"broken.obj", "half.ply", "noise.stl", "bad.png"}


def test_a_folder_without_usable_files_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no assets here")
    with pytest.raises(ValueError, match=f"assets folder {empty}: no usable"):
        load_catalogue([empty])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.obj").write_text("nothing\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssetWarning)
        with pytest.raises(ValueError, match=r"assets folder .*broken: no usable.*broken\.obj"):
            load_catalogue([broken])
    with pytest.raises(ValueError, match="not found"):
        load_catalogue([tmp_path / "missing"])
    with pytest.raises(ConfigError, match=r"\[scene\]: asset_dirs: assets folder .*empty"):
        config({"asset_dirs": [str(empty)]}).validate()


def test_exr_files_are_textures_or_environment_maps_by_shape(tmp_path):
    openexr = pytest.importorskip("OpenEXR")
    rng = np.random.default_rng(0)

    def write(path, h, w):  # OpenEXR fills in the header it is given: a fresh one per file
        header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
        openexr.File(header, {"RGB": rng.random((h, w, 3)).astype(np.float32)}).write(str(path))

    write(tmp_path / "wide.exr", 4, 8)
    write(tmp_path / "square.exr", 6, 6)
    (tmp_path / "envmaps").mkdir()
    write(tmp_path / "envmaps" / "sq.exr", 6, 6)
    kinds = {a.name: a.kind for a in load_catalogue([tmp_path], bundled=False).files}
    assert kinds == {"wide.exr": "envmap", "square.exr": "texture", "sq.exr": "envmap"}


def test_scenes_use_catalogue_files_with_the_preset_probabilities():
    cat = load_catalogue([])
    scene = {"mesh_file_probability": 0.5, "image_texture_probability": 0.5, "envmap_probability": 0.5, "objects": [20, 20]}
    n_mesh = n_obj = n_img = n_layers = n_env = 0
    for seed in range(10):
        d = sample_scene(config(scene), seed)
        objects = [o for o in d.objects if o.role == "object"]
        n_obj += len(objects)
        n_mesh += sum(o.shape.family == "mesh_file" for o in objects)
        layers = [t for o in d.objects for t in o.material.textures]
        n_layers += len(layers)
        n_img += sum(t.kind == "image" for t in layers)
        n_env += d.world.kind == "envmap"
        for a in d.info.assets:
            assert a.split == "train" and cat.by_sha256(a.sha256).path == a.path
        if d.world.kind == "envmap":
            assert d.world.params["path"] in {a.path for a in cat.select("envmap", "train")}
    assert 0.35 < n_mesh / n_obj < 0.65 and 0.35 < n_img / n_layers < 0.65 and 2 <= n_env <= 8


@pytest.mark.blender
def test_a_scene_with_user_assets_renders(user_folder, tmp_path):
    from focalstack.dataset import FocalStackFile
    from focalstack.dataset.validate import validate_file
    from focalstack.render import render_dataset

    folder, info = user_folder
    scene = add_asset_dirs(
        {"split": info["split"], "bundled_assets": False, "mesh_file_probability": 1.0,
         "image_texture_probability": 1.0, "objects": [3, 4]},
        [folder],
    )  # fmt: skip
    fast = RenderSettings(samples=2, denoise=False)
    cfg = RenderConfig(preset="user-assets", scene=scene, width=32, height=32, render=fast, scenes=1)
    out = tmp_path / "user.h5"
    render_dataset(cfg, out)
    assert validate_file(out, full=True).valid
    with FocalStackFile(out) as f:
        desc = f[0].description
        assert info["cube"] in str(desc) and info["png"] in str(desc)
        assert f[0].aif.std() > 2


def _tetrahedron_gltf(folder: Path, scale: float = 1.0) -> Path:
    """A .gltf whose geometry is in an external buffer (tet.bin), as exporters write it."""
    import json

    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * np.float32([scale, 1, 1])
    indices = np.array([0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3], np.uint16)
    (folder / "tet.bin").write_bytes(positions.tobytes() + indices.tobytes())
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"uri": "tet.bin", "byteLength": 72}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 48}, {"buffer": 0, "byteOffset": 48, "byteLength": 24}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [scale, 1, 1]},
            {"bufferView": 1, "componentType": 5123, "count": 12, "type": "SCALAR"},
        ],
    }
    path = folder / "tet.gltf"
    path.write_text(json.dumps(doc))
    return path


def test_a_gltf_content_hash_covers_its_external_buffer(tmp_path):
    """The hash covered the .gltf text only: a changed .bin changed the geometry (and the depth ground truth)
    of a scene rendered again from its description, without a word."""
    from focalstack.assets.catalogue import content_sha256

    folder = tmp_path / "gltf"
    folder.mkdir()
    path = _tetrahedron_gltf(folder)
    catalogue = load_catalogue([folder], bundled=False)
    (asset,) = catalogue.files
    assert asset.name == "tet.gltf" and asset.info["triangles"] == 4 and asset.sha256 == content_sha256(path)
    assert asset.sha256 != file_sha256(path)
    build_mesh(ShapeSpec("mesh_file", {"path": str(path), "sha256": asset.sha256}))
    text, stat = path.read_text(), path.stat()
    buffer = folder / "tet.bin"
    data = bytearray(buffer.read_bytes())
    data[12:16] = np.float32(0.3).tobytes()  # vertex 1's x: the buffer changes (same size); the .gltf does not
    buffer.write_bytes(bytes(data))
    assert path.read_text() == text and path.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(ValueError, match="tet.gltf: its content changed since the scene was sampled"):
        build_mesh(ShapeSpec("mesh_file", {"path": str(path), "sha256": asset.sha256}))
    # a description from before buffers were hashed names the .gltf by its text's hash: taken, with a warning
    with pytest.warns(AssetWarning, match="by the hash of its text alone"):
        check_unchanged("mesh", str(path), file_sha256(path))


def test_links_in_an_asset_folder_are_walked_once_and_a_dangling_one_is_named(user_folder):
    """A link back up the tree was walked 80 levels deep; a dangling link was skipped without the warning."""
    folder, _ = user_folder
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)
    (folder / "dangling.obj").symlink_to(folder / "nowhere.obj")
    (folder / "x.obj").symlink_to(folder / "y.obj")  # two links that name each other
    (folder / "y.obj").symlink_to(folder / "x.obj")
    with pytest.warns(AssetWarning) as caught:
        cat = load_catalogue([folder], bundled=False)
    messages = [str(w.message) for w in caught]
    assert messages[0] == f"assets: skipping {folder / 'dangling.obj'}: No such file or directory: {folder / 'nowhere.obj'}"
    assert [m.split(":")[1].strip() for m in messages[1:]] == ["skipping " + str(folder / n) for n in ("x.obj", "y.obj")]
    assert [Path(p).name for p, _ in cat.skipped] == ["dangling.obj", "x.obj", "y.obj"]
    assert sorted(a.name for a in cat.files) == ["checker.png", "cube.obj"]


@pytest.mark.blender
def test_a_scene_does_not_render_again_once_its_texture_changed(user_folder):
    """Textures and environment maps were loaded by path: a scene rendered again from its description after its
    texture changed got other images without a word (mesh files were checked)."""
    from focalstack.render.blender import BlenderRenderer

    folder, info = user_folder
    scene = add_asset_dirs(
        {"split": info["split"], "bundled_assets": False, "image_texture_probability": 1.0, "objects": [1, 2]}, [folder]
    )
    cfg = RenderConfig(preset="user-assets", scene=scene, width=32, height=32, render=RenderSettings(samples=1, denoise=False))
    desc = sample_scene(cfg.validate(), 0)
    assert any(a.kind == "texture" for a in desc.info.assets)
    png = folder / "checker.png"
    png.write_bytes(png.read_bytes() + b"changed")  # bytes after the image's end: it still loads
    with BlenderRenderer(samples=1, denoise=False) as renderer:
        with pytest.raises(ValueError, match="texture file .*checker.png: its content changed since the scene was sampled"):
            renderer.render(desc)


@pytest.mark.blender
def test_a_file_resumes_only_with_the_asset_files_it_was_begun_with_wherever_they_are(user_folder, tmp_path):
    """Files added to an --assets folder between two runs went into the scenes of the resumed run without a
    word (an uninterrupted run draws others), while the same files in a moved folder were refused."""
    import shutil
    import subprocess
    import sys

    from focalstack.dataset import FocalStackFile

    folder, info = user_folder
    preset = tmp_path / "textured.toml"
    preset.write_text(
        f'base = "fod500"\n[scene]\nsplit = "{info["split"]}"\nbundled_assets = false\n'
        "image_texture_probability = 1.0\nobjects = [1, 2]\n"
    )
    out = tmp_path / "assets.h5"

    def render(where: Path, scenes: int, samples: int = 1) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "focalstack.render", "--preset", str(preset), "--resolution", "32"]
        cmd += ["--samples", str(samples), "--no-denoise", "--scenes", str(scenes), "--out", str(out)]
        cmd += ["--assets", str(where), "--assets", str(where)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    assert render(folder, 1).returncode == 0
    with FocalStackFile(out) as f:
        assert f.config["scene"]["asset_dirs"] == [str(folder.resolve())]  # named twice: one folder
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    for variant in range(200):  # one more texture of the same split (a pattern the fixture's is not)
        data = cv2.imencode(".png", np.full((8, 8), variant, np.uint8) + np.eye(8, dtype=np.uint8) * 50)[1].tobytes()
        if asset_split(hashlib.sha256(data).hexdigest()) == info["split"]:
            break
    (folder / "more.png").write_bytes(data)
    before = out.read_bytes()
    refused = render(folder, 2)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        f"Error: {out}: the asset files its scenes draw from changed since it was begun (texture files 1 -> 2; in its "
        "--assets folders, the bundled ones, or files this machine cannot read); resuming would draw other files than "
        "an uninterrupted run: restore them, or choose another --out"
    )
    assert out.read_bytes() == before
    assert render(folder, 1).returncode == 0  # finished: nothing to draw, nothing to refuse
    other = render(folder, 2, samples=2)  # another setting too: that is named, not the files
    assert other.returncode == 1 and "exists with other settings: samples=1 (now 2)" in other.stderr
    assert "asset_dirs" not in other.stderr
    assert out.read_bytes() == before
    resumed = render(moved, 2)  # the same contents elsewhere (named twice: one folder) resume
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    with FocalStackFile(out) as f:
        assert len(f) == 2 and str(moved) in f[1].scene and str(folder) in f[0].scene


@pytest.mark.blender
def test_a_transparent_texture_renders_the_colours_the_catalogue_measured(tmp_path):
    """The catalogue measures a texture's colours without its alpha; Blender let transparent pixels render other
    colours (a cut-out texture came out 30 % brighter than the same colours opaque)."""
    from focalstack.dataset import FocalStackFile
    from focalstack.render import render_dataset

    def png(rgb: np.ndarray, alpha: int | None) -> bytes:
        bgr = rgb[..., ::-1]
        img = bgr if alpha is None else np.dstack([bgr, np.full(rgb.shape[:2], alpha, np.uint8)])
        return cv2.imencode(".png", img)[1].tobytes()

    for value in range(100, 250):  # one colour whose opaque and transparent files both fall in the train split
        rgb = np.full((16, 16, 3), value, np.uint8)
        files = {"opaque": png(rgb, None), "clear": png(rgb, 0)}
        if all(asset_split(hashlib.sha256(d).hexdigest()) == "train" for d in files.values()):
            break
    aif = {}
    for name, data in files.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "t.png").write_bytes(data)
        scene = add_asset_dirs(
            {"split": "train", "bundled_assets": False, "image_texture_probability": 1.0, "objects": [2, 3]}, [folder]
        )
        fast = RenderSettings(samples=1, denoise=False)
        render_dataset(RenderConfig(preset="t", scene=scene, width=32, height=32, render=fast, scenes=1), tmp_path / f"{name}.h5")
        with FocalStackFile(tmp_path / f"{name}.h5") as f:
            aif[name] = f[0].aif
    np.testing.assert_array_equal(aif["clear"], aif["opaque"])
