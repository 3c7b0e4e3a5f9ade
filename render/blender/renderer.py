"""``BlenderRenderer``: one Blender session per process that builds each scene and renders it with
Cycles (the package docstring says how); the only part of it that keeps state."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import guides, lightfield
from ..config import BLENDER_PIXELS, ConfigError, RenderSettings
from ..scene import SceneDescription
from .build import add_scene_content
from .exr import read_denoised, read_exr_passes, write_denoiser_exr
from .session import BlenderError, enable_device, quiet_stdout

# Background pixels of the Z pass read 1e10; anything this far means "no surface".
NO_SURFACE_DEPTH = 1e9

# The Cycles pass of each ground truth rendered on request (schema.ON_REQUEST_GROUND_TRUTH), and the view
# layer's switch for it. Both come from the all-in-focus render, whose camera frame is the world's.
ON_REQUEST_PASSES = {"normals": ("Normal", "use_pass_normal"), "objects": ("Object Index", "use_pass_object_index")}


@dataclass
class RenderedScene:
    """Linear-light renders of one scene, as Cycles produced them."""

    aif: np.ndarray  # (H, W, 3) float32, DoF off
    depth: np.ndarray  # (H, W) float32 metres, planar, from the DoF-off render
    slices: np.ndarray  # (S, H, W, 3) float32, one per focus distance
    seconds: dict = field(default_factory=dict)  # time per phase
    # Ground truth rendered on request (None otherwise), from the DoF-off render:
    normals: np.ndarray | None = None  # (H, W, 3) float32 unit vectors, camera frame (+x right, +y up, +z back)
    objects: np.ndarray | None = None  # (H, W) int: index in the description's objects + 1, 0 = background


def unit_normals(normal_pass: np.ndarray) -> np.ndarray:
    """Cycles' normal pass (the mean over a pixel's samples) as unit vectors; a pixel with no surface
    (length 0) faces the camera."""
    n = np.asarray(normal_pass, dtype=np.float64)[..., :3]
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(length > 1e-6, n / np.maximum(length, 1e-12), [0.0, 0.0, 1.0]).astype(np.float32)


# Extra entries of a light-field slice's passes: the all-in-focus image blurred as the slice, and its weight.
AIF_BLURRED, AIF_WEIGHT = "focalstack AiF blurred", "focalstack AiF weight"


class BlenderRenderer:
    """Renders SceneDescriptions with Cycles in this process. One instance per process.

    Takes render settings only: ``samples``, ``denoise`` and any other field of ``config.RenderSettings``
    as keyword arguments (``BlenderRenderer(**config.render.to_dict())``), defaults from there.
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
        ground_truth: tuple[str, ...] = (),
        **settings,
    ):
        try:
            import bpy  # noqa: F401  (lazy: only this class needs Blender)
        except ImportError as exc:
            raise BlenderError(f"cannot import bpy ({exc}); install the render extra: pip install 'focalstack[render]'") from None
        try:
            self.settings = RenderSettings(samples=samples, denoise=denoise, **settings).validate()
        except TypeError as exc:
            raise BlenderError(f"render settings: {exc}") from None
        except ConfigError as exc:
            raise BlenderError(f"render settings: {exc}") from None
        unknown = sorted(set(ground_truth) - set(ON_REQUEST_PASSES))
        if unknown:
            raise BlenderError(
                f"ground truth {', '.join(unknown)}: not one the renderer makes on request "
                f"(expected some of {', '.join(ON_REQUEST_PASSES)})"
            )
        self.ground_truth = tuple(ground_truth)
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

        with quiet_stdout():
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
        # so the rendered defocus is the blur circle the ground truth describes (docs/design.md).
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
        self._set_output(scene)
        self._camera = self._add_camera(scene)

    def _set_output(self, scene) -> None:
        """Linear values out as they are rendered (no view transform), with depth (and the standalone
        denoiser's albedo and normal passes), into 32-bit multilayer EXR."""
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        scene.render.resolution_percentage = 100
        scene.view_layers[0].use_pass_z = True
        settings = self.settings
        scene.view_layers[0].cycles.denoising_store_passes = settings.denoise and settings.denoiser == "standalone"
        image = scene.render.image_settings
        image.media_type = "MULTI_LAYER_IMAGE"  # must precede file_format in Blender 5.0
        image.file_format = "OPEN_EXR_MULTILAYER"
        image.color_depth = "32"
        image.exr_codec = "NONE"

    @staticmethod
    def _add_camera(scene):
        """The one camera, with a circular aperture; the scene's description sets its optics per render."""
        import bpy

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
        return cam

    def _clear_scene(self) -> None:
        """Remove everything a scene created (all but the camera) so memory stays flat."""
        import bpy

        doomed = [o for o in bpy.data.objects if o != self._camera]
        for collection in (
            bpy.data.meshes,
            bpy.data.materials,
            bpy.data.lights,
            bpy.data.images,
            bpy.data.worlds,
            bpy.data.node_groups,
            bpy.data.textures,
        ):
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
        add_scene_content(scene, desc)

    # -- rendering ---------------------------------------------------------------------------------
    def _render_to(self, name: str) -> dict[str, np.ndarray]:
        import bpy

        path = self.workdir / f"{name}.exr"
        bpy.context.scene.render.filepath = str(path)
        with quiet_stdout():
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

    def _on_request_passes(self, on: bool) -> None:
        """Switch the passes of the ground truth rendered on request on (for the all-in-focus render) or off."""
        import bpy

        layer = bpy.context.scene.view_layers[0]
        for name in self.ground_truth:
            setattr(layer, ON_REQUEST_PASSES[name][1], on)

    def _set_denoising(self, denoising: tuple[str, str]) -> None:
        """OIDN's (prefilter, quality) for the next render or standalone denoise."""
        import bpy

        prefilter, quality = denoising
        bpy.context.scene.cycles.denoising_prefilter = prefilter.upper()
        bpy.context.scene.cycles.denoising_quality = quality.upper()

    def _denoise(self, passes: dict, samples: int, denoising: tuple[str, str]) -> np.ndarray:
        """OpenImageDenoise (Cycles' standalone denoiser) on a render's colour, albedo and normal passes."""
        import _cycles  # Cycles' Python module, ships with bpy
        import bpy

        scene = bpy.context.scene
        layer = scene.view_layers[0]
        self._set_denoising(denoising)
        src, dst = self.workdir / "denoise_in.exr", self.workdir / "denoise_out.exr"
        write_denoiser_exr(
            src, layer.name, passes["Combined"][..., :3], passes["Denoising Albedo"][..., :3], passes["Denoising Normal"], samples
        )
        try:
            with quiet_stdout():
                _cycles.denoise(
                    bpy.context.preferences.as_pointer(),
                    scene.as_pointer(),
                    layer.as_pointer(),
                    input=[str(src)],
                    output=[str(dst)],
                )
        except (ValueError, RuntimeError) as exc:
            raise BlenderError(f"denoiser: {exc}") from None
        if not dst.exists():
            raise BlenderError("denoiser wrote no image")
        out = read_denoised(dst, layer.name)
        src.unlink()
        dst.unlink()
        return out

    def _osl_bytecode(self, source: str) -> str:
        import _cycles

        if source not in self._osl_cache:
            src, dst = self.workdir / "camera.osl", self.workdir / "camera.oso"
            src.write_text(source)
            with quiet_stdout():
                ok = _cycles.osl_compile(str(src), str(dst))
            if not ok or not dst.exists():
                raise BlenderError("light field: the OSL camera does not compile (is OSL in this Blender build?)")
            self._osl_cache = {source: dst.read_text()}  # one layout at a time: the cache stays small
            src.unlink()
            dst.unlink()
        return self._osl_cache[source]

    def _render_light_field(self, desc: SceneDescription, aif_passes: dict, aif: np.ndarray) -> tuple[list[dict], int]:
        """Every slice from one render of sub-aperture views (``lightfield``): per slice, the colour, albedo
        and normal passes, and the number of samples each pixel holds on average. Unless light_field_guides =
        "rays", the albedo and normal are the all-in-focus render's (``aif_passes``, with its depth; for
        "aif_image" the albedo is the denoised image ``aif``) blurred by the slice's defocus, not the
        slice's own rays."""
        settings = self.settings
        layout = lightfield.LightFieldLayout.for_camera(desc.camera, settings.light_field_views)
        if max(layout.image_size) > BLENDER_PIXELS[1]:  # the views lie side by side in one Blender image
            raise ConfigError(
                f"light field: {settings.light_field_views} views of {layout.view_size[0]} x {layout.view_size[1]} px "
                f"need an image of {layout.image_size[0]} x {layout.image_size[1]} px, beyond Blender's "
                f"{BLENDER_PIXELS[1]}: render fewer views, a smaller --resolution, or --cycles-slices"
            )
        if self._plan is None or self._plan.layout != layout:
            self._plan = None  # free the old plan before building the new one
            self._plan = lightfield.SlicePlan(layout)
        guide_passes = ["Denoising Albedo", "Denoising Normal"] if settings.denoise else []
        aif_guides = bool(guide_passes) and settings.light_field_guides != "rays"
        passes = self._render_views(desc, layout, store_guides=not aif_guides)
        names = ["Combined"] + ([] if aif_guides else guide_passes)
        rays = {name: layout.split_views(passes.pop(name)[..., :3]) for name in names}
        del passes
        if aif_guides:
            # The all-in-focus image, albedo and normal blurred together, once per slice: the albedo and normal
            # guide the denoiser; with "aif_image" the albedo is the image itself (clipped to [0, 1]): a clean
            # picture of the very texture and shading the slice blurs, which the denoiser then keeps (measured:
            # +1.2 dB minimum at 32 views, +2 dB at 16; docs/benchmarks.md). The blurred image is also the slice
            # itself where it is in focus (``guides.in_focus_weight``).
            own_albedo = settings.light_field_guides != "aif_image"
            layers = [aif, aif_passes[guide_passes[1]][..., :3]] + ([aif_passes[guide_passes[0]][..., :3]] if own_albedo else [])
            blurred = guides.slice_guides(np.concatenate(layers, axis=-1), aif_passes["Depth"], desc.camera)
            radii = [np.abs(d) / 2 for d in desc.camera.defocus_maps(aif_passes["Depth"])]
        slices = []
        for k in range(len(desc.camera.slices)):
            passes_k = {name: self._plan.splat(k, values) for name, values in rays.items()}
            if aif_guides:
                image = blurred[k][..., 0:3]
                albedo = blurred[k][..., 6:9] if own_albedo else np.clip(image, 0.0, 1.0)
                passes_k.update({guide_passes[0]: albedo, guide_passes[1]: blurred[k][..., 3:6]})
                passes_k.update({AIF_BLURRED: image, AIF_WEIGHT: guides.in_focus_weight(radii[k])})
            slices.append(passes_k)
        return slices, settings.light_field_views * settings.light_field_samples

    def _render_views(self, desc: SceneDescription, layout, store_guides: bool) -> dict:
        """One Cycles render of every sub-aperture view (the light-field camera's OSL shader), the scene's
        own camera restored after it. Without ``store_guides`` only the colour is read back: no depth or
        denoising passes to accumulate, write and read for the (views x larger) light-field image."""
        import hashlib

        import bpy
        from mathutils import Matrix

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
        cyc.samples = self.settings.light_field_samples
        # Blue-noise sampling spreads the lighting samples of neighbouring big pixels, which are the views
        # of one frame pixel, as one stratified set (measured: +0.3 dB after denoising over plain Sobol).
        pattern = cyc.sampling_pattern
        cyc.sampling_pattern = "BLUE_NOISE"
        layer = scene.view_layers[0]
        store = layer.cycles.denoising_store_passes, layer.use_pass_z
        if not store_guides:
            layer.cycles.denoising_store_passes = False
            layer.use_pass_z = False
        try:
            return self._render_to("light_field")
        finally:
            cam.type = "PERSP"
            render.resolution_x, render.resolution_y = desc.camera.width, desc.camera.height
            cyc.filter_width = 1.0
            cyc.samples = self.settings.samples
            cyc.sampling_pattern = pattern
            layer.cycles.denoising_store_passes, layer.use_pass_z = store

    def _on_request_ground_truth(self, passes: dict) -> dict[str, np.ndarray]:
        """The ground truth asked for on request (``self.ground_truth``), from the AiF render's passes."""
        extra = {name: passes.get(ON_REQUEST_PASSES[name][0]) for name in self.ground_truth}
        if any(v is None for v in extra.values()):
            raise BlenderError(
                f"EXR passes {sorted(passes)}: expected {', '.join(ON_REQUEST_PASSES[n][0] for n in self.ground_truth)}"
            )
        if "normals" in extra:
            extra["normals"] = unit_normals(extra["normals"])
        if "objects" in extra:
            extra["objects"] = np.rint(extra["objects"]).astype(np.int64)
        return extra

    def _render_cycles_slices(self, desc: SceneDescription, denoised) -> tuple[list[np.ndarray], float]:
        """Each slice its own thin-lens render (lens and pose as the description says), through ``denoised``;
        and the seconds spent rendering (the denoiser's are its own)."""
        denoising = self.settings.slice_denoising()
        self._set_denoising(denoising)
        slices, render_seconds = [], 0.0
        for k in range(len(desc.camera.focus_distances)):
            t = time.perf_counter()
            self._set_focus(desc, k)
            passes = self._render_to(f"slice_{k}")
            render_seconds += time.perf_counter() - t
            slices.append(denoised(passes, self.settings.samples, denoising))
        return slices, render_seconds

    def render(self, desc: SceneDescription) -> RenderedScene:
        """Build ``desc``, render AiF + depth and every slice, clear the scene; linear float results.

        ``seconds`` holds the time of each phase: build, render_aif_depth, render_slices, denoise, cleanup.
        """
        settings = self.settings
        standalone = settings.denoise and settings.denoiser == "standalone"
        seconds: dict[str, float] = {"denoise": 0.0}
        t0 = time.perf_counter()

        def denoised(passes: dict, samples: int, denoising: tuple[str, str]) -> np.ndarray:
            if not standalone:
                return passes["Combined"][..., :3]
            t = time.perf_counter()
            out = self._denoise(passes, samples, denoising)
            seconds["denoise"] += time.perf_counter() - t
            return out

        try:
            self._build(desc)
            seconds["build"] = time.perf_counter() - t0

            t = time.perf_counter()
            self._set_focus(desc, None)
            self._set_denoising(settings.aif_denoising())
            self._on_request_passes(True)
            try:
                passes = self._render_to("aif")
            finally:
                self._on_request_passes(False)
            seconds["render_aif_depth"] = time.perf_counter() - t
            extra = self._on_request_ground_truth(passes)
            if "Combined" not in passes or "Depth" not in passes:
                raise BlenderError(f"EXR passes {sorted(passes)}: expected Combined and Depth")
            depth = passes["Depth"]
            aif = denoised(passes, settings.samples, settings.aif_denoising())
            aif_passes = passes  # its albedo, normal and depth guide the light-field slices' denoiser

            slices = []
            if settings.slices == "light_field" and lightfield.supports(desc.camera):
                t = time.perf_counter()
                shared, samples = self._render_light_field(desc, aif_passes, aif)
                seconds["render_slices"] = time.perf_counter() - t
                for passes in shared:
                    image = denoised(passes, samples, settings.slice_denoising())
                    if standalone and AIF_WEIGHT in passes:  # in focus: the all-in-focus image, blurred as the slice
                        weight = passes[AIF_WEIGHT][..., None]
                        image = image * (1 - weight) + passes[AIF_BLURRED] * weight
                    slices.append(image)
            else:
                slices, seconds["render_slices"] = self._render_cycles_slices(desc, denoised)
        finally:
            t = time.perf_counter()
            self._clear_scene()
            seconds["cleanup"] = time.perf_counter() - t
        seconds = {k: seconds[k] for k in ("build", "render_aif_depth", "render_slices", "denoise", "cleanup") if k in seconds}
        return RenderedScene(aif=aif, depth=depth, slices=np.stack(slices), seconds=seconds, **extra)
