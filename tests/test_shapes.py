"""Procedural meshes (focalstack.assets): watertight, outward-wound, unit-sized, deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalstack.assets import (
    MAX_TRIANGLES,
    SHAPE_FAMILIES,
    SHAPE_GROUPS,
    build_mesh,
    families_in_group,
    resolve_params,
    sample_shape_params,
)
from focalstack.render.scene import ShapeSpec

CLOSED = [name for name, fam in SHAPE_FAMILIES.items() if fam.closed]


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = (v[f[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    a, b, c = (v[f[:, i]].astype(np.float64) for i in range(3))
    return np.cross(b - a, c - a)


def directed_edges(f: np.ndarray) -> np.ndarray:
    return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def assert_closed_and_consistent(f: np.ndarray) -> None:
    """Every edge is shared by exactly two faces that traverse it in opposite directions."""
    edges = directed_edges(f)
    as_set = {tuple(e) for e in edges.tolist()}
    assert len(as_set) == len(edges), "a directed edge occurs twice: faces overlap or winding flips"
    missing = [e for e in as_set if (e[1], e[0]) not in as_set]
    assert not missing, f"{len(missing)} edges have no opposite half-edge: mesh is open"


def param_sets(name: str, n: int = 4) -> list[dict]:
    rng = np.random.default_rng(12345)
    return [resolve_params(name)] + [sample_shape_params(name, rng) for _ in range(n)]


ALL_CASES = [(name, params) for name in SHAPE_FAMILIES for params in param_sets(name)]
CLOSED_CASES = [(name, params) for name, params in ALL_CASES if name in CLOSED]


@pytest.mark.parametrize("name,params", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_mesh_arrays_fit_unit_cube(name, params):
    v, f = build_mesh(ShapeSpec(name, params))
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 3
    assert f.dtype == np.int32 and f.ndim == 2 and f.shape[1] == 3
    assert f.min() >= 0 and f.max() < len(v)
    assert len(np.unique(f)) == len(v), "unused vertices"
    assert 0 < len(f) <= 6000, "keep default meshes modest"
    # inside [-1, 1]^3, centred on the bounding box, largest half-extent exactly 1
    lo, hi = v.min(axis=0), v.max(axis=0)
    assert np.all(lo >= -1 - 1e-6) and np.all(hi <= 1 + 1e-6)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)
    assert abs((hi - lo).max() / 2 - 1.0) < 1e-6
    # no degenerate (zero-area) triangles
    assert np.linalg.norm(face_normals(v, f), axis=1).min() > 1e-7


@pytest.mark.parametrize("name,params", CLOSED_CASES, ids=[c[0] for c in CLOSED_CASES])
def test_closed_meshes_are_watertight_and_wound_outwards(name, params):
    v, f = build_mesh(ShapeSpec(name, params))
    assert_closed_and_consistent(f)
    assert signed_volume(v, f) > 0.05, "counter-clockwise seen from outside gives a positive volume"


def test_winding_checks_catch_a_flipped_mesh():
    v, f = build_mesh(ShapeSpec("sphere"))
    assert signed_volume(v, f[:, ::-1]) < 0
    g = f.copy()
    g[0] = g[0, ::-1]  # one face flipped: its edges now run the same way as their neighbours'
    with pytest.raises(AssertionError):
        assert_closed_and_consistent(g)


def test_star_shaped_families_face_away_from_their_centre():
    # For shapes that are star-shaped about the origin every face normal points away from it.
    for name in ("sphere", "blob", "superquadric", "rounded_box", "capsule", "cube"):
        for params in param_sets(name, 2):
            v, f = build_mesh(ShapeSpec(name, params))
            centroids = v[f].astype(np.float64).mean(axis=1)
            dots = np.einsum("ij,ij->i", face_normals(v, f), centroids)
            assert (dots > 0).mean() > 0.999, name


def test_known_volumes():
    cube = build_mesh(ShapeSpec("cube"))
    assert signed_volume(*cube) == pytest.approx(8.0)
    sphere = build_mesh(ShapeSpec("sphere", {"kind": "ico", "subdivisions": 4}))
    assert signed_volume(*sphere) == pytest.approx(4 / 3 * math.pi, rel=0.01)
    uv = build_mesh(ShapeSpec("sphere", {"kind": "uv", "segments": 64, "rings": 32}))
    assert signed_volume(*uv) == pytest.approx(4 / 3 * math.pi, rel=0.01)
    cyl = build_mesh(ShapeSpec("cylinder", {"segments": 128}))
    assert signed_volume(*cyl) == pytest.approx(2 * math.pi, rel=0.01)
    cone = build_mesh(ShapeSpec("cone", {"top_ratio": 0.0, "segments": 128}))
    assert signed_volume(*cone) == pytest.approx(2 * math.pi / 3, rel=0.01)
    # torus with tube radius r = k R, fitted so that R + r = 1: volume 2 pi^2 R r^2
    k = 0.25
    torus = build_mesh(ShapeSpec("torus", {"minor_ratio": k, "major_segments": 128, "minor_segments": 64}))
    big_r = 1 / (1 + k)
    assert signed_volume(*torus) == pytest.approx(2 * math.pi**2 * big_r * (k * big_r) ** 2, rel=0.01)
    assert np.abs(torus[0][:, 2]).max() == pytest.approx(k * big_r, rel=1e-4)


def test_plane_faces_plus_z_and_subdivides():
    v, f = build_mesh(ShapeSpec("plane"))
    assert len(f) == 2 and np.all(v[:, 2] == 0)
    assert np.all(face_normals(v, f)[:, 2] > 0)
    v, f = build_mesh(ShapeSpec("plane", {"subdivisions": 3}))
    assert len(f) == 2 * 4 * 4
    assert np.all(face_normals(v, f)[:, 2] > 0)
    np.testing.assert_allclose(face_normals(v, f)[:, 2].sum() / 2, 4.0)  # total area of [-1, 1]^2


def test_build_mesh_is_deterministic_and_seeded_by_params_only():
    for name in SHAPE_FAMILIES:
        params = param_sets(name, 1)[-1]
        v1, f1 = build_mesh(ShapeSpec(name, dict(params)))
        np.random.seed(99)  # global random state must not matter
        v2, f2 = build_mesh(ShapeSpec(name, dict(params)))
        assert np.array_equal(v1, v2) and np.array_equal(f1, f2), name
    a = build_mesh(ShapeSpec("blob", {"noise_seed": 1}))[0]
    b = build_mesh(ShapeSpec("blob", {"noise_seed": 2}))[0]
    assert np.abs(a - b).max() > 0.05, "the blob's noise seed changes its shape"
    a = build_mesh(ShapeSpec("lathe", {"profile_seed": 1}))[0]
    b = build_mesh(ShapeSpec("lathe", {"profile_seed": 2}))[0]
    assert np.abs(a - b).max() > 0.05


def test_shape_parameters_change_the_silhouette():
    thin = build_mesh(ShapeSpec("torus", {"minor_ratio": 0.1}))[0]
    fat = build_mesh(ShapeSpec("torus", {"minor_ratio": 0.5}))[0]
    assert np.abs(thin[:, 2]).max() < 0.1 < 0.3 < np.abs(fat[:, 2]).max()
    boxy = build_mesh(ShapeSpec("superquadric", {"e1": 0.2, "e2": 0.2}))
    round_ = build_mesh(ShapeSpec("superquadric", {"e1": 1.0, "e2": 1.0}))
    assert signed_volume(*boxy) > 7.0 and signed_volume(*round_) == pytest.approx(4 / 3 * math.pi, rel=0.03)
    twisted = build_mesh(ShapeSpec("prism", {"twist": 1.5}))[0]
    straight = build_mesh(ShapeSpec("prism", {"twist": 0.0}))[0]
    assert not np.allclose(twisted, straight)


def test_bad_shapes_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="unknown shape family 'dodecahedron'"):
        build_mesh(ShapeSpec("dodecahedron"))
    with pytest.raises(ValueError, match="unknown parameter"):
        build_mesh(ShapeSpec("torus", {"minr_ratio": 0.2}))
    with pytest.raises(ValueError, match="minor_ratio"):
        build_mesh(ShapeSpec("torus", {"minor_ratio": 1.5}))
    with pytest.raises(ValueError, match="kind"):
        build_mesh(ShapeSpec("sphere", {"kind": "cube"}))
    with pytest.raises(ValueError, match="integer"):
        build_mesh(ShapeSpec("prism", {"sides": 4.5}))
    assert 20 * 4**5 > MAX_TRIANGLES
    with pytest.raises(ValueError, match="more than"):
        build_mesh(ShapeSpec("sphere", {"kind": "ico", "subdivisions": 5}))


def test_catalogue_ranges_are_consistent():
    assert set(families_in_group(*SHAPE_GROUPS)) == set(SHAPE_FAMILIES)
    assert {"cube", "sphere", "cylinder", "cone", "torus"} <= set(families_in_group("primitive"))
    assert {"blob", "superquadric"} <= set(families_in_group("procedural"))
    for name, fam in SHAPE_FAMILIES.items():
        assert fam.group in SHAPE_GROUPS
        for pname, p in fam.params.items():
            p.check(name, pname, p.default)  # defaults are valid
            if p.sample is None:
                continue
            if p.kind == "choice":
                assert set(p.sample) <= set(p.limits)
            else:
                assert p.limits[0] <= p.sample[0] <= p.sample[1] <= p.limits[1], (name, pname)


def test_sample_shape_params_respects_ranges_and_overrides():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = sample_shape_params("torus", rng)
        assert 0.15 <= p["minor_ratio"] <= 0.5
        assert set(p) == set(SHAPE_FAMILIES["torus"].params)  # every parameter is written out
        p = sample_shape_params("torus", rng, {"minor_ratio": [0.6, 0.7]})
        assert 0.6 <= p["minor_ratio"] <= 0.7
        p = sample_shape_params("sphere", rng, {"kind": ["uv"]})
        assert p["kind"] == "uv"
        p = sample_shape_params("prism", rng, {"sides": [3, 3]})
        assert p["sides"] == 3 and isinstance(p["sides"], int)
    a = sample_shape_params("blob", np.random.default_rng(5))
    b = sample_shape_params("blob", np.random.default_rng(5))
    assert a == b
    with pytest.raises(ValueError, match="minor_ratio"):
        sample_shape_params("torus", rng, {"minor_ratio": [0.5, 0.2]})
    with pytest.raises(ValueError, match="no parameter"):
        sample_shape_params("torus", rng, {"radius": [0.5, 0.6]})
