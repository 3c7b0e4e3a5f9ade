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

``bpy`` is imported lazily, inside ``BlenderRenderer``, so that importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focalstack.assets import build_mesh

from . import lightfield
from .config import ConfigError, RenderSettings
from .scene import LightSpec, MaterialSpec, ObjectSpec, SceneDescription, TextureLayer, WorldSpec

# Background pixels of the Z pass read 1e10; anything this far means "no surface".
NO_SURFACE_DEPTH = 1e9

_TEXTURE_NODES = {
    "noise": ("ShaderNodeTexNoise", "Factor"),
    "noise_ridged": ("ShaderNodeTexNoise", "Factor"),
    "voronoi": ("ShaderNodeTexVoronoi", "Distance"),
    "wave": ("ShaderNodeTexWave", "Factor"),
    "checker": ("ShaderNodeTexChecker", "Factor"),
    "brick": ("ShaderNodeTexBrick", "Factor"),
    "magic": ("ShaderNodeTexMagic", "Factor"),
    "gradient": ("ShaderNodeTexGradient", "Factor"),
    "image": ("ShaderNodeTexImage", "Color"),
}


class BlenderError(RuntimeError):
    """Blender could not build or render a scene; the message says which part."""


def check_blender() -> None:
    """BlenderError (one line) unless bpy can render in this interpreter: the bpy 5.0.1 wheel exists for
    Python 3.11 only and needs numpy < 2 (DESIGN.md). Checked before any output file is created."""
    import importlib.util

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.version_info[:2] != (3, 11):
        raise BlenderError(
            f"rendering needs Blender's bpy 5.0.1, which exists for Python 3.11 only (this is Python {version}): "
            "run focalstack-render in a Python 3.11 environment with pip install 'focalstack[render]'"
        )
    if importlib.util.find_spec("bpy") is None:
        raise BlenderError("cannot import bpy: install the render extra, pip install 'focalstack[render]'")
    if int(np.__version__.split(".")[0]) >= 2:
        raise BlenderError(f"bpy 5.0 needs numpy < 2, this environment has numpy {np.__version__}: pip install 'numpy<2'")


@dataclass
class RenderedScene:
    """Linear-light renders of one scene, as Cycles produced them."""

    aif: np.ndarray  # (H, W, 3) float32, DoF off
    depth: np.ndarray  # (H, W) float32 metres, planar, from the DoF-off render
    slices: np.ndarray  # (S, H, W, 3) float32, one per focus distance
    seconds: dict = field(default_factory=dict)  # time per phase


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Blender's per-render log lines ('Saved: ...'), which it writes to file descriptor 1
    from C code, so they don't scramble progress bars. Errors still surface as exceptions."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _socket(sockets, identifier: str):
    for s in sockets:
        if s.identifier == identifier:
            return s
    raise BlenderError(f"node socket {identifier!r} not found")


def _load_image(path, what: str):
    """An image file as Blender image data; BlenderError naming the file if it cannot be read."""
    import bpy

    if not path:
        raise BlenderError(f"{what} needs params['path']")
    try:
        return bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as exc:
        raise BlenderError(f"{what}: image {path} cannot be loaded ({exc})") from None


def read_exr_passes(path: Path) -> dict[str, np.ndarray]:
    """Passes of a Blender multi-layer EXR, top row first: {'Combined': (H, W, 4), 'Depth': (H, W),
    'Denoising Normal': (H, W, 3), ...}."""
    import OpenEXR

    out: dict[str, np.ndarray] = {}
    split: dict[str, dict[str, np.ndarray]] = {}
    with OpenEXR.File(str(path)) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                # 'ViewLayer.Combined' (RGBA packed by OpenEXR), 'ViewLayer.Depth.Z' or the three channels
                # 'ViewLayer.Denoising Normal.X', '.Y', '.Z' of one pass.
                pieces = name.split(".")
                key = pieces[1] if len(pieces) > 1 else pieces[0]
                pixels = np.array(channel.pixels, dtype=np.float32)
                if len(pieces) > 2:
                    split.setdefault(key, {})[pieces[2]] = pixels
                else:
                    out[key] = pixels
    for key, channels in split.items():
        names = [c for c in "RGBAXYZW" if c in channels] or sorted(channels)
        out[key] = channels[names[0]] if len(names) == 1 else np.stack([channels[c] for c in names], axis=-1)
    return out


# What --device accepts; 'gpu' takes the first of GPU_BACKENDS that has a device (OptiX runs fastest
# where RT cores exist and works without them, DESIGN.md).
DEVICES = ("cpu", "gpu", "cuda", "optix", "hip", "oneapi")
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI")


def enable_device(device: str) -> str:
    """Make Cycles render on ``device`` in this process; return what it renders on ('CPU' or e.g.
    'OPTIX: NVIDIA H200'). The bpy module starts from factory settings, so every process sets the Cycles
    preferences itself: backend, refreshed device list, which devices to use, and the scene's device.
    BlenderError naming what Cycles does see when the backend has no device."""
    import bpy

    if device not in DEVICES:
        raise BlenderError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    scene = bpy.context.scene
    if device == "cpu":
        scene.cycles.device = "CPU"
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    seen: dict[str, str] = {}
    for backend in GPU_BACKENDS if device == "gpu" else (device.upper(),):
        with _quiet_stdout():
            prefs.compute_device_type = backend
            prefs.refresh_devices()
        found = [d for d in prefs.devices if d.type == backend]
        seen.update({f"{d.name} ({d.type})": "" for d in prefs.devices})
        if found:
            for d in prefs.devices:
                d.use = d.type == backend
            scene.cycles.device = "GPU"
            return f"{backend}: {', '.join(d.name for d in found)}"
    wanted = "GPU" if device == "gpu" else device.upper()
    raise BlenderError(f"--device {device}: Cycles sees no {wanted} device (it sees: {', '.join(seen) or 'nothing'})")


def write_denoiser_exr(path: Path, layer: str, rgb: np.ndarray, albedo: np.ndarray, normal: np.ndarray,
                       samples: int) -> None:
    """One single-part EXR in the layout Cycles' standalone denoiser reads: <layer>.Combined.RGB,
    .Denoising Albedo.RGB, .Denoising Normal.XYZ, .Vector.XYZW (unused, zero) and the sample count."""
    import OpenEXR

    channels = {}
    for i, c in enumerate("RGB"):
        channels[f"{layer}.Combined.{c}"] = np.ascontiguousarray(rgb[..., i], dtype=np.float32)
        channels[f"{layer}.Denoising Albedo.{c}"] = np.ascontiguousarray(albedo[..., i], dtype=np.float32)
    for i, c in enumerate("XYZ"):
        channels[f"{layer}.Denoising Normal.{c}"] = np.ascontiguousarray(normal[..., i], dtype=np.float32)
    zero = np.zeros(rgb.shape[:2], dtype=np.float32)
    for c in "XYZW":
        channels[f"{layer}.Vector.{c}"] = zero
    header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage,
              f"cycles.{layer}.samples": str(int(samples))}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def _read_denoised(path: Path, layer: str) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        if f"{layer}.Combined" in channels:
            return np.array(channels[f"{layer}.Combined"].pixels, dtype=np.float32)[..., :3]
        return np.stack([np.array(channels[f"{layer}.Combined.{c}"].pixels, dtype=np.float32) for c in "RGB"], axis=-1)


class BlenderRenderer:
    """Renders SceneDescriptions with Cycles in this process. One instance per process.

    Takes render settings only: ``samples``, ``denoise`` and any other field of ``config.RenderSettings``
    as keyword arguments (``BlenderRenderer(**config.render_settings().to_dict())``), defaults from there.
    ``threads`` caps Cycles' CPU threads (0 = all cores), so that several worker processes can share the
    machine; ``device`` is one of ``DEVICES`` (``device_used`` says what Cycles renders on). ``workdir``
    holds the temporary EXR files (a private temporary folder by default).
    """

    def __init__(
        self,
        *,
        samples: int,
        denoise: bool,
        threads: int = 0,
        device: str = "cpu",
        workdir: str | os.PathLike | None = None,
        persistent_data: bool = True,
        **settings,
    ):
        try:
            import bpy  # noqa: F401  (lazy: only this class needs Blender)
        except ImportError as exc:
            raise BlenderError(
                f"cannot import bpy ({exc}); install the render extra: pip install 'focalstack[render]'"
            ) from None
        try:
            self.settings = RenderSettings(samples=samples, denoise=denoise, **settings).validate()
        except TypeError as exc:
            raise BlenderError(f"render settings: {exc}") from None
        except ConfigError as exc:
            raise BlenderError(f"render settings: {exc}") from None
        self.samples = samples
        self.denoise = denoise
        self.threads = threads
        self.device = device
        self._osl_cache: dict[str, str] = {}  # OSL source -> compiled bytecode
        self._plan: lightfield.SlicePlan | None = None  # where the last layout's rays land
        self.persistent_data = persistent_data
        self._tmp = tempfile.TemporaryDirectory(prefix="focalstack-render-", dir=workdir)
        self.workdir = Path(self._tmp.name)
        try:
            self._reset_blender()
            self.device_used = enable_device(device)  # after the factory reset, which resets preferences
        except BaseException:
            self._tmp.cleanup()
            raise

    # -- Blender session -------------------------------------------------------------------------
    def _reset_blender(self) -> None:
        import bpy

        with _quiet_stdout():
            bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.engine = "CYCLES"
        cyc = scene.cycles
        cyc.device = "CPU"
        cyc.samples = self.samples
        # Fixed sample count: adaptive sampling would make the noise level depend on the content.
        cyc.use_adaptive_sampling = False
        settings = self.settings
        # Cycles' own (in-render) denoiser, or none: standalone denoising runs on the stored passes after
        # the render (``_denoise``), so that the AiF image and the slices get their own prefilter.
        cyc.use_denoising = settings.denoise and settings.denoiser == "in_render"
        cyc.denoiser = "OPENIMAGEDENOISE"
        cyc.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        cyc.denoising_prefilter = settings.slice_denoise_prefilter().upper()
        cyc.denoising_quality = settings.denoise_quality.upper()
        cyc.use_light_tree = settings.light_tree
        # A box filter one pixel wide is the sensor pixel's own footprint: no extra blur beyond it,
        # so the rendered defocus is the blur circle the ground truth describes (DESIGN.md).
        cyc.pixel_filter_type = "BOX"
        cyc.filter_width = 1.0
        # Bounces: enough for glossy inter-reflection (mirrors), fewer than the default 12 for speed.
        cyc.max_bounces = 6
        cyc.diffuse_bounces = 3
        cyc.glossy_bounces = 4
        cyc.transmission_bounces = 4
        cyc.transparent_max_bounces = 4
        cyc.caustics_reflective = False
        cyc.caustics_refractive = False
        cyc.blur_glossy = 1.0
        scene.render.use_persistent_data = self.persistent_data
        scene.render.film_transparent = False
        if self.threads:
            scene.render.threads_mode = "FIXED"
            scene.render.threads = self.threads
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        scene.render.resolution_percentage = 100
        scene.view_layers[0].use_pass_z = True
        # Albedo and normal passes for the standalone denoiser.
        scene.view_layers[0].cycles.denoising_store_passes = settings.denoise and settings.denoiser == "standalone"
        image = scene.render.image_settings
        image.media_type = "MULTI_LAYER_IMAGE"  # must precede file_format in Blender 5.0
        image.file_format = "OPEN_EXR_MULTILAYER"
        image.color_depth = "32"
        image.exr_codec = "NONE"

        cam_data = bpy.data.cameras.new("focalstack_camera")
        cam = bpy.data.objects.new("focalstack_camera", cam_data)
        scene.collection.objects.link(cam)
        scene.camera = cam
        cam_data.sensor_fit = "HORIZONTAL"
        cam_data.clip_start = 1e-3
        cam_data.clip_end = 1e3
        cam_data.dof.aperture_blades = 0  # circular aperture
        cam_data.dof.aperture_ratio = 1.0
        cam_data.dof.aperture_rotation = 0.0
        self._camera = cam

    def _clear_scene(self) -> None:
        """Remove everything a scene created (all but the camera) so memory stays flat."""
        import bpy

        doomed = [o for o in bpy.data.objects if o != self._camera]
        for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.lights, bpy.data.images,
                           bpy.data.worlds, bpy.data.node_groups, bpy.data.textures):
            doomed.extend(collection)
        if doomed:
            bpy.data.batch_remove(doomed)
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)

    def close(self) -> None:
        try:
            self._clear_scene()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> "BlenderRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- building ----------------------------------------------------------------------------------
    def _build(self, desc: SceneDescription) -> None:
        import bpy

        scene = bpy.context.scene
        # Persistent data is for the S + 1 renders of one scene, which differ only in the camera. Across
        # scenes it carries state over (measured: a scene rendered right after another differed from the
        # same scene rendered first), so switching it off and on frees Cycles' session for each scene.
        scene.render.use_persistent_data = False
        scene.render.use_persistent_data = self.persistent_data
        cam = desc.camera
        scene.render.resolution_x = cam.width
        scene.render.resolution_y = cam.height
        scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
        # The noise pattern follows the scene seed: the same scene renders the same pixels.
        scene.cycles.seed = int(desc.seed % (2**31 - 1))
        cam_data = self._camera.data
        cam_data.lens = cam.focal_length_mm
        cam_data.sensor_width = cam.sensor_width_mm
        for obj in desc.objects:
            self._add_object(scene, obj)
        for i, light in enumerate(desc.lights):
            self._add_light(scene, light, i)
        self._set_world(scene, desc.world)

    def _add_object(self, scene, spec: ObjectSpec) -> None:
        import bpy

        verts, faces = build_mesh(spec.shape)
        mesh = bpy.data.meshes.new(spec.name)
        mesh.from_pydata(np.asarray(verts, dtype=np.float64).tolist(), [], np.asarray(faces).tolist())
        mesh.update()
        if spec.smooth:
            mesh.shade_smooth()
            # Keep caps and creases (cylinder rims, prism edges) sharp: smooth only curved parts.
            mesh.set_sharp_from_angle(angle=math.radians(40.0))
        else:
            mesh.shade_flat()
        obj = bpy.data.objects.new(spec.name, mesh)
        obj.location = spec.location
        obj.rotation_euler = spec.rotation
        obj.scale = spec.scale
        obj.data.materials.append(self._material(spec.material, spec.name, spec.scale))
        scene.collection.objects.link(obj)

    def _material(self, spec: MaterialSpec, name: str, scale) -> "bpy.types.Material":
        import bpy

        mat = bpy.data.materials.new(spec.name or f"{name}_material")
        nt = mat.node_tree
        nodes, links = nt.nodes, nt.links
        bsdf = next(n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
        bsdf.inputs["Base Color"].default_value = (*spec.base_color, 1.0)
        bsdf.inputs["Roughness"].default_value = spec.roughness
        bsdf.inputs["Metallic"].default_value = spec.metallic
        bsdf.inputs["Specular IOR Level"].default_value = spec.specular
        if not spec.textures:
            return mat
        coords = nodes.new("ShaderNodeTexCoord")
        color_out = None  # the running colour socket, None = the constant base colour
        rough_out = None
        first_factor = None
        for layer in spec.textures:
            factor, layer_color = self._texture_layer(nt, coords, layer, scale)
            first_factor = first_factor or factor
            over = nodes.new("ShaderNodeMix")
            over.data_type = "RGBA"
            _socket(over.inputs, "Factor_Float").default_value = layer.mix
            if color_out is None:
                _socket(over.inputs, "A_Color").default_value = (*spec.base_color, 1.0)
            else:
                links.new(color_out, _socket(over.inputs, "A_Color"))
            links.new(layer_color, _socket(over.inputs, "B_Color"))
            color_out = _socket(over.outputs, "Result_Color")
            if layer.affects_roughness:
                # roughness += affects * (factor - 0.5), clamped to [0, 1]
                centred = nodes.new("ShaderNodeMath")
                centred.operation = "MULTIPLY_ADD"
                links.new(factor, centred.inputs[0])
                centred.inputs[1].default_value = layer.affects_roughness
                centred.inputs[2].default_value = -0.5 * layer.affects_roughness
                total = nodes.new("ShaderNodeMath")
                total.operation = "ADD"
                total.use_clamp = True
                if rough_out is None:
                    total.inputs[0].default_value = spec.roughness
                else:
                    links.new(rough_out, total.inputs[0])
                links.new(centred.outputs[0], total.inputs[1])
                rough_out = total.outputs[0]
        links.new(color_out, bsdf.inputs["Base Color"])
        if rough_out is not None:
            links.new(rough_out, bsdf.inputs["Roughness"])
        if spec.bump_strength > 0 and first_factor is not None:
            bump = nodes.new("ShaderNodeBump")
            bump.inputs["Strength"].default_value = spec.bump_strength
            bump.inputs["Distance"].default_value = 0.002
            links.new(first_factor, bump.inputs["Height"])
            links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
        return mat

    def _texture_layer(self, nt, coords, layer: TextureLayer, scale):
        """Build one texture layer; return (factor socket, colour socket)."""
        if layer.kind not in _TEXTURE_NODES:
            raise BlenderError(f"texture kind {layer.kind!r}: expected one of {', '.join(_TEXTURE_NODES)}")
        node_type, factor_name = _TEXTURE_NODES[layer.kind]
        nodes, links = nt.nodes, nt.links
        tex = nodes.new(node_type)
        mapping = nodes.new("ShaderNodeMapping")
        # Object coordinates span the unscaled mesh; multiplying by the object's scale turns
        # 'repeats per metre' into repeats per local unit, so frequency is independent of object size.
        mapping.inputs["Scale"].default_value = tuple(layer.scale * float(s) for s in scale)
        params = dict(layer.params)
        offset = params.pop("offset", None)
        if offset is not None:
            mapping.inputs["Location"].default_value = tuple(offset)
        rotation = params.pop("rotation", None)
        if rotation is not None:
            mapping.inputs["Rotation"].default_value = tuple(rotation)
        links.new(coords.outputs["Object"], mapping.inputs["Vector"])
        links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        if "Scale" in tex.inputs:
            tex.inputs["Scale"].default_value = 1.0
        if layer.kind == "image":
            tex.image = _load_image(params.pop("path", None), "texture kind 'image'")
            tex.extension = "REPEAT"
        if layer.kind == "noise_ridged":
            tex.noise_type = "RIDGED_MULTIFRACTAL"
        for key, value in params.items():
            socket_name = key.replace("_", " ").title()
            if socket_name in tex.inputs:
                tex.inputs[socket_name].default_value = value
            elif hasattr(tex, key):
                setattr(tex, key, value)
            else:
                raise BlenderError(f"texture kind {layer.kind!r}: unknown parameter {key!r}")
        if layer.kind == "image":
            # Image colours are the texture; the two colours tint its luminance.
            grey = nodes.new("ShaderNodeRGBToBW")
            links.new(tex.outputs["Color"], grey.inputs["Color"])
            factor = grey.outputs["Val"]
        else:
            factor = tex.outputs[factor_name]
        lo, hi = layer.factor_range
        if (lo, hi) != (0.0, 1.0):
            # Stretch the factor's typical range to [0, 1] (normalised noise sits around 0.35-0.65).
            stretch = nodes.new("ShaderNodeMapRange")
            stretch.clamp = True
            links.new(factor, stretch.inputs["Value"])
            stretch.inputs["From Min"].default_value = lo
            stretch.inputs["From Max"].default_value = hi
            factor = stretch.outputs["Result"]
        ramp = nodes.new("ShaderNodeMix")
        ramp.data_type = "RGBA"
        ramp.clamp_factor = True
        links.new(factor, _socket(ramp.inputs, "Factor_Float"))
        _socket(ramp.inputs, "A_Color").default_value = (*layer.color_a, 1.0)
        _socket(ramp.inputs, "B_Color").default_value = (*layer.color_b, 1.0)
        return factor, _socket(ramp.outputs, "Result_Color")

    def _add_light(self, scene, spec: LightSpec, index: int) -> None:
        import bpy

        kind = spec.kind.upper()
        if kind not in ("POINT", "AREA", "SUN", "SPOT"):
            raise BlenderError(f"light kind {spec.kind!r}: expected point, area, sun or spot")
        data = bpy.data.lights.new(f"light_{index}", kind)
        data.energy = spec.energy
        data.color = spec.color
        if kind in ("POINT", "SPOT"):
            data.shadow_soft_size = spec.size
        elif kind == "AREA":
            data.shape = "SQUARE"
            data.size = spec.size
        else:
            data.angle = spec.size
        obj = bpy.data.objects.new(f"light_{index}", data)
        obj.location = spec.location
        obj.rotation_euler = spec.rotation
        scene.collection.objects.link(obj)

    def _set_world(self, scene, spec: WorldSpec) -> None:
        import bpy

        world = bpy.data.worlds.new("focalstack_world")
        scene.world = world
        nodes, links = world.node_tree.nodes, world.node_tree.links
        background = next(n for n in nodes if n.bl_idname == "ShaderNodeBackground")
        background.inputs["Strength"].default_value = spec.strength
        if spec.kind == "sky":
            sky = nodes.new("ShaderNodeTexSky")
            sky.sky_type = spec.params.get("sky_type", "PREETHAM")
            if "sun_direction" in spec.params:
                sky.sun_direction = spec.params["sun_direction"]
            if "turbidity" in spec.params:
                sky.turbidity = spec.params["turbidity"]
            links.new(sky.outputs["Color"], background.inputs["Color"])
        elif spec.kind == "gradient":
            # Mix horizon -> zenith by the view direction's height (z of the generated world coords).
            coords = nodes.new("ShaderNodeTexCoord")
            split = nodes.new("ShaderNodeSeparateXYZ")
            links.new(coords.outputs["Generated"], split.inputs["Vector"])
            mix = nodes.new("ShaderNodeMix")
            mix.data_type = "RGBA"
            mix.clamp_factor = True
            links.new(split.outputs["Z"], _socket(mix.inputs, "Factor_Float"))
            _socket(mix.inputs, "A_Color").default_value = (*spec.color_horizon, 1.0)
            _socket(mix.inputs, "B_Color").default_value = (*spec.color_zenith, 1.0)
            links.new(_socket(mix.outputs, "Result_Color"), background.inputs["Color"])
        elif spec.kind == "envmap":
            env = nodes.new("ShaderNodeTexEnvironment")
            env.image = _load_image(spec.params.get("path"), "world kind 'envmap'")
            env.projection = "EQUIRECTANGULAR"
            # The map's up (its +Z) is the scene's up (+Y, the camera's up): +90 degrees about X, then
            # turned about the vertical by params["rotation_z"].
            coords = nodes.new("ShaderNodeTexCoord")
            mapping = nodes.new("ShaderNodeMapping")
            mapping.inputs["Rotation"].default_value = (math.pi / 2, 0.0, float(spec.params.get("rotation_z", 0.0)))
            links.new(coords.outputs["Generated"], mapping.inputs["Vector"])
            links.new(mapping.outputs["Vector"], env.inputs["Vector"])
            links.new(env.outputs["Color"], background.inputs["Color"])
        else:
            raise BlenderError(f"world kind {spec.kind!r}: expected 'gradient', 'sky' or 'envmap'")

    # -- rendering ---------------------------------------------------------------------------------
    def _render_to(self, name: str) -> dict[str, np.ndarray]:
        import bpy

        path = self.workdir / f"{name}.exr"
        bpy.context.scene.render.filepath = str(path)
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True)
        if not path.exists():
            raise BlenderError(f"Cycles wrote no image for {name!r}")
        passes = read_exr_passes(path)
        path.unlink()
        return passes

    def _set_focus(self, desc: SceneDescription, k: int | None) -> None:
        """Camera for the DoF-off reference render (k None) or for slice k, exactly as the description's
        slice says: focus distance, lens, pose, and the f-stop that gives the camera's blur model."""
        from mathutils import Matrix  # ships with bpy

        cam = desc.camera
        camera = self._camera
        dof = camera.data.dof
        camera.data.type = "PERSP"
        if k is None:
            dof.use_dof = False
            camera.data.lens = cam.focal_length_mm
            camera.matrix_world = Matrix.Identity(4)
            return
        sl = cam.slices[k]
        camera.matrix_world = Matrix(sl.pose().tolist())
        camera.data.lens = sl.lens_mm
        dof.use_dof = True
        dof.focus_distance = sl.focus_distance
        dof.aperture_fstop = cam.aperture_fstop(k)

    def _set_prefilter(self, prefilter: str) -> None:
        import bpy

        bpy.context.scene.cycles.denoising_prefilter = prefilter.upper()

    def _denoise(self, passes: dict, samples: int, prefilter: str) -> np.ndarray:
        """OpenImageDenoise (Cycles' standalone denoiser) on a render's colour, albedo and normal passes."""
        import _cycles  # Cycles' Python module, ships with bpy
        import bpy

        scene = bpy.context.scene
        layer = scene.view_layers[0]
        self._set_prefilter(prefilter)
        src, dst = self.workdir / "denoise_in.exr", self.workdir / "denoise_out.exr"
        write_denoiser_exr(src, layer.name, passes["Combined"][..., :3], passes["Denoising Albedo"][..., :3],
                           passes["Denoising Normal"], samples)
        try:
            with _quiet_stdout():
                _cycles.denoise(bpy.context.preferences.as_pointer(), scene.as_pointer(), layer.as_pointer(),
                                input=[str(src)], output=[str(dst)])
        except (ValueError, RuntimeError) as exc:
            raise BlenderError(f"denoiser: {exc}") from None
        if not dst.exists():
            raise BlenderError("denoiser wrote no image")
        out = _read_denoised(dst, layer.name)
        src.unlink()
        dst.unlink()
        return out

    def _osl_bytecode(self, source: str) -> str:
        import _cycles

        if source not in self._osl_cache:
            src, dst = self.workdir / "camera.osl", self.workdir / "camera.oso"
            src.write_text(source)
            with _quiet_stdout():
                ok = _cycles.osl_compile(str(src), str(dst))
            if not ok or not dst.exists():
                raise BlenderError("light field: the OSL camera does not compile (is OSL in this Blender build?)")
            self._osl_cache = {source: dst.read_text()}  # one layout at a time: the cache stays small
            src.unlink()
            dst.unlink()
        return self._osl_cache[source]

    def _render_light_field(self, desc: SceneDescription) -> tuple[list[dict], int]:
        """Every slice from one render of sub-aperture views (``lightfield``): per slice, the colour, albedo
        and normal passes, and the number of samples each pixel holds on average."""
        import hashlib

        import bpy
        from mathutils import Matrix

        settings = self.settings
        layout = lightfield.LightFieldLayout.for_camera(desc.camera, settings.light_field_views)
        if self._plan is None or self._plan.layout != layout:
            self._plan = None  # free the old plan before building the new one
            self._plan = lightfield.SlicePlan(layout)
        bytecode = self._osl_bytecode(layout.osl_source())
        scene = bpy.context.scene
        render, cyc = scene.render, scene.cycles
        cam = self._camera.data
        self._camera.matrix_world = Matrix.Identity(4)
        cam.dof.use_dof = False
        cam.type = "CUSTOM"
        cam.custom_mode = "INTERNAL"
        cam.custom_bytecode = bytecode
        cam.custom_bytecode_hash = hashlib.md5(bytecode.encode()).hexdigest()
        render.resolution_x, render.resolution_y = layout.image_size
        # Each big pixel is one ray, traced at its centre: the sub-pixel position is the shader's.
        cyc.filter_width = 0.01
        cyc.samples = settings.light_field_samples
        # Blue-noise sampling spreads the lighting samples of neighbouring big pixels, which are the views
        # of one frame pixel, as one stratified set (measured: +0.3 dB after denoising over plain Sobol).
        pattern = cyc.sampling_pattern
        cyc.sampling_pattern = "BLUE_NOISE"
        try:
            passes = self._render_to("light_field")
        finally:
            cam.type = "PERSP"
            render.resolution_x, render.resolution_y = desc.camera.width, desc.camera.height
            cyc.filter_width = 1.0
            cyc.samples = settings.samples
            cyc.sampling_pattern = pattern
        names = ["Combined"] + (["Denoising Albedo", "Denoising Normal"] if settings.denoise else [])
        rays = {name: layout.split_views(passes.pop(name)[..., :3]) for name in names}
        del passes
        slices = []
        for k in range(len(desc.camera.slices)):
            slices.append({name: self._plan.splat(k, values) for name, values in rays.items()})
        return slices, settings.light_field_views * settings.light_field_samples

    def render(self, desc: SceneDescription) -> RenderedScene:
        """Build ``desc``, render AiF + depth and every slice, clear the scene; linear float results.

        ``seconds`` holds the time of each phase: build, render_aif_depth, render_slices, denoise, cleanup.
        """
        settings = self.settings
        standalone = settings.denoise and settings.denoiser == "standalone"
        seconds: dict[str, float] = {"denoise": 0.0}
        t0 = time.perf_counter()

        def denoised(passes: dict, samples: int, prefilter: str) -> np.ndarray:
            if not standalone:
                return passes["Combined"][..., :3]
            t = time.perf_counter()
            out = self._denoise(passes, samples, prefilter)
            seconds["denoise"] += time.perf_counter() - t
            return out

        try:
            self._build(desc)
            seconds["build"] = time.perf_counter() - t0

            t = time.perf_counter()
            self._set_focus(desc, None)
            self._set_prefilter(settings.aif_prefilter)
            passes = self._render_to("aif")
            seconds["render_aif_depth"] = time.perf_counter() - t
            if "Combined" not in passes or "Depth" not in passes:
                raise BlenderError(f"EXR passes {sorted(passes)}: expected Combined and Depth")
            depth = passes["Depth"]
            aif = denoised(passes, settings.samples, settings.aif_prefilter)
            del passes

            slices = []
            if settings.slices == "light_field" and lightfield.supports(desc.camera):
                t = time.perf_counter()
                shared, samples = self._render_light_field(desc)
                seconds["render_slices"] = time.perf_counter() - t
                for passes in shared:
                    slices.append(denoised(passes, samples, settings.slice_denoise_prefilter()))
            else:
                # Each slice its own thin-lens render: lens and pose as the description says.
                render_seconds = 0.0
                self._set_prefilter(settings.slice_denoise_prefilter())
                for k in range(len(desc.camera.focus_distances)):
                    t = time.perf_counter()
                    self._set_focus(desc, k)
                    passes = self._render_to(f"slice_{k}")
                    render_seconds += time.perf_counter() - t
                    slices.append(denoised(passes, settings.samples, settings.slice_denoise_prefilter()))
                seconds["render_slices"] = render_seconds
        finally:
            t = time.perf_counter()
            self._clear_scene()
            seconds["cleanup"] = time.perf_counter() - t
        seconds = {k: seconds[k] for k in ("build", "render_aif_depth", "render_slices", "denoise", "cleanup") if k in seconds}
        return RenderedScene(aif=aif, depth=depth, slices=np.stack(slices), seconds=seconds)
