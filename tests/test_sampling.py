"""Scene sampling (pure, no Blender): determinism, validity of the geometry, the [scene] table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalstack.assets import build_mesh
from focalstack.dataset.optics import frustum_tangents
from focalstack.render.config import ConfigError, RenderConfig, load_preset
from focalstack.render.geometry import euler_xyz_to_matrix
from focalstack.render.sampling import (
    SCENE_DEFAULTS,
    TEXTURE_BASE_FREQUENCY,
    kelvin_to_rgb,
    sample_scene,
    scene_params,
    scene_seed,
    shape_ranges,
    validate_scene_params,
)
from focalstack.render.scene import SceneDescription


def config(scene: dict | None = None, **kw) -> RenderConfig:
    return RenderConfig(preset="test", scene=dict(scene or {}), **kw)


# Blender's XYZ Euler; tests/test_geometry.py checks it against Blender's own mathutils.
rotation = euler_xyz_to_matrix


def world_vertices(obj) -> np.ndarray:
    v, _ = build_mesh(obj.shape)
    return (v.astype(np.float64) * np.asarray(obj.scale)) @ rotation(obj.rotation).T + np.asarray(obj.location)


def tangents(cfg: RenderConfig) -> tuple[float, float]:
    # the view's half-extent at 1 m; tests/test_geometry.py checks it against Blender's camera frame
    return frustum_tangents(cfg.focal_length_mm, cfg.sensor_width_mm, cfg.width, cfg.height)


def backdrop_hit(bg, xn: float, yn: float):
    """Planar depth at which the ray through image-plane point (xn, yn) meets the background plane, and
    the hit's coordinates in the plane's own unit square (inside when both are within [-1, 1])."""
    r = rotation(bg.rotation)
    normal, origin = r[:, 2], np.asarray(bg.location)
    ray = np.array([xn, yn, -1.0])
    t = normal @ origin / (normal @ ray)
    local = r.T @ (t * ray - origin) / np.asarray(bg.scale)
    return t, local


SEEDS = [0, 1, 2, 3, 12345]


# -- determinism -------------------------------------------------------------------------------------


def test_same_seed_same_description_different_seeds_differ():
    cfg = load_preset("fod500")
    a = sample_scene(cfg, 42).to_json()
    np.random.seed(7)  # global random state must not leak in
    b = sample_scene(cfg, 42).to_json()
    assert a == b
    texts = {sample_scene(cfg, s).to_json() for s in range(10)}
    assert len(texts) == 10
    d0, d1 = sample_scene(cfg, 0), sample_scene(cfg, 1)
    assert d0.objects[0].location != d1.objects[0].location
    assert d0.lights[0].energy != d1.lights[0].energy


def test_sampling_does_not_touch_global_random_state():
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    sample_scene(config(), 5)
    assert np.array_equal(np.random.get_state()[1], before)


def test_json_round_trip():
    d = sample_scene(load_preset("fod500"), 9)
    text = d.to_json()
    back = SceneDescription.from_json(text)
    assert back == d
    assert back.to_json() == text
    assert d.seed == 9 and d.preset == "fod500"
    assert d.info.depth_range == [0.1, 3.0]


def test_camera_comes_from_the_config():
    cfg = config(width=320, height=240, f_number=2.8, focus_distances=[0.2, 0.5], focal_length_mm=4.0)
    cam = sample_scene(cfg, 0).camera
    assert (cam.width, cam.height, cam.f_number, cam.focal_length_mm) == (320, 240, 2.8, 4.0)
    assert cam.sensor_width_mm == 3.1 and cam.focus_distances == [0.2, 0.5]


# -- scene_seed -------------------------------------------------------------------------------------------


def test_scene_seed_is_hashed_and_distinct():
    seeds = {(b, i): scene_seed(b, i) for b in range(4) for i in range(500)}
    assert len(set(seeds.values())) == len(seeds), "no two (base seed, index) pairs share a scene"
    assert all(0 <= s < 2**63 for s in seeds.values())
    assert scene_seed(0, 1) != scene_seed(1, 0)
    assert scene_seed(3, 17) == scene_seed(3, 17)
    # not an offset: neighbouring base seeds don't produce shifted copies of each other's sequence
    assert not set(scene_seed(0, i) for i in range(100)) & set(scene_seed(1, i) for i in range(100))
    # pinned: stored files depend on this derivation (resume, re-rendering a scene by its seed)
    assert scene_seed(0, 0) == int(np.random.SeedSequence([0, 0]).generate_state(1, np.uint64)[0] >> np.uint64(1))
    with pytest.raises(ValueError):
        scene_seed(-1, 0)


# -- geometry ---------------------------------------------------------------------------------------------


def test_object_count_within_range():
    counts = [len([o for o in sample_scene(config(), s).objects if o.role == "object"]) for s in range(30)]
    assert min(counts) >= 20 and max(counts) <= 30 and len(set(counts)) > 3
    for s in range(10):
        objects = [o for o in sample_scene(config({"objects": [2, 4]}), s).objects if o.role == "object"]
        assert 2 <= len(objects) <= 4
    assert not [o for o in sample_scene(config({"objects": [0, 0]}), 0).objects if o.role == "object"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", [(256, 256), (320, 180)])
def test_objects_lie_in_the_frustum_and_depth_range(seed, size):
    cfg = load_preset("fod500").with_overrides(width=size[0], height=size[1])
    d = sample_scene(cfg, seed)
    zmin, zmax = cfg.scene["depth_range"]
    tx, ty = tangents(cfg)
    bg = [o for o in d.objects if o.role == "background"]
    assert len(bg) == 1
    for obj in d.objects:
        if obj.role != "object":
            continue
        x, y, z = obj.location
        depth = -z
        assert zmin <= depth <= zmax, obj.name
        assert abs(x) <= depth * tx + 1e-9 and abs(y) <= depth * ty + 1e-9, f"{obj.name} centre out of view"
        # the whole mesh stays inside the depth range: nothing nearer than zmin ...
        depths = -world_vertices(obj)[:, 2]
        assert depths.min() >= zmin - 1e-6, obj.name
        assert depths.max() <= zmax + 1e-6, obj.name
        # ... and its centre lies in front of the backdrop (the object is not hidden behind it)
        t_bg, _ = backdrop_hit(bg[0], x / depth, y / depth)
        assert depth < t_bg, obj.name
        assert min(obj.scale) > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_backdrop_covers_the_view_inside_the_depth_range(seed):
    cfg = load_preset("fod500")
    d = sample_scene(cfg, seed)
    zmin, zmax = cfg.scene["depth_range"]
    tx, ty = tangents(cfg)
    (bg,) = [o for o in d.objects if o.role == "background"]
    assert bg.shape.family == "plane"
    far = []
    for xn in np.linspace(-tx, tx, 9):
        for yn in np.linspace(-ty, ty, 9):
            t, local = backdrop_hit(bg, xn, yn)
            assert zmin < t <= zmax * (1 + 1e-9), "every ray meets the backdrop inside the depth range"
            assert np.all(np.abs(local[:2]) <= 1.0) and abs(local[2]) < 1e-9, "the ray hits the finite plane"
            far.append(t)
    lo, hi = cfg.scene["background_depth"]
    assert lo * zmax - 1e-9 <= max(far) <= hi * zmax + 1e-9  # the farthest corner at the drawn depth


def test_steep_backdrop_stays_inside_a_shallow_depth_range():
    cfg = config({"depth_range": [1.0, 1.3], "background_tilt_deg": [40, 40], "background_depth": [0.9, 1.0]})
    tx, ty = tangents(cfg)
    for s in range(5):
        d = sample_scene(cfg, s)
        (bg,) = [o for o in d.objects if o.role == "background"]
        for xn in (-tx, 0, tx):
            for yn in (-ty, 0, ty):
                t, _ = backdrop_hit(bg, xn, yn)
                assert 1.0 <= t <= 1.3 + 1e-9
        for obj in d.objects:
            if obj.role == "object":
                depths = -world_vertices(obj)[:, 2]
                assert depths.min() >= 1.0 - 1e-6


def background_depth(backgrounds, xn: float, yn: float) -> tuple[float, float]:
    """(depth of the nearest finite quad the ray meets, depth of the nearest of their infinite planes):
    equal when the quads leave no crack where a farther surface (or nothing) would show through."""
    ray = np.array([xn, yn, -1.0])
    t_quad = t_plane = math.inf
    for bg in backgrounds:
        r = rotation(bg.rotation)
        normal, origin = r[:, 2], np.asarray(bg.location)
        den = normal @ ray
        if abs(den) < 1e-12:
            continue
        t = normal @ origin / den
        if t <= 0:
            continue
        t_plane = min(t_plane, t)
        local = r.T @ (t * ray - origin) / np.asarray(bg.scale)
        if np.all(np.abs(local[:2]) <= 1.0) and abs(local[2]) < 1e-9:
            t_quad = min(t_quad, t)
    return t_quad, t_plane


@pytest.mark.parametrize("kind", ["room", "corner", "floor"])
@pytest.mark.parametrize("depth_range", [[0.1, 3.0], [0.5, 2.0]])
def test_rooms_corners_and_floors_cover_the_view_inside_the_depth_range(kind, depth_range):
    cfg = config({"background": kind, "depth_range": depth_range, "objects": [0, 0]})
    zmin, zmax = depth_range
    tx, ty = tangents(cfg)
    for s in range(12):
        d = sample_scene(cfg, s)
        assert d.info.background == kind
        bgs = [o for o in d.objects if o.role == "background"]
        assert len(bgs) >= 2, "several planes meet in view"  # a room shows at least two of its sides
        depths = []
        for xn in np.linspace(-tx, tx, 17):
            for yn in np.linspace(-ty, ty, 17):
                t_quad, t_plane = background_depth(bgs, xn, yn)
                assert t_quad < math.inf, "every ray meets a surface"
                assert t_quad == pytest.approx(t_plane, rel=1e-9), "no crack between the planes"
                assert zmin <= t_quad <= zmax * (1 + 1e-9)
                depths.append(t_quad)
        assert max(depths) >= cfg.scene.get("background_depth", [0.85])[0] * zmax * (1 - 1e-9)
        assert max(depths) / min(depths) > 1.3, "seen at an oblique angle: depth varies across the view"


def test_room_planes_are_oblique_and_floors_recede():
    cfg = config({"background": "floor", "objects": [0, 0]})
    for s in range(6):
        d = sample_scene(cfg, s)
        normals = [rotation(o.rotation)[:, 2] for o in d.objects if o.role == "background"]
        # the floor: a plane whose normal is far from the optical axis (within 45 degrees of the view's up)
        assert any(abs(n[2]) < math.cos(math.radians(45)) for n in normals)
    far_ratio = []
    for s in range(6):
        d = sample_scene(config({"background": "room", "objects": [0, 0]}), s)
        tilts = [math.degrees(math.acos(min(1.0, rotation(o.rotation)[2, 2]))) for o in d.objects if o.role == "background"]
        assert max(tilts) > 15, "no fronto-parallel room: some plane is seen obliquely"
        far_ratio.append(len(tilts))
    assert max(far_ratio) >= 3


def test_a_room_too_deep_for_the_depth_range_falls_back_to_the_backdrop():
    cfg = config({"background": "room", "depth_range": [1.0, 1.2]})
    d = sample_scene(cfg, 0)
    assert d.info.background == "backdrop" and d.info.background_requested == "room"
    (bg,) = [o for o in d.objects if o.role == "background"]
    tx, ty = tangents(cfg)
    for xn in (-tx, tx):
        for yn in (-ty, ty):
            assert 1.0 <= backdrop_hit(bg, xn, yn)[0] <= 1.2 + 1e-9


def test_objects_stay_in_front_of_rooms():
    cfg = config({"background": ["room", "corner", "floor"], "objects": [5, 5]})
    for s in range(5):
        d = sample_scene(cfg, s)
        bgs = [o for o in d.objects if o.role == "background"]
        for obj in d.objects:
            if obj.role == "object":
                x, y, z = obj.location
                assert -z < background_depth(bgs, x / -z, y / -z)[0]
                assert -world_vertices(obj)[:, 2].min() >= 0.1 - 1e-6


def test_mirror_panels_and_mirror_materials():
    d = sample_scene(config({"mirror_panels": [2, 2], "mirror_probability": 1.0, "objects": [3, 3]}), 0)
    panels = [o for o in d.objects if o.name.startswith("mirror_")]
    assert len(panels) == 2
    for o in d.objects:
        if o.role == "object":
            m = o.material
            assert m.metallic == 1.0 and m.roughness <= 0.02 and not m.textures
    for panel in panels:
        assert min(panel.scale) < 0.05 * max(panel.scale), "thin"
        normal = rotation(panel.rotation)[:, 2]
        assert 20 - 1e-6 <= math.degrees(math.acos(abs(normal[2]))) <= 55 + 1e-6, "turned away from the camera"
    d = sample_scene(config({"metallic_probability": 1.0, "metallic_roughness": [0.0, 0.1]}), 0)
    assert all(o.material.roughness <= 0.1 for o in d.objects)


def test_new_keys_leave_the_reference_scenes_unchanged():
    """Keys at their defaults draw nothing: fod500's scenes are those its first sampler made."""
    base = sample_scene(load_preset("fod500"), 3).to_json()
    spelled = {"seed_salt": 0, "mirror_panels": [0, 0], "background_material": {}, "texture_colours": "independent"}
    assert sample_scene(config(spelled), 3).to_json().replace('"preset":"test"', '"preset":"fod500"') == base
    assert sample_scene(config({"seed_salt": 1}), 3).objects != sample_scene(config(), 3).objects


def test_backdrop_tilt_follows_the_preset():
    cfg = config({"background_tilt_deg": [10.0, 10.0]})
    for s in range(5):
        (bg,) = [o for o in sample_scene(cfg, s).objects if o.role == "background"]
        normal = rotation(bg.rotation)[:, 2]
        assert math.degrees(math.acos(normal[2])) == pytest.approx(10.0)
    (bg,) = [o for o in sample_scene(config({"background_tilt_deg": [0, 0]}), 0).objects if o.role == "background"]
    np.testing.assert_allclose(rotation(bg.rotation)[:, 2], [0, 0, 1], atol=1e-12)


def test_depth_distribution_changes_where_objects_go():
    def median_depth(dist):
        cfg = config({"depth_distribution": dist, "objects": [30, 30]})
        return np.median([-o.location[2] for s in range(10) for o in sample_scene(cfg, s).objects if o.role == "object"])

    assert median_depth("inverse") < median_depth("log_uniform") < median_depth("uniform")


@pytest.mark.parametrize("stretch", [1.0, 2.0])
def test_object_size_is_proportional_to_depth(stretch):
    cfg = config({"object_size": [0.2, 0.2], "object_stretch": stretch, "depth_range": [0.01, 3.0]})
    tx, _ = tangents(cfg)
    ratios = []
    for obj in sample_scene(cfg, 0).objects:
        if obj.role == "object":
            depth = -obj.location[2]
            # largest dimension (2 * largest scale) is 20 % of the view width at that depth
            assert 2 * max(obj.scale) == pytest.approx(0.2 * 2 * tx * depth)
            ratios.append(min(obj.scale) / max(obj.scale))
    assert min(ratios) == 1.0 if stretch == 1.0 else 1 / stretch**2 <= min(ratios) < 0.9


def test_shape_families_and_parameter_ranges_follow_the_preset():
    cfg = config({"shape_families": ["torus"], "shape_params": {"torus": {"minor_ratio": [0.1, 0.12]}}})
    for s in range(3):
        for obj in sample_scene(cfg, s).objects:
            if obj.role == "object":
                assert obj.shape.family == "torus" and 0.1 <= obj.shape.params["minor_ratio"] <= 0.12
    families = {o.shape.family for s in range(5) for o in sample_scene(config(), s).objects if o.role == "object"}
    assert {"cube", "sphere", "blob", "superquadric"} <= families


def test_shape_ranges_describe_the_shape_distribution():
    ranges = shape_ranges({"shape_families": ["torus", "cube", "blob"], "shape_params": {"torus": {"minor_ratio": [0.1, 0.2]}}})
    assert set(ranges) == {"torus", "cube", "blob"}
    assert ranges["torus"] == {"minor_ratio": (0.1, 0.2)}  # resolution parameters are fixed, not drawn
    assert ranges["cube"] == {}
    assert ranges["blob"]["amplitude"] == (0.1, 0.45) and "subdivisions" not in ranges["blob"]
    assert set(shape_ranges({})) == set(SCENE_DEFAULTS["shape_families"])


def test_rotations_are_random_and_valid():
    for obj in sample_scene(config(), 0).objects:
        r = rotation(obj.rotation)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    rotations = [tuple(o.rotation) for o in sample_scene(config(), 0).objects if o.role == "object"]
    assert len(set(rotations)) == len(rotations)


# -- materials ---------------------------------------------------------------------------------------------


def all_layers(d: SceneDescription):
    return [(o, t) for o in d.objects for t in o.material.textures]


def test_materials_are_random_and_textured():
    cfg = load_preset("fod500")
    kinds = set()
    for s in range(5):
        d = sample_scene(cfg, s)
        for obj in d.objects:
            m = obj.material
            assert 1 <= len(m.textures) <= 3
            assert all(0 <= c <= 1 for c in m.base_color)
            assert 0.05 <= m.roughness <= 1 and 0.2 <= m.specular <= 0.8 and 0 <= m.metallic <= 1
            for t in m.textures:
                kinds.add(t.kind)
                assert t.scale > 0 and 0 < t.mix <= 1
                assert all(0 <= c <= 1 for c in t.color_a + t.color_b)
                lo, hi = t.factor_range
                assert 0 <= lo < hi <= 1
        colours = {tuple(o.material.base_color) for o in d.objects}
        assert len(colours) == len(d.objects)
    assert kinds == set(SCENE_DEFAULTS["texture_kinds"])


def test_texture_kinds_and_layers_follow_the_preset():
    d = sample_scene(config({"texture_kinds": ["checker", "wave"], "texture_layers": [2, 2]}), 0)
    assert all(len(o.material.textures) == 2 for o in d.objects)
    assert {t.kind for _, t in all_layers(d)} <= {"checker", "wave"}
    d = sample_scene(config({"texture_layers": [0, 0]}), 0)
    assert not all_layers(d) and all(o.material.bump_strength == 0 for o in d.objects)


def test_texture_frequency_is_per_view_width_at_the_surface():
    lo, hi = 5.0, 7.0
    cfg = config({"texture_kinds": ["checker", "noise", "wave"], "texture_frequency": [lo, hi]})
    tx, _ = tangents(cfg)
    for obj, t in all_layers(sample_scene(cfg, 1)):
        if obj.role == "object":
            view_width = 2 * tx * -obj.location[2]
            periods = t.scale * TEXTURE_BASE_FREQUENCY[t.kind] * view_width
            assert lo - 1e-9 <= periods <= hi + 1e-9


def test_texture_colours_contrast():
    for _, t in all_layers(sample_scene(config({"texture_contrast": [0.5, 0.5]}), 0)):
        assert abs(max(t.color_a) - max(t.color_b)) > 0.1  # linear-light values of HSV values 0.5 apart


def test_metallic_probability():
    def metallic_fraction(p):
        objs = [o for s in range(4) for o in sample_scene(config({"metallic_probability": p}), s).objects]
        return np.mean([o.material.metallic > 0 for o in objs])

    assert metallic_fraction(0.0) == 0.0 and metallic_fraction(1.0) == 1.0
    assert 0.3 < metallic_fraction(0.5) < 0.7


# -- lighting ------------------------------------------------------------------------------------------------


def test_lights_and_world():
    cfg = load_preset("fod500")
    counts, kinds, worlds = [], set(), set()
    for s in range(20):
        d = sample_scene(cfg, s)
        counts.append(len(d.lights))
        worlds.add(d.world.kind)
        assert d.world.strength > 0
        for light in d.lights:
            kinds.add(light.kind)
            assert light.energy > 0 and light.size > 0 and max(light.color) == pytest.approx(1.0)
            assert 2500 <= light.temperature_k <= 9000
            facing = rotation(light.rotation) @ np.array([0.0, 0.0, -1.0])  # lights shine along local -Z
            assert facing[2] < 0, "lights shine into the scene (towards -Z)"
            if light.kind != "SUN":
                assert light.location[2] > 0, "point and area lights stand behind the camera plane"
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1
    assert kinds == {"AREA", "POINT", "SUN"} and worlds == {"gradient", "sky"}


def test_exposure_scales_every_light_and_the_world():
    a = sample_scene(config(), 4)
    b = sample_scene(config({"exposure": 1.0}), 4)
    assert [lb.energy for lb in b.lights] == pytest.approx([2 * la.energy for la in a.lights])
    assert b.world.strength == pytest.approx(2 * a.world.strength)
    assert b.objects == a.objects


def test_lights_deliver_the_drawn_irradiance():
    # Radiometric model of the lights (see _lights): the luminous irradiance summed at the reference point.
    lo, hi = SCENE_DEFAULTS["irradiance"]
    for s in range(10):
        d = sample_scene(config(), s)
        ref = np.array([0.0, 0.0, -0.5 * d.info.depth_range[1]])
        total = 0.0
        for light in d.lights:
            lum = 0.2126 * light.color[0] + 0.7152 * light.color[1] + 0.0722 * light.color[2]
            dist2 = float(np.sum((np.asarray(light.location) - ref) ** 2))
            per = {"SUN": light.energy, "POINT": light.energy / (4 * math.pi * dist2), "AREA": light.energy / (math.pi * dist2)}
            total += per[light.kind] * lum
        assert lo - 1e-9 <= total <= hi + 1e-9


def test_kelvin_to_rgb():
    white = kelvin_to_rgb(6500)
    assert min(white) > 0.9
    warm, cool = kelvin_to_rgb(2500), kelvin_to_rgb(9000)
    assert warm[0] == 1.0 and warm[0] > warm[1] > warm[2]
    assert cool[2] == 1.0 and cool[2] > cool[0]
    ratios = [kelvin_to_rgb(t)[2] / kelvin_to_rgb(t)[0] for t in range(2000, 20001, 500)]
    assert all(b > a for a, b in zip(ratios, ratios[1:])), "bluer as the temperature rises"
    with pytest.raises(ValueError):
        kelvin_to_rgb(1000)


# -- the [scene] table ----------------------------------------------------------------------------------------


def test_defaults_are_valid_and_the_reference_preset_spells_them_out():
    validate_scene_params({})
    assert scene_params({}) == SCENE_DEFAULTS
    cfg = load_preset("fod500").validate()
    assert {k: v for k, v in cfg.scene.items() if k != "shape_params"} == {
        k: v for k, v in SCENE_DEFAULTS.items() if k != "shape_params"
    }
    assert (cfg.width, cfg.height, cfg.f_number, cfg.focal_length_mm, cfg.sensor_width_mm) == (256, 256, 1.0, 2.9, 3.1)
    assert cfg.focus_distances == [0.1, 0.15, 0.3, 0.7, 1.5]


@pytest.mark.parametrize(
    "params,key",
    [
        ({"objets": [1, 2]}, "objets"),
        ({"depth_range": [3.0, 1.0]}, "depth_range"),
        ({"depth_range": [0.0, 1.0]}, "depth_range"),
        ({"depth_range": [0.5, 0.5]}, "depth_range"),
        ({"depth_range": "far"}, "depth_range"),
        ({"objects": [-1, 5]}, "objects"),
        ({"objects": [2.5, 3]}, "objects"),
        ({"objects": [5, 2]}, "objects"),
        ({"objects": 20}, "objects"),
        ({"object_size": [0.1, 1.5]}, "object_size"),
        ({"depth_distribution": "gaussian"}, "depth_distribution"),
        ({"shape_families": ["cube", "dodecahedron"]}, "shape_families"),
        ({"shape_families": []}, "shape_families"),
        ({"shape_families": ["cube", "cube"]}, "shape_families"),
        ({"shape_params": {"torus": {"minor_ratio": [0.9, 2.0]}}}, "shape_params"),
        ({"shape_params": {"torus": {"radius": [0.1, 0.2]}}}, "shape_params"),
        ({"shape_params": {"hexagon": {}}}, "shape_params"),
        ({"shape_families": ["cube"], "shape_params": {"torus": {"minor_ratio": [0.1, 0.2]}}}, "shape_params"),
        ({"background": "cave"}, "background"),
        ({"background": ["room", "attic"]}, "background"),
        ({"background_material": {"lights": [1, 2]}}, "background_material"),
        ({"background_material": {"roughness": [0.5, 2.0]}}, "background_material"),
        ({"light_kinds": ["spot"]}, "light_kinds"),
        ({"light_colour": "hue"}, "light_colour"),
        ({"world_kinds": ["hosek_sky"]}, "world_kinds"),
        ({"shape_families": ["cube", "torus_knot"]}, "shape_families"),
        ({"split": "validation"}, "split"),
        ({"focus_sampling": "sometimes"}, "focus_sampling"),
        ({"focus_range": [1.0, 0.5]}, "focus_range"),
        ({"mesh_file_probability": 2.0}, "mesh_file_probability"),
        ({"seed_salt": -1}, "seed_salt"),
        ({"asset_dirs": "/tmp"}, "asset_dirs"),
        ({"background_tilt_deg": [0, 90]}, "background_tilt_deg"),
        ({"background_depth": [0.01, 0.5]}, "background_depth"),
        ({"texture_kinds": ["plaid"]}, "texture_kinds"),
        ({"texture_layers": [1, 20]}, "texture_layers"),
        ({"metallic_probability": 1.5}, "metallic_probability"),
        ({"metallic_probability": True}, "metallic_probability"),
        ({"light_kinds": ["laser"]}, "light_kinds"),
        ({"light_temperature_k": [1000, 5000]}, "light_temperature_k"),
        ({"lights": [1, 100]}, "lights"),
        ({"world_kinds": ["hdri"]}, "world_kinds"),
        ({"exposure": "bright"}, "exposure"),
        ({"irradiance": [0, 1]}, "irradiance"),
    ],
)
def test_bad_scene_params_are_rejected_naming_the_key(params, key):
    with pytest.raises(ValueError, match=key):
        validate_scene_params(params)
    with pytest.raises(ConfigError, match=r"\[scene\].*" + key):
        config(params).validate()
    with pytest.raises(ValueError, match=key):
        sample_scene(config(params), 0)


def test_scene_table_must_be_a_table():
    with pytest.raises(ValueError):
        validate_scene_params([("objects", [1, 2])])


def test_bad_seed_is_rejected():
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed"):
            sample_scene(config(), seed)
