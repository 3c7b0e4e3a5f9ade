"""HDF5 schema v2: writer/reader round trip, incomplete scenes, resume, and refusal of bad files."""

from __future__ import annotations

import json

import dataset_fixtures as fx
import h5py
import numpy as np
import pytest

from focalstack.dataset import schema
from focalstack.dataset.reader import FocalStackFile
from focalstack.dataset.schema import DatasetError
from focalstack.dataset.validate import validate_file

ARRAY_FIELDS = ("stack", "aif", "depth", "defocus", "edges", "focus_distance")


def assert_same_scene(scene, rec):
    for name in ARRAY_FIELDS:
        got, want = getattr(scene, name), getattr(rec, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert scene.f_number == np.float32(rec.f_number)
    assert scene.focal_length_mm == np.float32(rec.focal_length_mm)
    assert scene.sensor_width_mm == np.float32(rec.sensor_width_mm)
    assert scene.seed == rec.seed
    assert scene.description == json.loads(rec.scene)


def test_round_trip(tmp_path):
    path = tmp_path / "rt.h5"
    records = [fx.make_record(seed) for seed in (5, 6, 7)]
    with fx.open_writer(path) as w:
        for i, rec in enumerate(records):
            assert w.append(rec) == i
        assert len(w) == 3
    with FocalStackFile(path) as f:
        assert len(f) == 3 and f.n_rows == 3
        assert f.n_slices == 3 and f.image_size == (16, 16)
        for i, rec in enumerate(records):
            assert_same_scene(f[i], rec)
        assert f[-1].index == 2
        np.testing.assert_array_equal(f.read_all("seed"), [5, 6, 7])
        np.testing.assert_array_equal(f.read("depth", 1), records[1].depth)
        assert f.attrs["format"] == "focalstack" and f.attrs["schema_version"] == schema.SCHEMA_VERSION == 3
        assert f.config == fx.make_config()
        with pytest.raises(IndexError):
            f[3]
    assert validate_file(path, full=True).valid


def test_layout_follows_schema(tmp_path):
    path = fx.write_file(tmp_path / "layout.h5", 2)
    with h5py.File(path, "r") as f:
        for spec in schema.ARRAYS:
            ds = f[spec.name]
            assert ds.shape[0] == 2
            if spec.name in ("stack", "aif"):  # colour images: one channel of one scene per chunk
                assert ds.chunks == (1, *ds.shape[1:-1], 1), spec.name
            else:
                assert ds.chunks[1:] == ds.shape[1:], spec.name  # a chunk never splits a scene
            if len(ds.shape) >= 3:
                assert ds.chunks[0] == 1, spec.name  # a chunk never spans scenes
        assert h5py.check_string_dtype(f["scene"].dtype).encoding == "utf-8"
        assert f["complete"].dtype == np.bool_
        assert all(key in f.attrs for key in schema.REQUIRED_ATTRS)


def test_incomplete_scenes_are_invisible(tmp_path):
    path = fx.write_file(tmp_path / "inc.h5", 2)
    fx.append_incomplete(path, seed=99)
    with FocalStackFile(path) as f:
        assert f.n_rows == 3
        assert len(f) == 2
        np.testing.assert_array_equal(f.read_all("seed"), [0, 1])
        with pytest.raises(IndexError):
            f[2]
    report = validate_file(path)
    assert report.valid
    assert any("1 incomplete scene(s) will be re-rendered on resume" in w for w in report.warnings)


def test_incomplete_row_in_the_middle_is_skipped(tmp_path):
    path = fx.write_file(tmp_path / "mid.h5", 3)
    with h5py.File(path, "r+") as f:
        f["complete"][1] = False
    with FocalStackFile(path) as f:
        assert len(f) == 2
        assert [f[i].seed for i in range(2)] == [0, 2]


def test_resume_truncates_incomplete_tail_and_appends(tmp_path):
    path = fx.write_file(tmp_path / "resume.h5", 2)
    fx.append_incomplete(path, seed=99)
    fx.append_incomplete(path, seed=98, partial=False)
    with fx.open_writer(path) as w:
        assert len(w) == 2  # the two incomplete rows are gone
        np.testing.assert_array_equal(w.seeds(), [0, 1])
        w.append(fx.make_record(2))
    with FocalStackFile(path) as f:
        assert f.n_rows == len(f) == 3
        for i in range(3):
            assert_same_scene(f[i], fx.make_record(i))
    with h5py.File(path, "r") as f:
        assert {f[name].shape[0] for name in schema.ARRAY_NAMES} == {3}
    assert validate_file(path, full=True).valid


def test_resume_of_a_complete_file_keeps_every_scene(tmp_path):
    path = fx.write_file(tmp_path / "done.h5", 3)
    with fx.open_writer(path) as w:
        assert len(w) == 3


def test_resumed_file_equals_uninterrupted_file(tmp_path):
    one = fx.write_file(tmp_path / "one.h5", 3)
    two = fx.write_file(tmp_path / "two.h5", 1)
    fx.append_incomplete(two, seed=1)
    with fx.open_writer(two) as w:
        w.append(fx.make_record(1))
        w.append(fx.make_record(2))
    with FocalStackFile(one) as a, FocalStackFile(two) as b:
        assert len(a) == len(b) == 3
        for i in range(3):
            for name in ARRAY_FIELDS:
                np.testing.assert_array_equal(getattr(a[i], name), getattr(b[i], name))


def test_resume_refuses_other_config_and_leaves_file_untouched(tmp_path):
    path = fx.write_file(tmp_path / "cfg.h5", 2)
    before = path.read_bytes()
    attrs = fx.make_attrs(fx.make_config(f_number=2.0))
    with pytest.raises(DatasetError, match="other settings: f_number=1.0 \\(now 2.0\\)"):
        fx.open_writer(path, attrs=attrs)
    assert path.read_bytes() == before


def test_resume_accepts_config_with_tuples(tmp_path):
    """A tuple in the new config equals the list that JSON stored."""
    path = fx.write_file(tmp_path / "tuple.h5", 1)
    attrs = fx.make_attrs(fx.make_config(focus_distances=tuple(fx.FOCUS_DISTANCES)))
    with fx.open_writer(path, attrs=attrs) as w:
        assert len(w) == 1


def test_resume_refusal_names_the_entries_of_a_table_that_differ(tmp_path):
    """Another preset's scene table was printed whole, twice (about 5 kB on one line)."""
    scene = {f"key{i}": i for i in range(50)}
    path = fx.write_file(tmp_path / "scene.h5", 1, attrs=fx.make_attrs(fx.make_config(scene=scene)))
    other = fx.make_attrs(fx.make_config(scene={**scene, "key7": 70}, samples=99))
    with pytest.raises(DatasetError) as info:
        fx.open_writer(path, attrs=other)
    message = str(info.value)
    assert "scene.key7=7 (now 70)" in message and "samples=" in message
    assert "key8" not in message


def test_resume_refuses_other_image_size(tmp_path):
    path = fx.write_file(tmp_path / "size.h5", 1)
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="'stack'"):
        fx.open_writer(path, height=8, width=8)
    assert path.read_bytes() == before


def test_create_or_resume_refuses_foreign_hdf5(tmp_path):
    path = fx.write_foreign_h5(tmp_path / "foreign.h5")
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="'format'"):
        fx.open_writer(path)
    assert path.read_bytes() == before


def test_create_or_resume_refuses_truncated_file(tmp_path):
    path = fx.truncate(fx.write_file(tmp_path / "trunc.h5", 3))
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        fx.open_writer(path)
    assert path.read_bytes() == before


def test_create_or_resume_refuses_non_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5 at all\n")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        fx.open_writer(path)
    assert path.read_text() == "not hdf5 at all\n"


def test_create_refuses_missing_folder_and_leaves_no_temp_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        fx.open_writer(tmp_path / "missing" / "x.h5")
    attrs = fx.make_attrs()
    del attrs["created_utc"]
    with pytest.raises(DatasetError, match="created_utc"):
        fx.open_writer(tmp_path / "x.h5", attrs=attrs)
    assert list(tmp_path.iterdir()) == []


def test_append_checks_shapes_and_dtypes(tmp_path):
    with fx.open_writer(tmp_path / "bad.h5") as w:
        rec = fx.make_record(0)
        rec.depth = rec.depth.astype(np.float64)
        with pytest.raises(DatasetError, match="'depth'.*float32"):
            w.append(rec)
        rec = fx.make_record(0, height=8, width=8)
        with pytest.raises(DatasetError, match="'stack'.*shape"):
            w.append(rec)
        rec = fx.make_record(0)
        rec.scene = "{not json"
        with pytest.raises(DatasetError, match="JSON"):
            w.append(rec)
        assert len(w) == 0


@pytest.mark.parametrize(
    "attr, value, expected",
    [
        ("format", "hdf5-images", "attribute 'format' is 'hdf5-images'"),
        ("schema_version", 4, "attribute 'schema_version' is 4"),
        ("schema_version", "one", "attribute 'schema_version' is 'one'"),
    ],
)
def test_reader_rejects_wrong_header_naming_the_attribute(tmp_path, attr, value, expected):
    path = fx.write_file(tmp_path / "hdr.h5", 1)
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(DatasetError, match=expected):
        FocalStackFile(path)
    report = validate_file(path)
    assert not report.valid and attr in report.problems[0]


def test_reader_rejects_missing_header_and_missing_dataset(tmp_path):
    path = fx.write_file(tmp_path / "nover.h5", 1)
    with h5py.File(path, "r+") as f:
        del f.attrs["schema_version"]
    with pytest.raises(DatasetError, match="'schema_version' is None"):
        FocalStackFile(path)
    path = fx.write_file(tmp_path / "nodepth.h5", 1)
    with h5py.File(path, "r+") as f:
        del f["depth"]
    with pytest.raises(DatasetError, match="missing: depth"):
        FocalStackFile(path)


def test_reader_rejects_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        FocalStackFile(tmp_path / "nope.h5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        FocalStackFile(fx.truncate(fx.write_file(tmp_path / "t.h5", 2)))
    with pytest.raises(DatasetError, match="'format'"):
        FocalStackFile(fx.write_foreign_h5(tmp_path / "f.h5"))


def test_unknown_extra_datasets_and_attributes_are_ignored(tmp_path):
    path = fx.write_file(tmp_path / "extra.h5", 2)
    with h5py.File(path, "r+") as f:
        f.create_dataset("curvature", data=np.zeros((2, 16, 16), np.float16))  # not a schema name
        f.create_group("v2_extras").create_dataset("x", data=[1, 2, 3])
        f.attrs["future_attribute"] = "hello"
    with FocalStackFile(path) as f:
        assert len(f) == 2
        assert_same_scene(f[1], fx.make_record(1))
    report = validate_file(path, full=True)
    assert report.valid, report.problems


# -- validate_file on damaged files ----------------------------------------------------------------
def _damage(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return validate_file(path, full=True)


def _set_scene(name, row, fn):
    def apply(f):
        value = f[name][row]
        f[name][row] = fn(value)

    return apply


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_set_scene("defocus", 1, lambda d: d * 1.01), "scene 1: 'defocus' slice"),
        (_set_scene("depth", 2, lambda d: np.where(d > 1, -1.0, d).astype(np.float32)), "scene 2: 'depth' has"),
        (_set_scene("depth", 0, lambda d: np.full_like(d, np.inf)), "scene 0: 'depth'"),
        (_set_scene("edges", 0, lambda e: e * 255), "scene 0: 'edges' holds value(s) [255]"),
        (_set_scene("scene", 1, lambda s: "{oops"), "scene 1: 'scene' is not JSON"),
        (_set_scene("focus_distance", 0, lambda s: np.float32([0.001, 0.3, 1.5])), "beyond the focal length"),
        (_set_scene("f_number", 2, lambda s: np.float32(0)), "'f_number' is 0.0"),
        (lambda f: f.attrs.__setitem__("config", "{"), "root attribute 'config' is not JSON"),
        (lambda f: f.attrs.__delitem__("created_utc"), "root attribute 'created_utc' missing"),
        (lambda f: f.attrs.__delitem__("ground_truth"), "root attribute 'ground_truth' missing"),
        (lambda f: f.attrs.__setitem__("ground_truth", "[1]"), "'ground_truth' is JSON list"),
        (lambda f: f.attrs.__setitem__("defocus_model", "gauss"), "'defocus_model' is 'gauss'"),
        (lambda f: f["complete"].resize(2, axis=0), "differ in scene count N"),
    ],
)
def test_validate_names_the_damage(tmp_path, damage, expected):
    path = fx.write_file(tmp_path / "v.h5", 3)
    report = _damage(path, damage)
    assert not report.valid
    assert any(expected in p for p in report.problems), report.problems
    assert all("\n" not in p for p in report.problems)


def _declare_model(f, model):
    f.attrs["defocus_model"] = model
    declared = json.loads(f.attrs["ground_truth"])
    declared["defocus"]["method"] = model
    f.attrs["ground_truth"] = json.dumps(declared)


def test_validate_defocus_of_the_other_model_is_named(tmp_path):
    path = fx.write_file(tmp_path / "m.h5", 2)
    report = _damage(path, lambda f: _declare_model(f, "thin_lens"))
    assert any("matches the 'cycles' model instead" in p for p in report.problems), report.problems


def test_validate_names_a_declaration_that_contradicts_defocus_model(tmp_path):
    path = fx.write_file(tmp_path / "m.h5", 2)
    report = _damage(path, lambda f: f.attrs.__setitem__("defocus_model", "thin_lens"))
    assert any("derived by 'cycles' but root attribute 'defocus_model' is 'thin_lens'" in p for p in report.problems), (
        report.problems
    )


def _recreate(f, name, **kwargs):
    data = kwargs.pop("data", None)
    data = f[name][:] if data is None else data
    del f[name]
    f.create_dataset(name, data=data, **kwargs)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: _recreate(f, "depth", maxshape=(None, 16, 16), chunks=(2, 16, 16)), "one scene per chunk"),
        (lambda f: _recreate(f, "depth", maxshape=(None, 16, 16), chunks=(1, 8, 16)), "split a scene"),
        (lambda f: _recreate(f, "depth"), "not chunked"),
        (lambda f: _recreate(f, "seed", dtype=np.int32, maxshape=(None,), chunks=(8,)), "'seed' has dtype int32"),
        (
            lambda f: _recreate(f, "edges", data=np.zeros((3, 8, 16), np.uint8), maxshape=(None, 8, 16), chunks=(1, 8, 16)),
            "'edges' has shape (3, 8, 16): axis H is 8, expected 16",
        ),
    ],
)
def test_validate_names_structure_problems(tmp_path, damage, expected):
    path = fx.write_file(tmp_path / "s.h5", 3)
    with h5py.File(path, "r+") as f:
        damage(f)
    report = validate_file(path, full=True)
    assert any(expected in p for p in report.problems), report.problems


def test_validate_warns_on_blank_images_and_samples_scenes(tmp_path):
    path = fx.write_file(tmp_path / "w.h5", 20)
    with h5py.File(path, "r+") as f:
        f["aif"][0] = np.zeros((16, 16, 3), np.uint8)
    report = validate_file(path)
    assert report.valid
    assert any("scene 0: 'aif' is constant" in w for w in report.warnings)
    assert report.summary["checked"] == [0, 3, 5, 8, 11, 14, 16, 19]
    assert validate_file(path, full=True).summary["checked"] == list(range(20))


def test_validate_unreadable_files(tmp_path):
    assert validate_file(tmp_path / "none.h5").problems == ["no such file"]
    report = validate_file(fx.truncate(fx.write_file(tmp_path / "t.h5", 2)))
    assert len(report.problems) == 1 and "not a readable HDF5 file" in report.problems[0]
    report = validate_file(fx.write_foreign_h5(tmp_path / "f.h5"))
    assert len(report.problems) == 1 and "'format'" in report.problems[0]


@pytest.mark.parametrize(
    "value, problem",
    [
        (None, "root attribute 'ground_truth' missing"),
        ("{x", "root attribute 'ground_truth' is not JSON"),
        ("[1, 2]", "root attribute 'ground_truth' is JSON list, expected an object"),
        ('{"depth": {"source": "magic"}}', "source 'magic', expected one of"),
    ],
)
def test_a_damaged_ground_truth_declaration_is_its_one_problem(tmp_path, value, problem):
    """Each also printed 'unreadable part of the file (TypeError: ...)': the checks after it read the declaration."""
    path = fx.write_file(tmp_path / "g.h5", 2)
    with h5py.File(path, "r+") as f:
        if value is None:
            del f.attrs["ground_truth"]
        else:
            f.attrs["ground_truth"] = value
    report = validate_file(path, full=True)
    assert len(report.problems) == 1 and problem in report.problems[0], report.problems
    assert "attribute attribute" not in report.problems[0]


def test_validate_names_a_damaged_chunk(tmp_path):
    path = fx.write_file(tmp_path / "chunk.h5", 3)
    with h5py.File(path, "r") as f:
        info = f["depth"].id.get_chunk_info_by_coord((1, 0, 0))
    data = bytearray(path.read_bytes())
    data[info.byte_offset : info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(data))
    report = validate_file(path, full=True)
    assert any(p.startswith("scene 1: dataset 'depth' unreadable") for p in report.problems), report.problems
    assert len(report.problems) == 1  # scenes 0 and 2 are fine


def test_record_fields_are_the_schema_datasets():
    from focalstack.dataset.record import RECORD_FIELDS, SceneRecord

    assert set(RECORD_FIELDS) | {"complete"} == set(schema.SPECS)
    # a rendered scene has every dataset but the imported-only disparity and what is rendered on request
    on_request = set(schema.ON_REQUEST_GROUND_TRUTH)
    assert set(fx.make_record(0).arrays()) == set(schema.SPECS) - {"complete", "disparity", *on_request}
    assert set(fx.make_record(0, requested=tuple(on_request)).arrays()) == set(schema.SPECS) - {"complete", "disparity"}
    with pytest.raises(DatasetError, match="unknown dataset"):
        SceneRecord.from_arrays({**fx.make_record(0).arrays(), "novel": np.zeros(3)})


def test_a_copied_record_keeps_every_dataset(tmp_path):
    """Reader -> writer, as shard merging and export do: every dataset arrives, optional ones and the ground
    truth rendered on request included."""
    rng = np.random.default_rng(0)
    on_request = schema.ON_REQUEST_GROUND_TRUTH
    rec = fx.make_record(3, requested=on_request)
    rec.slice_homography = (np.eye(3) + 0.01 * rng.normal(size=(3, 3, 3))).astype(np.float32)
    rec.slice_pose = np.repeat(np.eye(4, dtype=np.float32)[None], 3, axis=0)
    rec.slice_pose[:, :3, 3] = rng.normal(size=(3, 3))
    rec.slice_focal_length_mm = np.array([2.95, 2.93, 2.91], np.float32)
    rec.stack_size = 2
    with fx.open_writer(tmp_path / "a.h5", requested=on_request) as w:
        w.append(rec)
    with FocalStackFile(tmp_path / "a.h5") as f, fx.open_writer(tmp_path / "b.h5", requested=on_request) as w:
        w.append(f[0])
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert set(a) == set(b) == set(schema.SPECS) - {"disparity"}
        for name in a:
            np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    for name, value in rec.arrays().items():
        with FocalStackFile(tmp_path / "b.h5") as f:
            got = f[0].array(name)
        assert np.array_equal(got, value) if name != "scene" else got == value, name
