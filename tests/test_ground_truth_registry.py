"""Ground truth as a registry: every kind the schema declares travels through every path (write, read,
validate, export, shard merge, training samples), files written before a kind existed read it as absent,
and the kinds rendered on request cost nothing when off."""

from __future__ import annotations

import json

import dataset_fixtures as fx
import h5py
import numpy as np
import pytest

from focalstack.dataset import FocalStackFile, provenance, schema
from focalstack.dataset.fod500 import export_fod500
from focalstack.dataset.schema import DatasetError
from focalstack.dataset.validate import validate_file

ON_REQUEST = schema.ON_REQUEST_GROUND_TRUTH


def _write(path, n=3, requested=ON_REQUEST):
    with fx.open_writer(path, requested=requested) as w:
        for i in range(n):
            w.append(fx.make_record(i, requested=requested))
    return path


def test_every_ground_truth_has_one_schema_entry_with_its_version():
    names = [a.name for a in schema.WRITTEN_ARRAYS if a.presence == "ground_truth"]
    assert names == list(schema.GROUND_TRUTH_NAMES) and len(set(names)) == len(names)
    assert set(ON_REQUEST) == {"normals", "objects"}
    assert all(schema.SPECS[n].since == schema.SCHEMA_VERSION == 3 for n in ON_REQUEST)
    assert schema.declared_in(2) == tuple(n for n in schema.GROUND_TRUTH_NAMES if n not in ON_REQUEST)
    assert schema.SPECS["normals"].flip_negates == (0, 1) and schema.SPECS["depth"].flip_negates == (None, None)


def test_a_schema_2_file_reads_with_the_new_ground_truth_absent(tmp_path):
    """What a schema-2 writer made: version 2 and a declaration that does not name normals or objects."""
    path = _write(tmp_path / "v2.h5", requested=())
    with h5py.File(path, "r+") as f:
        declared = json.loads(f.attrs["ground_truth"])
        for name in ON_REQUEST:
            del declared[name]
        f.attrs["ground_truth"] = json.dumps(declared)
        f.attrs["schema_version"] = 2
    with FocalStackFile(path) as f:
        assert f.schema_version == 2
        assert not f.ground_truth["normals"].present and not f.ground_truth["objects"].present
        assert f[0].normals is None and f[0].objects is None and not f.has("normals")
        np.testing.assert_array_equal(f[1].depth, fx.make_record(1).depth)
    report = validate_file(path, full=True)
    assert report.valid, report.problems


def test_a_declaration_must_still_name_every_ground_truth_of_its_version():
    declared = {k: v.to_dict() for k, v in provenance.rendered_declaration("cycles").items()}
    del declared["aif"]
    with pytest.raises(DatasetError, match="missing aif"):
        provenance.from_json(json.dumps(declared), version=2)
    # normals and objects are absent when a writer does not name them (importers name only what they have)
    del declared["normals"]
    declared["aif"] = {"source": "rendered"}
    assert not provenance.from_json(json.dumps(declared), version=3)["normals"].present


def test_ground_truth_off_is_not_stored(tmp_path):
    path = _write(tmp_path / "off.h5", requested=())
    with h5py.File(path) as f:
        assert not set(ON_REQUEST) & set(f)
        assert all(json.loads(f.attrs["ground_truth"])[n] == {"source": "absent"} for n in ON_REQUEST)
    with fx.open_writer(tmp_path / "refuse.h5") as w, pytest.raises(DatasetError, match="declares it absent"):
        w.append(fx.make_record(0, requested=("normals",)))


@pytest.mark.parametrize("requested", [("normals",), ("objects",), ON_REQUEST])
def test_ground_truth_on_request_round_trips_through_write_read_and_validate(tmp_path, requested):
    path = _write(tmp_path / "on.h5", requested=requested)
    with FocalStackFile(path) as f:
        for i in range(3):
            want = fx.make_record(i, requested=requested)
            for name in ON_REQUEST:
                got = getattr(f[i], name)
                if name in requested:
                    assert got.dtype == np.dtype(schema.SPECS[name].dtype)
                    np.testing.assert_array_equal(got, getattr(want, name), err_msg=name)
                else:
                    assert got is None
    report = validate_file(path, full=True)
    assert report.valid, report.problems


def test_validate_finds_normals_that_are_not_unit_and_objects_the_scene_lacks(tmp_path):
    path = _write(tmp_path / "bad.h5")
    with h5py.File(path, "r+") as f:
        normals = f["normals"][1]
        normals[3, 4] = [0.5, 0, 0]
        f["normals"][1] = normals
        objects = f["objects"][2]
        objects[0, 0] = 7  # the fixture's scenes have one object
        f["objects"][2] = objects
    problems = validate_file(path, full=True).problems
    assert any(p.startswith("scene 1:") and "'normals' has 1 pixel(s) that are not unit" in p for p in problems), problems
    assert any(p.startswith("scene 2:") and "'objects' holds index 7, but the scene has 1 object" in p for p in problems), (
        problems
    )


def test_ground_truth_on_request_reaches_the_export_and_a_merged_file(tmp_path):
    from focalstack.render.shards import merge_shards, shard_path

    path = _write(tmp_path / "a.h5", n=4)
    export_fod500(path, tmp_path / "out")
    extra = np.load(tmp_path / "out" / "extra" / "000002Extra.npz")
    want = fx.make_record(2, requested=ON_REQUEST)
    for name in ON_REQUEST:
        np.testing.assert_array_equal(extra[name], getattr(want, name), err_msg=name)
    # two shards of two scenes each, merged as --workers does
    merged = tmp_path / "merged.h5"
    for start in (0, 2):
        shard = shard_path(merged, start, start + 2)
        shard.parent.mkdir(exist_ok=True)
        with fx.open_writer(shard, requested=ON_REQUEST) as w, FocalStackFile(path) as f:
            for i in range(start, start + 2):
                w.append(f[i])
    with fx.open_writer(merged, requested=ON_REQUEST) as w:
        merge_shards(w, merged, 4)
    with h5py.File(path) as a, h5py.File(merged) as b:
        for name in ON_REQUEST:
            np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


def test_training_samples_flip_normals_with_the_image(tmp_path):
    """A horizontal flip mirrors x: the normals' x component changes sign, y and z do not (vertical: y)."""
    from focalstack.train.data import transform_pixels
    from focalstack.train.plan import SampleKey

    spec = schema.SPECS["normals"]
    normals = fx.make_record(0, requested=("normals",)).normals
    plain = SampleKey(0, 0, (0,))
    got = transform_pixels(normals, spec, plain, None, 0).numpy()
    np.testing.assert_array_equal(got, np.moveaxis(normals, -1, 0).astype(np.float32))
    flipped = transform_pixels(normals, spec, SampleKey(0, 0, (0,), flip_h=True, flip_v=True, crop=(2, 3, 8, 9)), None, 0).numpy()
    want = normals[2:10, 3:12][::-1, ::-1].astype(np.float32) * [-1, -1, 1]
    np.testing.assert_array_equal(flipped, np.moveaxis(want, -1, 0))
    depth = fx.make_record(0).depth  # a scalar map only moves
    d = transform_pixels(depth, schema.SPECS["depth"], SampleKey(0, 0, (0,), flip_h=True), None, 0).numpy()
    np.testing.assert_array_equal(d, depth[:, ::-1])


def _sphere_normals(size: int, row: float, col: float, radius: float) -> np.ndarray:
    """The normals an orthographic camera sees on a sphere centred at pixel (row, col): +x right, +y up
    (against the rows), +z towards the camera; (0, 0, 1) off the sphere."""
    r, c = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (c - col) / radius, -(r - row) / radius
    z = np.sqrt(np.clip(1 - x * x - y * y, 0, None))
    inside = (x * x + y * y) < 1
    return np.where(inside[..., None], np.stack([x, y, z], -1), [0.0, 0.0, 1.0]).astype(np.float32)


def test_a_transposed_sphere_has_the_normals_of_the_sphere_it_shows():
    """Transposing the image of a sphere centred at (row 5, column 11) shows a sphere centred at (11, 5):
    its normals must be that sphere's, which a transpose that only moved pixels (or swapped x and y without
    their signs) would get wrong."""
    from focalstack.train.data import transform_pixels
    from focalstack.train.plan import SampleKey

    spec = schema.SPECS["normals"]
    normals = _sphere_normals(16, 5, 11, 4.5)
    for flip_h, flip_v in ((False, False), (True, False), (True, True)):
        key = SampleKey(0, 0, (0,), flip_h=flip_h, flip_v=flip_v, transpose=True)
        got = np.moveaxis(transform_pixels(normals, spec, key, None, 0).numpy(), 0, -1)
        row, col = (15 - 5 if flip_v else 5), (15 - 11 if flip_h else 11)  # where the flips put the centre
        np.testing.assert_allclose(got, _sphere_normals(16, col, row, 4.5), atol=1e-6, err_msg=f"{flip_h=} {flip_v=}")


def test_training_reads_only_the_ground_truth_its_loss_terms_need():
    from focalstack.train.data import PIXEL_ARRAYS, TARGETS, TRAINING_GROUND_TRUTH
    from focalstack.train.losses import LOSS_TERMS

    assert TRAINING_GROUND_TRUTH == {"depth"} | {t.needs for t in LOSS_TERMS}
    assert not set(ON_REQUEST) & set(PIXEL_ARRAYS)  # no term reads them: never decoded for training
    assert set(TARGETS) == TRAINING_GROUND_TRUTH - {"depth"}


def test_a_preset_or_the_command_line_asks_for_ground_truth_and_bad_names_are_one_line(tmp_path):
    from click.testing import CliRunner

    from focalstack.render.cli import main
    from focalstack.render.config import ConfigError, load_preset, parse_ground_truth

    preset = tmp_path / "p.toml"
    preset.write_text('base = "fod500"\n[render]\nground_truth = ["objects"]\n')
    assert load_preset(str(preset)).validate().ground_truth == ["objects"]
    assert parse_ground_truth("objects, normals") == ["normals", "objects"] and parse_ground_truth("none") == []
    for bad in ("depth", "normals,normals", "normal"):
        with pytest.raises(ConfigError, match="ground.truth"):
            parse_ground_truth(bad)
    preset.write_text('base = "fod500"\n[render]\nground_truth = "normals"\n')
    with pytest.raises(ConfigError, match="expected a list"):
        load_preset(str(preset)).validate()
    result = CliRunner().invoke(main, ["--ground-truth", "curvature", "--scenes", "1", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "'curvature' is not rendered on request" in result.output and not (tmp_path / "x.h5").exists()
