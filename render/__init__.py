"""focalstack.render: random scenes, rendered by Blender into focal stacks with ground truth.

Public face (everything else is an implementation detail):

- ``load_preset(name_or_path)`` -> ``RenderConfig``                 presets and settings (``config``)
- ``describe_scene(config, index)`` -> ``SceneDescription``         scene ``index`` of a dataset, effects
  included; ``sample_scene(config, seed)`` without effects          (pure, no Blender; ``sampling``)
- ``render_dataset(config, out, workers=...)``                      render into HDF5, resumably (``job``)
- ``BlenderRenderer(samples=..., denoise=...)``, ``make_record``    render one description (``blender``)
- the scene types: ``SceneDescription``, ``CameraSpec``, ``SliceSpec``, ``CaptureSpec``, ...  (``scene``)

Importing this package does not import Blender: ``bpy`` is loaded by ``BlenderRenderer`` only.

    from focalstack.render import load_preset, render_dataset
    render_dataset(load_preset("walls").with_overrides(scenes=10, width=64, height=64).validate(), "walls.h5")
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RenderConfig": "config",
    "ConfigError": "config",
    "load_preset": "config",
    "builtin_presets": "config",
    "EffectsConfig": "effects",
    "with_effects": "effects",
    "sample_scene": "sampling",
    "scene_seed": "sampling",
    "describe_scene": "pipeline",
    "make_record": "pipeline",
    "render_dataset": "job",
    "RenderError": "pipeline",
    "BlenderRenderer": "blender",
    "BlenderError": "blender",
    "SceneDescription": "scene",
    "CameraSpec": "scene",
    "SliceSpec": "scene",
    "CaptureSpec": "scene",
    "ObjectSpec": "scene",
    "MaterialSpec": "scene",
    "LightSpec": "scene",
    "WorldSpec": "scene",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy, so that `import focalstack.render` stays cheap and the CLI starts fast.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
