"""Scene building: a ``SceneDescription``'s objects, materials and texture layers, lights and world
as Blender data in the current scene (bpy, imported lazily)."""

from __future__ import annotations

import math

import numpy as np

from focalstack.assets import build_mesh, check_unchanged

from ..scene import LightSpec, MaterialSpec, ObjectSpec, SceneDescription, TextureLayer, WorldSpec
from .session import BlenderError

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
        image = bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as exc:
        raise BlenderError(f"{what}: image {path} cannot be loaded ({exc})") from None
    # Opaque: the catalogue measured the colours (a texture's luminance range, a map's mean) without alpha, and
    # nothing here blends by it; Blender would otherwise let a transparent pixel's colour differ from the file's.
    image.alpha_mode = "NONE"
    return image


def add_scene_content(scene, desc: SceneDescription) -> None:
    """Every object, light and the world of ``desc`` into ``scene``. ValueError when an image file it uses
    (texture, environment map) changed since the scene was sampled (mesh files are checked as they load)."""
    for use in desc.info.assets:
        if use.kind != "mesh":
            check_unchanged(use.kind, use.path, use.sha256)
    for i, obj in enumerate(desc.objects):
        add_object(scene, obj, pass_index=i + 1 if obj.role == "object" else 0)
    for i, light in enumerate(desc.lights):
        add_light(scene, light, i)
    set_world(scene, desc.world)


def add_object(scene, spec: ObjectSpec, pass_index: int = 0) -> None:
    """``spec`` as a mesh object; ``pass_index`` is what Cycles' object-index pass shows of it."""
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
    obj.pass_index = pass_index
    obj.data.materials.append(material(spec.material, spec.name, spec.scale))
    scene.collection.objects.link(obj)


def material(spec: MaterialSpec, name: str, scale):
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
        factor, layer_color = texture_layer(nt, coords, layer, scale)
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


def texture_layer(nt, coords, layer: TextureLayer, scale):
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


def add_light(scene, spec: LightSpec, index: int) -> None:
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


def set_world(scene, spec: WorldSpec) -> None:
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
