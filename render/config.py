"""Render configuration: presets (TOML files) merged with command-line overrides, validated.

A preset file has up to four tables: [camera] (optics, blur model and resolution), [render] (Cycles
settings and ground-truth thresholds), [scene] (the distributions ``sampling`` draws scenes from; every key
in ``sampling.SCENE_PARAMS``) and the optional [effects] (real-capture effects, ``effects.py``). A preset
may start from another: ``base = "fod500"`` takes that preset's tables and replaces the keys it sets
(key by key within each table; a nested table such as ``[scene.shape_params]`` is replaced whole). Built-in
presets live in ``render/presets/``; ``--preset path/to/my.toml`` loads any file of the same form, whose
``base`` may name a built-in preset or another file (relative to it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import tomllib

from focalstack.dataset import schema
from focalstack.dataset.groundtruth import CANNY_BLUR_SIGMA, CANNY_HIGH, CANNY_LOW
from focalstack.dataset.numbers import is_finite_number, parse_numbers
from focalstack.dataset.optics import DEFOCUS_MODELS, check_focus_distance


class ConfigError(ValueError):
    """A preset or option value that cannot be used; the message names it and what was expected."""


DENOISE_PREFILTERS = ("none", "fast", "accurate")
SLICE_PREFILTERS = ("auto", *DENOISE_PREFILTERS)  # auto: accurate for Cycles slices, fast for light-field ones
DENOISE_QUALITIES = ("high", "balanced", "fast")
SLICE_QUALITIES = ("auto", *DENOISE_QUALITIES)
# What render/lightfield.py's slices are, recorded in each light-field file (``RenderSettings.light_field_version``): a
# file made by another version is not continued (``pipeline.refuse_other_light_field``). Version 1 (before
# focalstack 0.3) drew rays unevenly within pixels (an affine hash made a pixel's streams constant offsets of
# one another, and the sub-pixel position reused the aperture's steps: up to 3x the mean density in an eighth
# of a pixel), which slices blurred below a pixel show as too little blur; its guides were not blurred below
# half a pixel.
LIGHT_FIELD_VERSION = 2
# Blender's own hard limits (its RNA: render.resolution_x/_y and cycles.samples): beyond them bpy fails mid-render.
BLENDER_PIXELS = (4, 65536)
CYCLES_MAX_SAMPLES = 1 << 24
DENOISERS = ("standalone", "in_render")
SLICE_MODES = ("light_field", "cycles")
# What --device accepts; 'gpu' takes the first of blender.GPU_BACKENDS that has a device (OptiX runs fastest
# where RT cores exist and works without them, docs/design.md).
DEVICES = ("cpu", "gpu", "cuda", "optix", "hip", "oneapi")
LIGHT_FIELD_GUIDES = ("aif_image", "aif", "rays")


@dataclass(frozen=True)
class RenderSettings:
    """How Cycles renders (never what it renders: that is the SceneDescription's). The one place these
    settings and their defaults are written; a preset's [render] table sets any of them, and
    ``BlenderRenderer`` takes them as keyword arguments. docs/rendering.md, "Presets", says what each one costs.

    slices = "light_field" renders every slice of a stack from one shared set of rays: one Cycles render
    of ``light_field_views`` pinhole views from points of the aperture (``light_field_samples`` samples
    per pixel each), split per focus distance by shift-and-add, which is the thin-lens model Cycles' own
    depth of field computes; the cost barely grows with the number of slices. slices = "cycles" renders
    each slice as its own Cycles thin-lens render with ``samples`` samples per pixel. The all-in-focus
    image and depth are always one Cycles render with ``samples`` samples. ``light_field_guides`` says what
    the denoiser of a light-field slice gets as albedo and normal, each blurred as the slice blurs
    (``guides.layered_blur``: clean) unless "rays": "aif_image", the denoised all-in-focus image (clipped to
    [0, 1]) as albedo and the all-in-focus normal; "aif", the all-in-focus render's albedo and normal; or
    "rays", the slice's own splatted albedo and normal rays (noisy where it is defocused).
    """

    samples: int = 16  # Cycles samples per pixel of the AiF render (and of each slice with slices = "cycles")
    denoise: bool = True  # OpenImageDenoise on the AiF and on every slice
    denoiser: str = "in_render"  # Cycles' own, during the render | "standalone": on the stored passes after it
    aif_prefilter: str = "accurate"  # OIDN prefilter of the albedo/normal passes: none | fast | accurate
    slice_prefilter: str = "auto"  # the same for the slices; auto: see slice_denoise_prefilter
    # OIDN quality: high | balanced | fast. Balanced: high's large network misrenders sharp high-contrast texture
    # (a checker's all-in-focus image errs 2.0x the raw 16-sample noise against 512 samples; balanced 1.2-1.4x;
    # tests/test_render_physics.py), and the all-in-focus image is ground truth. Files made with high resume with it.
    denoise_quality: str = "balanced"
    # The same for the slices; auto: high for light-field slices, denoise_quality for Cycles ones (see slice_denoising)
    slice_denoise_quality: str = "auto"
    slices: str = "cycles"  # cycles | light_field (see above)
    light_field_views: int = 16  # aperture points per frame pixel in the light-field render
    light_field_samples: int = 1  # Cycles samples per pixel of each view (more views beat more samples)
    light_field_guides: str = "aif_image"  # the slices' denoising guides: aif_image | aif | rays (see above)
    light_field_version: int = LIGHT_FIELD_VERSION  # what made the light-field slices: recorded, not chosen
    light_tree: bool = True  # Cycles' light tree (many-light sampling)

    def validate(self) -> "RenderSettings":
        if self.light_field_version != LIGHT_FIELD_VERSION or isinstance(self.light_field_version, bool):
            raise ConfigError(
                f"light_field_version = {self.light_field_version!r}: this focalstack renders light-field version "
                f"{LIGHT_FIELD_VERSION} only"
            )
        for name in ("samples", "light_field_views", "light_field_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} = {value!r}: expected a positive integer")
        for name in ("samples", "light_field_samples"):
            if getattr(self, name) > CYCLES_MAX_SAMPLES:
                raise ConfigError(f"{name} = {getattr(self, name)}: Cycles takes at most {CYCLES_MAX_SAMPLES} samples per pixel")
        for name in ("denoise", "light_tree"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} = {getattr(self, name)!r}: expected true or false")
        for name, allowed in (
            ("denoiser", DENOISERS),
            ("aif_prefilter", DENOISE_PREFILTERS),
            ("slice_prefilter", SLICE_PREFILTERS),
            ("denoise_quality", DENOISE_QUALITIES),
            ("slice_denoise_quality", SLICE_QUALITIES),
            ("slices", SLICE_MODES),
            ("light_field_guides", LIGHT_FIELD_GUIDES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.slices == "light_field" and self.denoise and self.denoiser == "in_render":
            raise ConfigError('slices = "light_field" are denoised after the render: set denoiser = "standalone"')
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def slice_denoise_prefilter(self) -> str:
        """The prefilter the slices get: ``slice_prefilter``, or for "auto" the one for their guides: none for
        the light field's clean all-in-focus guides, fast for its noisy ray guides (accurate measured up to
        1.7 dB better there at five times the cost), accurate for Cycles slices."""
        if self.slice_prefilter != "auto":
            return self.slice_prefilter
        if self.slices == "light_field":
            return "fast" if self.light_field_guides == "rays" else "none"
        return "accurate"

    def slice_denoising(self) -> tuple[str, str]:
        """(prefilter, quality) of the slices' denoiser. Quality "auto": for light-field slices high, which
        follows their guides (blurred as each slice is) to 0.2 px of blur below a pixel where balanced keeps
        such slices too sharp (tests/test_render_physics.py, docs/rendering.md "Small blur"; where such a slice
        is in focus it is the all-in-focus image, ``guides.in_focus_weight``, so high's artefacts on sharp
        texture do not reach it); for Cycles slices ``denoise_quality``, which then denoises the in-focus
        texture too."""
        quality = self.slice_denoise_quality
        if quality == "auto":
            quality = "high" if self.slices == "light_field" else self.denoise_quality
        return self.slice_denoise_prefilter(), quality

    def aif_denoising(self) -> tuple[str, str]:
        """(prefilter, quality) of the all-in-focus image's denoiser."""
        return self.aif_prefilter, self.denoise_quality


# Today's default, spelled out (focalstack 0.1: 16 samples per image, every slice its own Cycles render,
# Cycles' in-render denoiser with the accurate prefilter), so that benchmarks/render_bench.py can render it
# beside other settings whatever the defaults become.
RENDER_SETTINGS_V0 = RenderSettings(
    samples=16,
    denoise=True,
    denoiser="in_render",
    aif_prefilter="accurate",
    slice_prefilter="accurate",
    denoise_quality="high",
    slices="cycles",
)

# The light-field path as measured in docs/benchmarks.md: a preset opts in with these [render] keys.
# The all-in-focus image at OIDN's balanced quality: high errs twice the raw noise on a sharp high-contrast
# texture (tests/test_render_physics.py), and that image is ground truth and the slices' guide. The slices
# at high (slice_denoise_quality "auto"), which follows the guides below a pixel of blur; in focus they are
# the all-in-focus image (guides.in_focus_weight), which also keeps their occlusion edges within
# today's error (tests/test_render_lightfield.py).
RENDER_SETTINGS_LIGHT_FIELD = RenderSettings(
    denoiser="standalone", aif_prefilter="none", denoise_quality="balanced", slices="light_field"
)


def light_field_keys() -> dict:
    """The keys RENDER_SETTINGS_LIGHT_FIELD sets apart from the defaults: what turns any settings into the
    light-field path as measured (``focalstack-render --light-field``, render_bench's ``light_field``)."""
    defaults = RenderSettings().to_dict()
    return {k: v for k, v in RENDER_SETTINGS_LIGHT_FIELD.to_dict().items() if v != defaults[k]}


def cycles_slice_keys() -> dict:
    """The same keys at their defaults: what turns any settings, a light-field preset's included, into
    every slice its own Cycles render (``focalstack-render --cycles-slices``, the fallback on devices
    without OSL)."""
    defaults = RenderSettings().to_dict()
    return {k: defaults[k] for k in light_field_keys()}


@dataclass
class RenderConfig:
    """Everything a dataset is rendered from; stored in each file's ``config`` attribute.

    Stored flat (``to_dict``): the render settings' keys sit beside the camera's, as every file since
    focalstack 0.1 holds them and as a preset's tables list them; ``from_dict`` and ``with_overrides`` take
    that flat form and route each RenderSettings key into ``render``."""

    preset: str
    seed: int = 0
    scenes: int = 100
    width: int = 256
    height: int = 256
    focal_length_mm: float = 2.9
    sensor_width_mm: float = 3.1
    f_number: float = 1.0
    focus_distances: list[float] = field(default_factory=lambda: [0.1, 0.15, 0.3, 0.7, 1.5])
    defocus_model: str = "cycles"  # which blur the ground truth describes (the camera's; optics.DEFOCUS_MODELS)
    render: RenderSettings = field(default_factory=RenderSettings)  # how Cycles renders (a preset's [render] table)
    device: str = "cpu"  # what Cycles renders on (DEVICES); a machine's, not a preset's; may change on resume
    canny_low: float = CANNY_LOW
    canny_high: float = CANNY_HIGH
    canny_blur_sigma: float = CANNY_BLUR_SIGMA
    # ground truth rendered only on request (schema.ON_REQUEST_GROUND_TRUTH: normals, objects); none by default
    ground_truth: list[str] = field(default_factory=list)
    scene: dict = field(default_factory=dict)  # the preset's [scene] table, read by sampling
    effects: dict = field(default_factory=dict)  # the preset's [effects] table, read by effects.py

    def to_dict(self) -> dict:
        """The stored (flat) form: every field, with ``render``'s keys in its place."""
        out: dict = {}
        for name, value in asdict(self).items():  # render's keys in its place: the order files have always had
            out.update(value if name == "render" else {name: value})
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RenderConfig":
        """The inverse of ``to_dict``; a missing key takes its default, an unknown one is a TypeError."""
        own, settings = _split_render_keys(d)
        return cls(**own, render=RenderSettings(**settings))

    def validate(self) -> "RenderConfig":
        """Raise ConfigError naming the first bad value; return self for chaining."""
        if not isinstance(self.render, RenderSettings):
            raise ConfigError(f"render = {self.render!r}: expected RenderSettings")
        self.render.validate()
        for name in ("width", "height", "scenes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} = {value!r}: expected a positive integer")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not BLENDER_PIXELS[0] <= value <= BLENDER_PIXELS[1]:
                raise ConfigError(f"{name} = {value}: Blender renders {BLENDER_PIXELS[0]} to {BLENDER_PIXELS[1]} pixels")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed = {self.seed!r}: expected a non-negative integer")
        for name in ("focal_length_mm", "sensor_width_mm", "f_number"):
            value = getattr(self, name)
            if not is_finite_number(value) or not value > 0:
                raise ConfigError(f"{name.replace('_', '-')} = {value!r}: expected a finite number > 0")
        if not self.focus_distances:
            raise ConfigError("focus-distances: expected at least one focus distance")
        repeated = sorted({s for s in self.focus_distances if self.focus_distances.count(s) > 1})
        if repeated:  # two slices of one focus distance are one slice twice
            raise ConfigError(
                f"focus-distances: {', '.join(f'{s:g}' for s in repeated)} given more than once; expected distinct distances"
            )
        for s in self.focus_distances:
            try:
                check_focus_distance(s, self.focal_length_mm)
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(exc) if isinstance(exc, ValueError) else f"focus distance {s!r}: not a number") from None
        if self.device not in DEVICES:
            raise ConfigError(f"device = {self.device!r}: expected one of {', '.join(DEVICES)}")
        if self.defocus_model not in DEFOCUS_MODELS:
            raise ConfigError(f"defocus_model = {self.defocus_model!r}: expected one of {', '.join(DEFOCUS_MODELS)}")
        for name in ("canny_low", "canny_high", "canny_blur_sigma"):
            if not is_finite_number(getattr(self, name)):
                raise ConfigError(f"{name} = {getattr(self, name)!r}: expected a finite number")
        if not 0 <= self.canny_low <= self.canny_high:
            raise ConfigError(f"canny thresholds {self.canny_low}, {self.canny_high}: expected 0 <= low <= high")
        check_ground_truth(self.ground_truth)
        from .effects import EffectsConfig

        try:
            effects = EffectsConfig.from_dict(self.effects)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"preset {self.preset!r} [effects]: {exc}") from None
        if effects.focus_breathing and self.defocus_model != "thin_lens":
            raise ConfigError('focus breathing is the textbook thin lens\'s behaviour: set defocus_model = "thin_lens" with it')
        from .sampling import validate_scene_params  # sampling owns the [scene] table

        try:
            validate_scene_params(self.scene)
            self._check_scene_against_camera()
        except ValueError as exc:
            raise ConfigError(f"preset {self.preset!r} [scene]: {exc}") from None
        return self

    def _check_scene_against_camera(self) -> None:
        """ValueError for [scene] keys that the camera rules out: caught here, not at the first scene."""
        from .sampling import scene_params

        p = scene_params(self.scene)
        if p["stack_size"] != "all" and int(p["stack_size"][1]) > len(self.focus_distances):
            raise ValueError(
                f"stack_size = {p['stack_size']!r}: at most the camera's {len(self.focus_distances)} focus distances"
            )
        if p["focus_sampling"] == "random":
            try:
                check_focus_distance(p["focus_range"][0], self.focal_length_mm)
            except ValueError as exc:
                raise ValueError(f"focus_range = {p['focus_range']!r}: {exc}") from None
            several = len(self.focus_distances) > 1 and (p["stack_size"] == "all" or int(p["stack_size"][1]) > 1)
            if several and p["focus_range"][0] == p["focus_range"][1]:  # as fixed ones must differ
                raise ValueError(
                    f"focus_range = {p['focus_range']!r}: every slice would be focused at one distance; expected low < high"
                )

    def with_overrides(self, **overrides) -> "RenderConfig":
        """A copy with the given keys of the flat form replaced (a RenderSettings key replaces it in
        ``render``); None means 'keep the preset's value'."""
        own, settings = _split_render_keys({k: v for k, v in overrides.items() if v is not None})
        return replace(self, **own, render=replace(self.render, **settings))


def _split_render_keys(flat: dict) -> tuple[dict, dict]:
    """(RenderConfig's own keys, RenderSettings' keys) of a flat configuration."""
    settings = {k: v for k, v in flat.items() if k in _SETTINGS_KEYS}
    return {k: v for k, v in flat.items() if k not in _SETTINGS_KEYS}, settings


_SETTINGS_KEYS = frozenset(f.name for f in fields(RenderSettings))


def config_default(name: str):
    """The default of a key of the flat configuration (for command-line help that does not retype it)."""
    if name in _SETTINGS_KEYS:
        return getattr(RenderSettings(), name)
    for f in fields(RenderConfig):
        if f.name == name and f.name != "render":
            return f.default_factory() if callable(f.default_factory) else f.default
    raise KeyError(name)


# -- presets -----------------------------------------------------------------------------------------
_TABLES = ("camera", "render", "scene", "effects")
_CAMERA_KEYS = {"focal_length_mm", "sensor_width_mm", "f_number", "focus_distances", "resolution", "defocus_model"}
_RENDER_KEYS = _SETTINGS_KEYS | {"canny_low", "canny_high", "canny_blur_sigma", "ground_truth"}


def check_ground_truth(names) -> list[str]:
    """``names`` if it is a list of distinct ground truths the renderer makes on request; ConfigError otherwise."""
    allowed = schema.ON_REQUEST_GROUND_TRUTH
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise ConfigError(f"ground_truth = {names!r}: expected a list of distinct names, some of {', '.join(allowed)}")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ConfigError(
            f"ground_truth: {', '.join(map(repr, unknown))} is not rendered on request; expected some "
            f"of {', '.join(allowed)} (the others are always rendered)"
        )
    return names


def parse_ground_truth(text: str) -> list[str]:
    """'normals,objects' -> ['normals', 'objects'] (in schema order); '' or 'none' -> []; ConfigError otherwise."""
    names = [] if text.strip().lower() in ("", "none") else [n.strip() for n in text.split(",")]
    check_ground_truth(names)
    return [n for n in schema.ON_REQUEST_GROUND_TRUTH if n in names]


def builtin_presets() -> list[str]:
    folder = resources.files("focalstack.render") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _preset_text(name_or_path: str, relative_to: Path | None = None) -> tuple[str, str, Path | None]:
    """(preset name, TOML text, file path or None for built-ins) for a built-in name or a .toml path."""
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        path = Path(name_or_path)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"preset file {path}: not found")
        try:
            return path.stem, path.read_text(encoding="utf-8"), path
        except UnicodeDecodeError:
            raise ConfigError(f"preset file {path}: not UTF-8 text (expected a TOML file)") from None
    if name_or_path not in builtin_presets():
        raise ConfigError(
            f"unknown preset {name_or_path!r}: expected one of {', '.join(builtin_presets())} or a path to a .toml file"
        )
    resource = resources.files("focalstack.render") / "presets" / f"{name_or_path}.toml"
    return name_or_path, resource.read_text(encoding="utf-8"), None


def _preset_tables(name_or_path: str, relative_to: Path | None = None, chain: tuple[str, ...] = ()) -> tuple[str, dict]:
    """(name, {table: dict}) of a preset with its ``base`` chain merged in, checked key by key."""
    name, text, path = _preset_text(name_or_path, relative_to)
    where = str(path) if path is not None else name
    if where in chain:
        raise ConfigError(f"preset {name_or_path}: 'base' chain loops ({' -> '.join((*chain, where))})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {name_or_path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"name", "description", "base", *_TABLES}
    if unknown:
        raise ConfigError(f"preset {name_or_path}: unknown table(s) or key(s) {', '.join(sorted(unknown))}")
    for t in _TABLES:
        if not isinstance(data.get(t, {}), dict):  # before its keys are read: camera = 5 has none
            raise ConfigError(f"preset {name_or_path}: {t} = {data[t]!r}: expected a table")
    for table, allowed in (("camera", _CAMERA_KEYS), ("render", _RENDER_KEYS)):
        bad = set(data.get(table, {})) - allowed
        if bad:
            hint = " (defocus_model belongs in [camera])" if "defocus_model" in bad else ""
            raise ConfigError(f"preset {name_or_path} [{table}]: unknown key(s) {', '.join(sorted(bad))}{hint}")
    tables: dict = {t: {} for t in _TABLES}
    if "base" in data:
        if not isinstance(data["base"], str):
            raise ConfigError(f"preset {name_or_path}: base = {data['base']!r}: expected a preset name or file")
        _, tables = _preset_tables(data["base"], path.parent if path is not None else None, (*chain, where))
    for t in _TABLES:
        tables[t] = {**tables[t], **data.get(t, {})}
    return str(data.get("name", name)), tables


def load_preset(name_or_path: str) -> RenderConfig:
    """Read a preset into a RenderConfig (not yet validated: overrides may still fix values)."""
    name, tables = _preset_tables(name_or_path)
    camera, render = dict(tables["camera"]), dict(tables["render"])
    kwargs: dict = {"preset": name, "scene": dict(tables["scene"]), "effects": dict(tables["effects"])}
    if "resolution" in camera:
        kwargs["width"], kwargs["height"] = parse_resolution(camera.pop("resolution"))
    kwargs.update(camera)
    kwargs.update(render)
    kwargs, settings = _split_render_keys(kwargs)
    if "focus_distances" in kwargs:
        distances = kwargs["focus_distances"]
        if not isinstance(distances, list) or not all(is_finite_number(s) for s in distances):
            raise ConfigError(f"preset {name_or_path} [camera]: focus_distances = {distances!r}: expected finite numbers")
        kwargs["focus_distances"] = [float(s) for s in distances]
    try:
        return RenderConfig(**kwargs, render=RenderSettings(**settings))
    except TypeError as exc:
        raise ConfigError(f"preset {name_or_path}: {exc}") from None


def blur_matched_f_number(f_number: float, width: int, new_width: int) -> float:
    """The f-number that gives, at ``new_width`` pixels, the blur in pixels that ``f_number`` gives at
    ``width`` (same lens and sensor: the blur diameter in pixels is proportional to width / N)."""
    return float(f_number) * new_width / width


def parse_resolution(value) -> tuple[int, int]:
    """'256', '320x240', 256 or [320, 240] -> (width, height); ConfigError otherwise."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        parts = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value, value]
    else:
        text = str(value).lower().strip()
        parts = text.split("x") if "x" in text else [text, text]
    try:
        w, h = (int(str(p).strip()) for p in parts)
    except ValueError:
        raise ConfigError(f"resolution {value!r}: expected a positive integer or WIDTHxHEIGHT") from None
    if w < 1 or h < 1:
        raise ConfigError(f"resolution {value!r}: expected positive integers")
    return w, h


def parse_focus_distances(text: str) -> list[float]:
    """'0.1,0.15,0.3' -> [0.1, 0.15, 0.3]; ConfigError naming the bad item."""
    try:
        return parse_numbers(text, "--focus-distances", unit="metres")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
