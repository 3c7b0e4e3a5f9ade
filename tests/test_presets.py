"""Built-in presets: scene families (walls, mirrors), held-out test splits, random focus distances.

The pure tests sample scenes; those marked 'blender' render tiny ones (32 px, few samples).
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
import tomllib

from focalstack.dataset import FocalStackFile
from focalstack.dataset.colour import linear_to_srgb
from focalstack.dataset.optics import defocus_maps
from focalstack.dataset.validate import validate_file
from focalstack.render.config import ConfigError, RenderConfig, RenderSettings, builtin_presets, config_default, load_preset
from focalstack.render.sampling import (
    TEST_ONLY,
    preset_signature,
    sample_scene,
    scene_seed,
    shape_ranges,
    validate_scene_params,
)
from focalstack.render.scene import SceneDescription

TRAINING = ["fod500", "walls", "mirrors"]
HELD_OUT = ["test-shape", "test-appearance", "test-wide-dof", "test-medium-dof"]
DOF = {"fod500": 1.0, "test-medium-dof": 2.0, "test-wide-dof": 4.0}  # as their descriptions document


def test_the_built_in_presets_are_the_documented_ones():
    assert set(builtin_presets()) == set(TRAINING + HELD_OUT)
    for name in TRAINING:
        assert load_preset(name).scene.get("split", "train") == "train", name
    for name in HELD_OUT:
        assert load_preset(name).scene["split"] == "test", name


@pytest.mark.parametrize("name", TRAINING + HELD_OUT)
def test_every_preset_validates_samples_and_round_trips(name):
    config = load_preset(name).validate()
    validate_scene_params(config.scene)
    assert config.preset == name
    text = resources.files("focalstack.render").joinpath(f"presets/{name}.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)["description"]
    assert len(doc) > 200, "each preset documents what distinguishes it"
    for seed in range(3):
        desc = sample_scene(config, scene_seed(0, seed))
        assert SceneDescription.from_json(desc.to_json()).to_json() == desc.to_json()
        assert desc.preset == name and len(desc.camera.focus_distances) == len(config.focus_distances)
        assert any(o.role == "background" for o in desc.objects)


# -- walls and mirrors ------------------------------------------------------------------------------------


def test_walls_are_planes_around_the_camera_with_few_objects_and_plain_surfaces():
    config = load_preset("walls")
    kinds = set()
    for seed in range(12):
        d = sample_scene(config, scene_seed(0, seed))
        kinds.add(d.info.background)
        objects = [o for o in d.objects if o.role == "object"]
        walls = [o for o in d.objects if o.role == "background"]
        assert len(objects) <= 4 and len(walls) >= 1
        for w in walls:
            assert w.shape.family == "plane"
            assert len(w.material.textures) <= 1 and w.material.bump_strength == 0 and w.material.metallic == 0
            for layer in w.material.textures:
                lum = [0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] for c in (layer.color_a, layer.color_b)]
                assert abs(float(linear_to_srgb(np.array(lum[0]))) - float(linear_to_srgb(np.array(lum[1])))) <= 0.06, "faint"
                a, b = np.array(layer.color_a), np.array(layer.color_b)
                assert np.allclose(a / a.max(), b / b.max(), atol=0.02)
    assert kinds == {"room", "corner", "floor"}


def test_mirrors_have_mirror_panels_and_smooth_metals():
    config = load_preset("mirrors")
    mirrors = metals = 0
    for seed in range(5):
        d = sample_scene(config, scene_seed(0, seed))
        panels = [o for o in d.objects if o.name.startswith("mirror_")]
        assert 1 <= len(panels) <= 2
        for o in d.objects:
            m = o.material
            if m.metallic == 1.0 and m.roughness <= 0.02 and not m.textures:
                mirrors += 1
            elif m.metallic > 0 and o.role == "object":
                assert m.roughness <= 0.15
                metals += 1
    assert mirrors >= 10 and metals >= 20


# -- held-out splits: disjoint from training by construction --------------------------------------------------


def _ranges_disjoint(a: tuple, b: tuple) -> bool:
    if a and isinstance(a[0], str):  # choices
        return not set(a) & set(b)
    return a[1] < b[0] or b[1] < a[0]


def test_held_out_presets_are_disjoint_from_every_training_preset():
    train = {name: preset_signature(load_preset(name)) for name in TRAINING}
    test = {name: preset_signature(load_preset(name)) for name in HELD_OUT}
    for t_name, t in test.items():
        for r_name, r in train.items():
            pair = f"{t_name} vs {r_name}"
            # No held-out preset ever draws an asset file a training preset may draw.
            assert not t["asset_files"] & r["asset_files"], pair
            if t_name == "test-shape":
                shared = {s[len("family:") :] for s in t["shapes"] & r["shapes"] if s.startswith("family:")}
                assert not t["shapes"] & r["shapes"] - {f"family:{f}" for f in shared}, pair
                for fam in shared:  # a family both draw must differ in some parameter's range
                    assert any(_ranges_disjoint(t["shape_ranges"][fam][k], r["shape_ranges"][fam][k])
                               for k in t["shape_ranges"][fam]), f"{pair}: {fam}"  # fmt: skip
                assert not shared, "test-shape draws only held-out families"
            if t_name == "test-appearance":
                for axis in ("textures", "lights", "worlds"):
                    assert not t[axis] & r[axis], f"{pair}: {axis} {t[axis] & r[axis]}"
            if t_name in DOF:
                assert t["f_number"] != r["f_number"], pair
    # and each held-out axis is really exercised
    assert {s.split(":")[0] for s in test["test-shape"]["shapes"]} == {"family", "mesh"}
    assert all(s.startswith("image:") for s in test["test-appearance"]["textures"]) and test["test-appearance"]["textures"]


def test_held_out_preset_scenes_use_only_what_their_signature_allows():
    """The signatures describe what sampling really draws: check sampled scenes against them."""
    for name in ("test-shape", "test-appearance", "mirrors"):
        config = load_preset(name)
        sig = preset_signature(config)
        for seed in range(4):
            d = sample_scene(config, scene_seed(0, seed))
            for o in d.objects:
                if o.role != "object":
                    continue
                shape = f"mesh:{o.shape.params['sha256']}" if o.shape.family == "mesh_file" else f"family:{o.shape.family}"
                assert shape in sig["shapes"], (name, shape)
                for layer in o.material.textures:
                    key = f"procedural:{layer.kind}" if layer.kind != "image" else None
                    if key:
                        assert key in sig["textures"]
            for a in d.info.assets:
                assert a.sha256 in sig["asset_files"] and a.split == config.scene.get("split", "train")
            lights = {f"{light.kind.lower()}:{'hue' if light.temperature_k == 0 else 'blackbody'}" for light in d.lights}
            assert lights <= sig["lights"]


def test_training_presets_cannot_use_what_is_held_out():
    for key, reserved in TEST_ONLY.items():
        for value in reserved:
            bad = {key: value} if isinstance(load_preset("fod500").scene[key], str) else {key: [value]}
            with pytest.raises(ValueError, match="reserved for held-out test presets"):
                validate_scene_params(bad)
            validate_scene_params({**bad, "split": "test"})
            with pytest.raises(ConfigError, match=key):
                load_preset("fod500").with_overrides(scene={**load_preset("fod500").scene, **bad}).validate()
    assert set(TEST_ONLY["shape_families"]) == {"torus_knot", "spring", "gear", "stellated"}
    assert not set(TEST_ONLY["shape_families"]) & set(shape_ranges({}))


def test_held_out_presets_never_repeat_a_training_scene():
    train = {sample_scene(load_preset(n), scene_seed(0, i)).objects[0].location[0] for n in TRAINING for i in range(10)}
    for name in HELD_OUT:
        for i in range(10):
            assert sample_scene(load_preset(name), scene_seed(0, i)).objects[0].location[0] not in train, name
    # the two depth-of-field sets share their scenes (same salt), apertures apart
    wide, medium = (sample_scene(load_preset(n), 7) for n in ("test-wide-dof", "test-medium-dof"))
    assert wide.objects == medium.objects and wide.camera.f_number == 4.0 and medium.camera.f_number == 2.0


def test_dof_presets_have_the_documented_f_numbers_and_smaller_blur():
    depth = np.linspace(0.1, 3.0, 256, dtype=np.float32)[None, :].repeat(4, 0)  # 256 px wide, as the presets
    largest = {}
    for name, f_number in DOF.items():
        c = load_preset(name)
        assert c.f_number == f_number
        assert c.focus_distances == load_preset("fod500").focus_distances
        maps = defocus_maps(depth, c.focus_distances, c.f_number, c.focal_length_mm, c.sensor_width_mm, "cycles")
        largest[name] = np.abs(maps).max()
    assert largest["test-wide-dof"] < largest["test-medium-dof"] < largest["fod500"]
    assert largest["fod500"] == pytest.approx(6.71, abs=0.01)  # px at 256 px, as the descriptions say
    assert largest["test-medium-dof"] == pytest.approx(3.36, abs=0.01)
    assert largest["test-wide-dof"] == pytest.approx(1.68, abs=0.01)


# -- random focus distances ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["sorted", "random"])
def test_random_focus_distances_per_scene(order):
    scene = {"focus_sampling": "random", "focus_range": [0.2, 2.0], "focus_order": order}
    config = load_preset("fod500").with_overrides(scene={**load_preset("fod500").scene, **scene}, focus_distances=[1, 2, 3, 4])
    stacks = [sample_scene(config, scene_seed(0, i)).camera.focus_distances for i in range(20)]
    assert all(len(s) == 4 and all(0.2 <= x <= 2.0 for x in s) for s in stacks)
    assert len({tuple(s) for s in stacks}) == 20
    is_sorted = [s == sorted(s) for s in stacks]
    assert all(is_sorted) if order == "sorted" else not all(is_sorted)
    inverse = 1 / np.array(stacks).ravel()  # 'inverse' (the default): uniform in dioptres
    assert abs(np.median(inverse) - (1 / 0.2 + 1 / 2.0) / 2) < 0.6
    same = sample_scene(config, scene_seed(0, 3))
    assert same.camera.focus_distances == stacks[3]  # deterministic
    fixed = sample_scene(load_preset("fod500"), scene_seed(0, 3))
    assert same.objects == fixed.objects, "drawing focus distances leaves the scene itself unchanged"


def test_random_focus_range_must_lie_beyond_the_focal_length():
    config = load_preset("fod500").with_overrides(
        scene={**load_preset("fod500").scene, "focus_sampling": "random", "focus_range": [0.001, 1.0]}
    )
    with pytest.raises(ValueError, match="focus_range"):
        sample_scene(config, 0)


# -- rendering ---------------------------------------------------------------------------------------------------


def _render(config, out):
    from focalstack.render import render_dataset

    render_dataset(config, out)
    report = validate_file(out, full=True)
    assert report.valid, report.problems
    return FocalStackFile(out)


@pytest.mark.blender
def test_every_preset_renders_at_32_px_and_validates(tmp_path):
    for name in TRAINING + HELD_OUT:
        config = load_preset(name).with_overrides(width=32, height=32, samples=2, denoise=False, scenes=1, seed=5)
        with _render(config, tmp_path / f"{name}.h5") as f:
            assert len(f) == 1 and f.image_size == (32, 32)
            scene = f[0]
            assert scene.depth.min() >= 0.1 - 1e-4 and scene.depth.max() <= 3.0 + 1e-4
            assert float(scene.f_number) == DOF.get(name, 1.0)
            if name in DOF:  # stored blur is the f/1 blur of the same depth, divided by the f-number
                ref = defocus_maps(scene.depth, scene.focus_distance, 1.0, 2.9, 3.1, "cycles")
                np.testing.assert_allclose(scene.defocus, ref / DOF[name], rtol=1e-4, atol=1e-5)
                assert np.abs(scene.defocus).max() < np.abs(ref).max() or name == "fod500"


@pytest.mark.blender
def test_random_focus_distances_are_stored_per_scene(tmp_path):
    scene = {**load_preset("fod500").scene, "focus_sampling": "random", "focus_range": [0.15, 2.0], "objects": [2, 3]}
    config = load_preset("fod500").with_overrides(width=16, height=16, samples=1, denoise=False, scenes=2, scene=scene,
                                                  focus_distances=[0.5, 1.0, 1.5])  # fmt: skip
    with _render(config, tmp_path / "focus.h5") as f:
        fd = f.read_all("focus_distance")
        assert fd.shape == (2, 3) and not np.allclose(fd[0], fd[1]) and np.all(np.diff(fd, axis=1) > 0)
        assert not np.allclose(fd[0], [0.5, 1.0, 1.5])


def low_gradient_fraction(aif_srgb8: np.ndarray, threshold: float = 3.0) -> float:
    """Fraction of pixels whose grey-level gradient magnitude (8-bit levels per pixel) is below threshold."""
    grey = aif_srgb8.astype(np.float64).mean(axis=2)
    gy, gx = np.gradient(grey)
    return float((np.hypot(gx, gy) < threshold).mean())


@pytest.mark.blender
def test_walls_have_large_smooth_regions():
    from focalstack.dataset.colour import linear_to_srgb8
    from focalstack.render.blender import BlenderRenderer

    fractions = {}
    with BlenderRenderer(samples=8, denoise=True) as renderer:  # denoised: Monte Carlo noise is no texture
        for name in ("walls", "fod500"):
            config = load_preset(name).with_overrides(width=32, height=32, focus_distances=[0.3])
            values = []
            for i in range(4):
                aif = renderer.render(sample_scene(config, scene_seed(0, i))).aif
                values.append(low_gradient_fraction(linear_to_srgb8(aif)))
            fractions[name] = float(np.mean(values))
    print(f"low-gradient fraction (32 px, 4 scenes, gradient < 3 levels/px): {fractions}")
    assert fractions["walls"] >= 0.3, fractions
    assert fractions["walls"] > fractions["fod500"] + 0.1, fractions
    assert math.isfinite(fractions["fod500"])


def test_a_configuration_is_stored_flat_and_reads_back_with_its_render_settings():
    """Files hold the configuration flat (render settings beside the camera's keys, as since focalstack 0.1)."""
    config = load_preset("fod500").with_overrides(samples=7, slices="light_field", denoiser="standalone", width=40)
    assert config.render == RenderSettings(samples=7, slices="light_field", denoiser="standalone") and config.width == 40
    stored = config.to_dict()
    assert "render" not in stored and stored["samples"] == 7 and stored["slices"] == "light_field"
    assert set(stored) == {n for n in RenderSettings.__dataclass_fields__} | set(RenderConfig.__dataclass_fields__) - {"render"}
    assert RenderConfig.from_dict(stored) == config
    assert config.with_overrides(samples=None, width=None) == config  # None keeps the value
    assert (config_default("samples"), config_default("width")) == (RenderSettings().samples, 256)
    with pytest.raises(TypeError):
        RenderConfig.from_dict({**stored, "wobble": 1})
    with pytest.raises(ConfigError, match="samples"):
        config.with_overrides(samples=0).validate()


@pytest.mark.parametrize("table", ["camera", "render", "scene", "effects"])
def test_a_preset_table_given_as_a_value_is_refused_naming_it(tmp_path, table):
    """camera = 5 had its keys read before the table check: TypeError 'int' object is not iterable."""
    path = tmp_path / "p.toml"
    path.write_text(f'base = "fod500"\n{table} = 5\n')
    with pytest.raises(ConfigError, match=f"{table} = 5: expected a table"):
        load_preset(str(path))
