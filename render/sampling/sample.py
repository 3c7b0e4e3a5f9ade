"""A seed and a render configuration -> a plain-data ``SceneDescription``: the scene itself."""

from __future__ import annotations

import numpy as np

from focalstack.dataset.optics import check_focus_distance

from ..scene import CameraSpec, SampleInfo, SceneDescription
from .assets import AssetDraws, asset_catalogue
from .backgrounds import BACKGROUNDS, NoFit, sample_backdrop
from .draws import Streams, depth_at
from .lighting import sample_lights, sample_world
from .objects import sample_mirror_panels, sample_objects
from .params import scene_params

SAMPLER_VERSION = 2


def scene_seed(base_seed: int, index: int) -> int:
    """The seed of scene ``index`` of a dataset with ``base_seed``: a hash into [0, 2**63).

    Hashing (not base_seed + index) keeps datasets with neighbouring base seeds from sharing scenes.
    """
    if base_seed < 0 or index < 0:
        raise ValueError(f"scene_seed({base_seed}, {index}): expected non-negative integers")
    state = np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def sample_scene(config, seed: int) -> SceneDescription:
    """Sample the scene with ``seed`` from ``config`` (a RenderConfig): pure, deterministic.

    The camera comes from the config; objects, background, materials and lighting from its [scene]
    table (``SCENE_PARAMS`` for what it leaves out). Raises ValueError for a bad [scene] table.
    Real-capture effects are not part of sampling: ``effects.with_effects`` adds them.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed {seed!r}: expected a non-negative integer")
    p = scene_params(config.scene)
    # The seed salt gives presets disjoint scenes for the same seeds; salt 0 keeps the plain seed.
    salt = int(p["seed_salt"])
    streams = Streams.spawn(np.random.default_rng(int(seed) if salt == 0 else [int(seed), salt]))
    camera = CameraSpec(
        focal_length_mm=float(config.focal_length_mm),
        sensor_width_mm=float(config.sensor_width_mm),
        f_number=float(config.f_number),
        slices=_stack_subset(streams.focus, p, _focus_distances(streams.focus, p, config)),
        width=int(config.width),
        height=int(config.height),
        defocus_model=config.defocus_model,
    )
    tx, ty = camera.frustum_tangents()
    assets = AssetDraws(asset_catalogue(p), p["split"])
    p_bg = {**p, **p["background_material"]}  # backgrounds' own material distribution
    kinds = [p["background"]] if isinstance(p["background"], str) else list(p["background"])
    kind = kinds[0] if len(kinds) == 1 else kinds[int(streams.background_kind.integers(len(kinds)))]
    info = SampleInfo(SAMPLER_VERSION, [float(x) for x in p["depth_range"]], kind, split=p["split"])
    try:
        background, far_depth = BACKGROUNDS[kind](streams.background, streams.background_materials, p_bg, assets, tx, ty)
    except NoFit:  # oblique walls need more depth range than the preset gives: a (less tilted) backdrop
        info.background_requested, info.background = kind, "backdrop"
        background, far_depth = sample_backdrop(streams.background, streams.background_materials, p_bg, assets, tx, ty)
    objects = sample_objects(streams, p, assets, tx, ty, far_depth)
    objects += sample_mirror_panels(streams.mirror_panels, p, tx, ty, far_depth)
    lights = sample_lights(streams.lights, p)
    world = sample_world(streams.world, streams.envmaps, p, assets)
    info.assets = assets.used  # every asset file the scene uses: path, sha256, split, user
    return SceneDescription(
        seed=int(seed),
        preset=config.preset,
        camera=camera,
        objects=objects + background,
        lights=lights,
        world=world,
        info=info,
    )


def _focus_distances(rng: np.random.Generator, p: dict, config) -> list[float]:
    """The camera's focus distances, or as many drawn from focus_range (focus_sampling = 'random')."""
    if p["focus_sampling"] == "fixed":
        return [float(s) for s in config.focus_distances]
    lo, hi = p["focus_range"]
    try:
        check_focus_distance(lo, config.focal_length_mm)
    except ValueError as exc:
        raise ValueError(f"focus_range = {p['focus_range']!r}: {exc}") from None
    out = [depth_at(float(u), lo, hi, p["focus_distribution"]) for u in rng.random(len(config.focus_distances))]
    return sorted(out) if p["focus_order"] == "sorted" else out


def _stack_subset(rng: np.random.Generator, p: dict, focus_distances: list[float]) -> list[float]:
    """A random stack size (stack_size = [low, high]): that many of the slices, in their order."""
    if p["stack_size"] == "all":
        return focus_distances
    lo, hi = (int(x) for x in p["stack_size"])
    if hi > len(focus_distances):
        raise ValueError(f"stack_size = {p['stack_size']!r}: at most the camera's {len(focus_distances)} focus distances")
    n = int(rng.integers(lo, hi + 1))
    keep = np.sort(rng.choice(len(focus_distances), size=n, replace=False))
    return [focus_distances[int(i)] for i in keep]
