"""Rotations in Blender's conventions, as pure numpy: the one place for rotation matrices.

Blender's XYZ Euler rotates about X first, then Y, then Z (world axes): R = Rz @ Ry @ Rx. Matrices act on
column vectors. The tests check these against Blender's own ``mathutils``.
"""

from __future__ import annotations

import math

import numpy as np

_AXES = {"x": 0, "y": 1, "z": 2}


def axis_rotation(axis: str, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about the world axis 'x', 'y' or 'z' (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    i = _AXES[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    m = np.eye(3)
    m[j, j], m[j, k], m[k, j], m[k, k] = c, -s, s, c
    return m


def euler_xyz_to_matrix(euler) -> np.ndarray:
    """Blender's XYZ Euler (radians) as a 3x3 matrix: R = Rz Ry Rx."""
    a, b, c = (float(x) for x in euler)
    return axis_rotation("z", c) @ axis_rotation("y", b) @ axis_rotation("x", a)


def matrix_to_euler_xyz(m: np.ndarray) -> list[float]:
    """Inverse of ``euler_xyz_to_matrix`` for a rotation matrix (Y angle in [-pi/2, pi/2])."""
    m = np.asarray(m, float)
    b = math.atan2(-m[2, 0], math.hypot(m[0, 0], m[1, 0]))
    if math.hypot(m[0, 0], m[1, 0]) > 1e-9:
        a = math.atan2(m[2, 1], m[2, 2])
        c = math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: Z folded into X
        a = math.atan2(-m[1, 2], m[1, 1])
        c = 0.0
    return [a, b, c]


def pose_matrix(euler, translation) -> np.ndarray:
    """4x4 rigid transform: XYZ Euler rotation, then translation (metres)."""
    pose = np.eye(4)
    pose[:3, :3] = euler_xyz_to_matrix(euler)
    pose[:3, 3] = np.asarray(translation, float)
    return pose


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3) (Shoemake's uniform unit quaternion)."""
    u1, u2, u3 = rng.random(3)
    x = math.sqrt(1 - u1) * math.sin(2 * math.pi * u2)
    y = math.sqrt(1 - u1) * math.cos(2 * math.pi * u2)
    z = math.sqrt(u1) * math.sin(2 * math.pi * u3)
    w = math.sqrt(u1) * math.cos(2 * math.pi * u3)
    return quaternion_to_matrix(w, x, y, z)


def quaternion_to_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    """3x3 rotation of the unit quaternion w + xi + yj + zk."""
    return np.array(
        [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    )  # fmt: skip


def rotation_with_z(axis, spin: float = 0.0) -> np.ndarray:
    """A rotation matrix whose third column (local +Z in world) is ``axis``, turned by ``spin`` about it."""
    z = np.asarray(axis, float)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(spin), math.sin(spin)
    return np.stack([c * x + s * y, -s * x + c * y, z], axis=1)
