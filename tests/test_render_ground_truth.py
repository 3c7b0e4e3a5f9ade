"""Ground truth rendered on request against scenes whose answer is known: normals of planes at known
angles, object indices of objects at known places; and nothing of it when not asked."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from render_fixtures import UNIFORM_WHITE_WORLD, fronto_plane, frustum_half_width, matte

from focalstack.dataset import schema
from focalstack.render.config import RenderConfig, RenderSettings
from focalstack.render.scene import CameraSpec, ObjectSpec, SceneDescription, ShapeSpec

pytestmark = pytest.mark.blender

CAMERA = CameraSpec(2.9, 3.1, 1.0, [0.3, 1.0], 32, 32)


def _render(desc, ground_truth=schema.ON_REQUEST_GROUND_TRUTH):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.pipeline import make_record

    config = RenderConfig(preset="test", render=RenderSettings(samples=2, denoise=False), ground_truth=list(ground_truth))
    with BlenderRenderer(samples=2, denoise=False, ground_truth=tuple(ground_truth)) as renderer:
        return make_record(desc, renderer.render(desc), config)


def _tilted_plane(depth_m: float, rotation: list[float]) -> SceneDescription:
    """One large plane through (0, 0, -depth_m), turned by ``rotation`` (XYZ Euler) from facing the camera."""
    half = 4 * frustum_half_width(depth_m, CAMERA)
    plane = ObjectSpec(
        "plane",
        ShapeSpec("plane"),
        [0.0, 0.0, -depth_m],
        rotation,
        [half, half, 1.0],
        matte(0.5),
        role="background",
        smooth=False,
    )
    return SceneDescription(1, "test-normals", CAMERA, [plane], [], UNIFORM_WHITE_WORLD)


@pytest.mark.parametrize(
    "rotation, want",
    [
        ([0.0, math.radians(30), 0.0], [math.sin(math.radians(30)), 0.0, math.cos(math.radians(30))]),  # faces right
        ([math.radians(-40), 0.0, 0.0], [0.0, math.sin(math.radians(40)), math.cos(math.radians(40))]),  # faces up
        ([0.0, 0.0, 0.0], [0.0, 0.0, 1.0]),  # faces the camera
    ],
)
def test_a_plane_at_a_known_angle_has_its_normal_in_every_pixel(rotation, want):
    record = _render(_tilted_plane(1.0, rotation))
    assert record.normals.shape == (32, 32, 3) and record.normals.dtype == np.float16
    np.testing.assert_allclose(record.normals.astype(np.float64), np.broadcast_to(want, (32, 32, 3)), atol=2e-3)
    # and the depth it shows agrees: a plane turned to face right (+x) recedes to the right, one turned to face
    # up (+y) recedes upwards (rows run top to bottom)
    grad_y, grad_x = np.gradient(record.depth.astype(np.float64))
    assert (grad_x > 0).all() if want[0] > 0.1 else np.abs(grad_x).max() < 1e-4
    assert (grad_y < 0).all() if want[1] > 0.1 else np.abs(grad_y).max() < 1e-4


def test_objects_at_known_places_have_their_index_and_the_background_none():
    z = 1.0
    w = frustum_half_width(z, CAMERA)
    objects = [
        fronto_plane("back", z + 0.5, -3 * w, 3 * w, -3 * w, 3 * w, matte(0.3)),  # background
        dataclasses.replace(fronto_plane("left", z, -2 * w, 0.0, -2 * w, 2 * w, matte(0.6)), role="object"),
        dataclasses.replace(fronto_plane("square", z - 0.2, 0.25 * w, 0.75 * w, -0.25 * w, 0.25 * w, matte(0.9)), role="object"),
    ]
    record = _render(SceneDescription(1, "test-objects", CAMERA, objects, [], UNIFORM_WHITE_WORLD))
    assert record.objects.dtype == np.uint16
    # pixel centres in units of the half width at depth z (the square is nearer: its own half width)
    x = (np.arange(32) + 0.5) / 16 - 1
    xs, ys = np.meshgrid(x, -x)
    near = frustum_half_width(z - 0.2, CAMERA) / w
    want = np.zeros((32, 32), np.uint16)
    want[xs < 0] = 2
    square = (np.abs(xs * near - 0.5) < 0.25) & (np.abs(ys * near) < 0.25)
    want[square] = 3
    # away from the borders (a pixel's one sample lands anywhere inside it)
    inside = np.ones((32, 32), bool)
    for mask in (xs < 0, square):
        edge = mask ^ np.roll(mask, 1, 0) | mask ^ np.roll(mask, -1, 0) | mask ^ np.roll(mask, 1, 1) | mask ^ np.roll(mask, -1, 1)
        inside &= ~edge
    np.testing.assert_array_equal(record.objects[inside], want[inside])
    assert (record.objects == 3).sum() >= square.sum() - 8 and set(np.unique(record.objects)) == {0, 2, 3}


def test_nothing_is_rendered_or_stored_unless_asked():
    record = _render(_tilted_plane(1.0, [0.0, 0.0, 0.0]), ground_truth=())
    assert record.normals is None and record.objects is None
    only = _render(_tilted_plane(1.0, [0.0, 0.0, 0.0]), ground_truth=("objects",))
    assert only.normals is None and (only.objects == 0).all()
