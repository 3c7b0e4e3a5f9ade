"""The one room that talks to Blender: turns a SceneDescription into Blender data and renders it.

For each scene, one Blender scene is built once and rendered with Cycles: first with depth of field off
(the all-in-focus image and the planar Z pass), then the focal slices, in one of two ways (the render
settings' ``slices``):

- ``"light_field"``: one render of V pinhole views from points on the aperture, through a custom (OSL)
  camera that interleaves the views in one image, each pixel with its own aperture point and sub-pixel
  position (``lightfield.py``). A sample of view position x through aperture point p lands, for focus distance s, on
  pixel x + f_px p / s of that slice (shift-and-add): exactly the ray Cycles' thin-lens camera traces for
  that pixel and aperture point, occlusions included. So every slice of the stack is formed from the same
  rays, and another slice costs only its share-out and its denoising.
- ``"cycles"``: one Cycles thin-lens render per focus distance (the aperture, lens and pose of each slice
  exactly as the description says; scenes whose slices differ in lens or pose always take this path).

Persistent data keeps Cycles from re-syncing the unchanged geometry between those renders. Passes are
written as multi-layer EXR (the ``Render Result`` is empty in background mode) and read back with the
OpenEXR package. OpenImageDenoise runs either inside each render (Cycles' denoising pass) or, with the
standalone denoiser, on the stored passes afterwards, with its own prefilter for the AiF image and for the
slices (the light-field slices exist only after the render). Everything the scene created is removed afterwards so
memory stays flat.

The package is the one room that talks to Blender (no other module imports ``bpy``): ``session`` (can
bpy run here, its devices), ``build`` (scene content as Blender data), ``exr`` (passes in and out of EXR
files), ``renderer`` (``BlenderRenderer``). ``bpy`` is imported lazily, inside functions, so that
importing this package costs nothing.
"""

from .exr import read_exr_passes
from .renderer import NO_SURFACE_DEPTH, BlenderRenderer, RenderedScene
from .session import DEVICES, GPU_BACKENDS, BlenderError, check_blender, enable_device

__all__ = [
    "DEVICES",
    "GPU_BACKENDS",
    "NO_SURFACE_DEPTH",
    "BlenderError",
    "BlenderRenderer",
    "RenderedScene",
    "check_blender",
    "enable_device",
    "read_exr_passes",
]
