"""Render configuration: presets (TOML files) merged with command-line overrides, validated.

A preset file has up to four tables: [camera] (optics and resolution), [render] (Cycles settings),
[scene] (the distributions that ``sampling.py`` draws scenes from) and the optional [effects]
(real-capture effects, ``effects.py``). Built-in presets live in
``render/presets/``; ``--preset path/to/my.toml`` loads any file of the same form.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from focalstack.dataset.groundtruth import CANNY_BLUR_SIGMA, CANNY_HIGH, CANNY_LOW
from focalstack.dataset.optics import DEFOCUS_MODELS


class ConfigError(ValueError):
    """A preset or option value that cannot be used; the message names it and what was expected."""


@dataclass
class RenderConfig:
    preset: str
    seed: int = 0
    scenes: int = 100
    width: int = 256
    height: int = 256
    focal_length_mm: float = 2.9
    sensor_width_mm: float = 3.1
    f_number: float = 1.0
    focus_distances: list[float] = field(default_factory=lambda: [0.1, 0.15, 0.3, 0.7, 1.5])
    samples: int = 16
    denoise: bool = True
    defocus_model: str = "cycles"
    canny_low: float = CANNY_LOW
    canny_high: float = CANNY_HIGH
    canny_blur_sigma: float = CANNY_BLUR_SIGMA
    scene: dict = field(default_factory=dict)  # the preset's [scene] table, read by sampling.py
    effects: dict = field(default_factory=dict)  # the preset's [effects] table, read by effects.py

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RenderConfig":
        return cls(**d)

    def validate(self) -> "RenderConfig":
        """Raise ConfigError naming the first bad value; return self for chaining."""
        for name in ("width", "height", "samples", "scenes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} = {value!r}: expected a positive integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed = {self.seed!r}: expected a non-negative integer")
        for name in ("focal_length_mm", "sensor_width_mm", "f_number"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name.replace('_', '-')} = {value!r}: expected a number > 0")
        if not self.focus_distances:
            raise ConfigError("focus-distances: expected at least one focus distance")
        f_m = self.focal_length_mm * 1e-3
        for s in self.focus_distances:
            if not isinstance(s, (int, float)) or not s > f_m:
                raise ConfigError(
                    f"focus distance {s!r} m: must be beyond the focal length ({f_m:g} m = {self.focal_length_mm} mm)"
                )
        if self.defocus_model not in DEFOCUS_MODELS:
            raise ConfigError(f"defocus_model = {self.defocus_model!r}: expected one of {', '.join(DEFOCUS_MODELS)}")
        if not 0 <= self.canny_low <= self.canny_high:
            raise ConfigError(f"canny thresholds {self.canny_low}, {self.canny_high}: expected 0 <= low <= high")
        from .effects import EffectsConfig

        try:
            effects = EffectsConfig.from_dict(self.effects)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"preset {self.preset!r} [effects]: {exc}") from None
        if effects.focus_breathing and self.defocus_model != "thin_lens":
            raise ConfigError(
                "focus breathing is the textbook thin lens's behaviour: set defocus_model = \"thin_lens\" with it"
            )
        from .sampling import validate_scene_params  # sampling owns the [scene] table

        try:
            validate_scene_params(self.scene)
        except ValueError as exc:
            raise ConfigError(f"preset {self.preset!r} [scene]: {exc}") from None
        return self

    def with_overrides(self, **overrides) -> "RenderConfig":
        """A copy with the given fields replaced; None means 'keep the preset's value'."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def builtin_presets() -> list[str]:
    folder = resources.files("focalstack.render") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _preset_text(name_or_path: str) -> tuple[str, str]:
    """(preset name, TOML text) for a built-in preset name or a path to a .toml file."""
    looks_like_path = name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"preset file {path}: not found")
        return path.stem, path.read_text(encoding="utf-8")
    if name_or_path not in builtin_presets():
        raise ConfigError(
            f"unknown preset {name_or_path!r}: expected one of {', '.join(builtin_presets())} or a path to a .toml file"
        )
    resource = resources.files("focalstack.render") / "presets" / f"{name_or_path}.toml"
    return name_or_path, resource.read_text(encoding="utf-8")


_CAMERA_KEYS = {"focal_length_mm", "sensor_width_mm", "f_number", "focus_distances", "resolution"}
_RENDER_KEYS = {"samples", "denoise", "defocus_model", "canny_low", "canny_high", "canny_blur_sigma"}


def load_preset(name_or_path: str) -> RenderConfig:
    """Read a preset into a RenderConfig (not yet validated: overrides may still fix values)."""
    name, text = _preset_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {name_or_path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"name", "description", "camera", "render", "scene", "effects"}
    if unknown:
        raise ConfigError(f"preset {name_or_path}: unknown table(s) {', '.join(sorted(unknown))}")
    camera, render = dict(data.get("camera", {})), dict(data.get("render", {}))
    for table, keys, allowed in (("camera", camera, _CAMERA_KEYS), ("render", render, _RENDER_KEYS)):
        bad = set(keys) - allowed
        if bad:
            raise ConfigError(f"preset {name_or_path} [{table}]: unknown key(s) {', '.join(sorted(bad))}")
    kwargs: dict = {
        "preset": data.get("name", name),
        "scene": dict(data.get("scene", {})),
        "effects": dict(data.get("effects", {})),
    }
    if "resolution" in camera:
        kwargs["width"], kwargs["height"] = parse_resolution(camera.pop("resolution"))
    kwargs.update(camera)
    kwargs.update(render)
    if "focus_distances" in kwargs:
        kwargs["focus_distances"] = [float(s) for s in kwargs["focus_distances"]]
    return RenderConfig(**kwargs)


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
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            out.append(float(item))
        except ValueError:
            raise ConfigError(f"focus distance {item!r}: expected a number in metres") from None
    return out
