"""Rotations and camera geometry against Blender's own implementation (mathutils, bpy_extras), not against
a retyped copy of the same formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalstack.render import geometry
from focalstack.render.scene import CameraSpec, SliceSpec

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def mathutils():
    import bpy  # noqa: F401  (mathutils is importable once bpy is)
    import mathutils

    return mathutils


def random_eulers(n=50, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.uniform(-math.pi, math.pi, (n, 3))
    out[:, 1] /= 2
    return out


def test_euler_xyz_matches_mathutils(mathutils):
    for e in random_eulers():
        want = np.array(mathutils.Euler(tuple(e), "XYZ").to_matrix())
        np.testing.assert_allclose(geometry.euler_xyz_to_matrix(e), want, atol=1e-6)  # mathutils is float32
        # Euler angles are not unique: the inverse must give angles Blender turns into the same rotation
        back = geometry.matrix_to_euler_xyz(geometry.euler_xyz_to_matrix(e))
        np.testing.assert_allclose(np.array(mathutils.Euler(tuple(back), "XYZ").to_matrix()), want, atol=1e-6)


def test_axis_rotations_and_poses_match_mathutils(mathutils):
    for angle in (-2.0, 0.3, 1.2):
        for axis in "xyz":
            want = np.array(mathutils.Matrix.Rotation(angle, 3, axis.upper()))
            np.testing.assert_allclose(geometry.axis_rotation(axis, angle), want, atol=1e-6)
    e, t = random_eulers(1)[0], [0.1, -0.2, 0.3]
    want = mathutils.Matrix.LocRotScale(mathutils.Vector(t), mathutils.Euler(tuple(e), "XYZ"), None)
    np.testing.assert_allclose(geometry.pose_matrix(e, t), np.array(want), atol=1e-6)


def test_quaternions_and_random_rotations_match_mathutils(mathutils):
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        want = np.array(mathutils.Quaternion(tuple(q)).to_matrix())
        np.testing.assert_allclose(geometry.quaternion_to_matrix(*q), want, atol=1e-6)
        r = geometry.random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        axis = rng.normal(size=3)
        z = geometry.rotation_with_z(axis, spin=float(rng.uniform(0, 6)))
        np.testing.assert_allclose(z[:, 2], axis / np.linalg.norm(axis), atol=1e-12)
        assert np.linalg.det(z) == pytest.approx(1.0)


def _blender_camera(cam: CameraSpec, lens_mm: float, pose: np.ndarray):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = cam.width, cam.height
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("c")
    data.sensor_fit, data.sensor_width, data.lens = "HORIZONTAL", cam.sensor_width_mm, lens_mm
    obj = bpy.data.objects.new("c", data)
    scene.collection.objects.link(obj)
    import mathutils

    obj.matrix_world = mathutils.Matrix(pose.tolist())
    bpy.context.view_layer.update()
    return scene, obj


def _project(scene, obj, points) -> np.ndarray:
    """Blender's own projection of world points, as OpenCV pixel coordinates ((0, 0): top-left pixel centre)."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    w, h = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, obj, Vector(tuple(p)))
        out.append([ndc.x * w - 0.5, (1.0 - ndc.y) * h - 0.5])
    return np.array(out)


def test_camera_frustum_intrinsics_and_slice_homography_match_blenders_projection():
    cam = CameraSpec(2.9, 3.1, 1.0, [0.15, 0.7], 64, 48, defocus_model="thin_lens")
    cam.slices[1] = SliceSpec(0.7, 2.93, rotation=[0.01, -0.02, 0.015], translation=[0.002, -0.001, 0.003])
    rng = np.random.default_rng(2)
    tx, ty = cam.frustum_tangents()
    for k, sl in enumerate(cam.slices):
        # points on the slice's focus plane, inside the reference view
        xy = rng.uniform(-0.8, 0.8, (6, 2)) * [tx, ty] * sl.focus_distance
        points = np.c_[xy, np.full(6, -sl.focus_distance)]
        ref_scene, ref_cam = _blender_camera(cam, cam.focal_length_mm, np.eye(4))
        ref_px = _project(ref_scene, ref_cam, points)
        # intrinsics: the reference projection
        uvw = (cam.intrinsics() @ (points * [1, -1, -1]).T).T
        np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], ref_px, atol=1e-3)
        # the view's edge at depth 1 m projects to the image border
        edge = _project(ref_scene, ref_cam, [[tx, ty, -1.0]])[0]
        np.testing.assert_allclose(edge, [cam.width - 0.5, -0.5], atol=1e-3)
        # the homography maps reference pixels to where the slice's camera sees the same points
        slice_scene, slice_cam = _blender_camera(cam, sl.lens_mm, sl.pose())
        slice_px = _project(slice_scene, slice_cam, points)
        mapped = (cam.slice_homography(k) @ np.c_[ref_px, np.ones(6)].T).T
        np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], slice_px, atol=1e-3)
