"""Schema v2: files declare their ground truth, derived defocus maps are recomputed bit for bit, colour
images are stored planar, and schema-v1 files stay readable."""

from __future__ import annotations

import json

import dataset_fixtures as fx
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from focalstack.dataset import FocalStackFile, FocalStackWriter, optics, provenance, schema
from focalstack.dataset.cli import main
from focalstack.dataset.groundtruth import stored_defocus_maps
from focalstack.dataset.provenance import ABSENT, GroundTruth
from focalstack.dataset.schema import DatasetError
from focalstack.dataset.validate import validate_file

ARRAYS = ("stack", "aif", "depth", "defocus", "edges", "focus_distance")


def derived_record(seed: int, model: str = "cycles", **kw):
    """A record whose defocus maps are what the renderer stores: computed from the float32 values."""
    rec = fx.make_record(seed, model=model, **kw)
    rec.defocus = stored_defocus_maps(
        rec.depth, rec.focus_distance, rec.f_number, rec.focal_length_mm, rec.sensor_width_mm, model
    )
    return rec


def write_derived(path, records, model: str = "cycles"):
    attrs = fx.make_attrs(fx.make_config(defocus_model=model), defocus_model=model)
    with FocalStackWriter.create_or_resume(
        path,
        n_slices=3,
        height=16,
        width=16,
        attrs=attrs,
        ground_truth=provenance.rendered_declaration(model, store_defocus=False),
    ) as w:
        for rec in records:
            w.append(rec)
    return path


# -- schema v1 files -------------------------------------------------------------------------------------
def test_v1_file_written_the_old_way_reads_and_validates(tmp_path):
    records = [fx.make_record(seed) for seed in (3, 4)]
    path = fx.write_v1_file(tmp_path / "v1.h5", records)
    with FocalStackFile(path) as f:
        assert f.schema_version == 1
        assert f.ground_truth == provenance.v1_declaration("cycles")
        assert f.ground_truth["defocus"].stored and f.has("aif") and not f.has("disparity")
        assert len(f) == 2 and f.n_slices == 3 and f.image_size == (16, 16)
        for rec, got in zip(records, (f[0], f[1])):
            for name in ARRAYS:  # as stored: v1 defocus maps are read, not recomputed
                np.testing.assert_array_equal(getattr(got, name), getattr(rec, name), err_msg=name)
            assert got.f_number == 1.0 and got.disparity is None
        np.testing.assert_array_equal(f.read("defocus", 1), records[1].defocus)
        np.testing.assert_array_equal(f.read_all("seed"), [3, 4])
    report = validate_file(path, full=True)
    assert report.valid, report.problems
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "schema v1" in result.output and "defocus           derived from depth by cycles" in result.output


def test_v1_file_damage_is_still_named(tmp_path):
    path = fx.write_v1_file(tmp_path / "v1.h5", [fx.make_record(0), fx.make_record(1)])
    with h5py.File(path, "r+") as f:
        f["defocus"][1] = f["defocus"][1] * 1.05
        del f.attrs["blender_version"]  # required in v1
    report = validate_file(path, full=True)
    assert any("scene 1: 'defocus' slice" in p for p in report.problems), report.problems
    assert "root attribute 'blender_version' missing" in report.problems


def test_resuming_a_v1_file_keeps_its_layout(tmp_path):
    path = fx.write_v1_file(tmp_path / "v1.h5", [fx.make_record(0)])
    with fx.open_writer(path) as w:
        w.append(fx.make_record(1))  # float64-made defocus: fine, a v1 file stores it
    with FocalStackFile(path) as f:
        assert f.schema_version == 1 and len(f) == 2
        np.testing.assert_array_equal(f[1].defocus, fx.make_record(1).defocus)
    assert validate_file(path, full=True).valid


# -- recomputed defocus ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", optics.DEFOCUS_MODELS)
def test_recomputed_defocus_is_bit_identical_on_every_reader_path(tmp_path, model):
    records = [derived_record(seed, model) for seed in range(3)]
    path = write_derived(tmp_path / "d.h5", records, model)
    with h5py.File(path) as f:
        assert "defocus" not in f  # not stored
        assert json.loads(f.attrs["ground_truth"])["defocus"] == {
            "source": "derived",
            "from": ["depth", "focus_distance", "f_number", "focal_length_mm", "sensor_width_mm"],
            "method": model,
            "stored": False,
        }
    with FocalStackFile(path) as f:
        for i, rec in enumerate(records):
            assert np.array_equal(f[i].defocus, rec.defocus)
            assert np.array_equal(f.read("defocus", i), rec.defocus)
            assert np.array_equal(f[i].arrays()["defocus"], rec.defocus)
        assert np.array_equal(f.read_all("defocus"), np.stack([r.defocus for r in records]))
        assert f.ground_truth["defocus"].recomputed and f.has("defocus")
        with pytest.raises(DatasetError, match="'defocus'.*recomputed by readers"):
            f.dataset("defocus")
    assert validate_file(path, full=True).valid


def test_renderer_records_give_back_their_defocus_bit_for_bit(tmp_path):
    """The maps the renderer makes (render.pipeline.make_record) are the maps a reader recomputes."""
    from focalstack.render.blender import RenderedScene
    from focalstack.render.config import load_preset
    from focalstack.render.pipeline import describe_scene, make_record, open_writer

    config = load_preset("fod500").with_overrides(width=24, height=16, samples=1, denoise=False, seed=2, scenes=2).validate()
    rng = np.random.default_rng(0)
    made = []
    with open_writer(config, tmp_path / "r.h5") as w:
        for i in range(2):
            desc = describe_scene(config, i)
            n = len(desc.camera.slices)
            depth = rng.uniform(0.1, 3.0, (16, 24)).astype(np.float32)
            rendered = RenderedScene(aif=rng.random((16, 24, 4)), depth=depth, slices=rng.random((n, 16, 24, 4)))
            made.append(make_record(desc, rendered, config))
            w.append(made[-1])
    with FocalStackFile(tmp_path / "r.h5") as f:
        assert "defocus" not in f._h5
        for i, rec in enumerate(made):
            assert np.array_equal(f[i].defocus, rec.defocus)
            np.testing.assert_allclose(f[i].defocus, desc.camera.defocus_maps(f[i].depth), rtol=1e-6, atol=1e-6)
    assert validate_file(tmp_path / "r.h5", full=True).valid


def test_writer_refuses_defocus_that_readers_would_not_recompute(tmp_path):
    rec = fx.make_record(0)  # maps from float64 inputs (2.9 mm, not float32(2.9))
    want = stored_defocus_maps(rec.depth, rec.focus_distance, rec.f_number, rec.focal_length_mm, rec.sensor_width_mm, "cycles")
    assert not np.array_equal(rec.defocus, want)  # one float32 step apart somewhere
    np.testing.assert_allclose(rec.defocus, want, rtol=1e-5)
    with pytest.raises(DatasetError, match="'defocus' differs from its recomputation"):
        write_derived(tmp_path / "x.h5", [rec])
    rec.defocus = None  # no maps at all: readers compute them
    path = write_derived(tmp_path / "y.h5", [rec])
    with FocalStackFile(path) as f:
        assert np.array_equal(f[0].defocus, want)


# -- absent ground truth ---------------------------------------------------------------------------------
def no_aif_declaration():
    return {**provenance.rendered_declaration("cycles"), "aif": ABSENT, "edges": ABSENT}


def test_absent_ground_truth_is_none_and_never_made_up(tmp_path):
    rec = fx.make_record(0)
    rec.aif = rec.edges = None
    with FocalStackWriter.create_or_resume(
        tmp_path / "a.h5", n_slices=3, height=16, width=16, attrs=fx.make_attrs(), ground_truth=no_aif_declaration()
    ) as w:
        w.append(rec)
    with h5py.File(tmp_path / "a.h5") as f:
        assert "aif" not in f and "edges" not in f
    with FocalStackFile(tmp_path / "a.h5") as f:
        got = f[0]
        assert got.aif is None and got.edges is None and "aif" not in got.arrays()
        np.testing.assert_array_equal(got.stack, rec.stack)
        assert not f.has("aif") and f.ground_truth["aif"] == ABSENT
        with pytest.raises(DatasetError, match="no dataset 'aif' \\(absent from this file\\)"):
            f.read("aif", 0)
    report = validate_file(tmp_path / "a.h5", full=True)
    assert report.valid, report.problems


def test_writer_holds_records_to_the_declaration(tmp_path):
    with FocalStackWriter.create_or_resume(
        tmp_path / "a.h5", n_slices=3, height=16, width=16, attrs=fx.make_attrs(), ground_truth=no_aif_declaration()
    ) as w:
        with pytest.raises(DatasetError, match="'aif' given, but this file declares it absent"):
            w.append(fx.make_record(0))
        assert len(w) == 0
    rec = fx.make_record(1)
    rec.depth = None
    with fx.open_writer(tmp_path / "b.h5") as w, pytest.raises(DatasetError, match="'depth' missing: this file stores it"):
        w.append(rec)


def test_validate_names_a_dataset_the_declaration_disowns(tmp_path):
    path = fx.write_file(tmp_path / "a.h5", 2)
    with h5py.File(path, "r+") as f:
        declared = json.loads(f.attrs["ground_truth"])
        declared["aif"] = {"source": "absent"}
        f.attrs["ground_truth"] = json.dumps(declared)
    report = validate_file(path)
    assert any("dataset 'aif' is in the file, but its ground_truth entry says absent" in p for p in report.problems)
    with h5py.File(path, "r+") as f:
        declared["aif"] = {"source": "rendered"}
        del declared["edges"]
        f.attrs["ground_truth"] = json.dumps(declared)
    report = validate_file(path)
    assert any("ground_truth: missing edges" in p for p in report.problems), report.problems
    with pytest.raises(DatasetError, match="ground_truth: missing edges"):
        FocalStackFile(path)


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"source": "made up"}, "source 'made up'"),
        ({"source": "rendered", "stored": False}, "readers can only recompute defocus"),
        ({"source": "absent", "stored": True}, "'stored' is True"),
        ({"source": "derived", "stored": False, "method": "gauss"}, "method 'gauss'"),
        ({"source": "rendered", "colour": 1}, "unknown key(s) colour"),
        ({"source": "imported", "no_data": "zero"}, "'no_data' is 'zero'"),
    ],
)
def test_declaration_errors_are_named(entry, expected):
    name = "depth" if "gauss" not in str(entry) else "defocus"
    declared = {k: gt.to_dict() for k, gt in provenance.rendered_declaration("cycles").items()}
    declared[name] = entry
    with pytest.raises(DatasetError, match=expected.replace("(", "\\(").replace(")", "\\)")):
        provenance.from_json(json.dumps(declared))


def test_declaration_round_trips_and_describes_itself():
    declared = {
        **provenance.rendered_declaration("thin_lens", store_defocus=False),
        "depth": GroundTruth("imported", method="somewhere", no_data=0.0),
    }
    again = provenance.from_json(provenance.to_json(declared))
    assert again == declared
    assert list(again) == list(schema.GROUND_TRUTH_NAMES)
    assert again["defocus"].describe() == "derived from depth by thin_lens, recomputed by readers (not stored)"
    assert again["depth"].describe() == "imported (somewhere); 0 = no ground truth"
    assert not again["disparity"].present and again["aif"].present


# -- storage layout --------------------------------------------------------------------------------------
def test_colour_images_are_stored_planar_and_read_back_interleaved(tmp_path):
    records = [derived_record(seed) for seed in range(3)]
    path = write_derived(tmp_path / "p.h5", records)
    with h5py.File(path) as f:
        assert f["stack"].chunks == (1, 3, 16, 16, 1) and f["aif"].chunks == (1, 16, 16, 1)
        assert f["stack"].compression == "szip" and f["depth"].compression == "gzip"
        plain = f["stack"][2]  # any HDF5 reader sees the same (S, H, W, 3) array
    np.testing.assert_array_equal(plain, records[2].stack)
    with FocalStackFile(path) as f:
        np.testing.assert_array_equal(f[2].stack, records[2].stack)
        np.testing.assert_array_equal(f.read("aif", 1), records[1].aif)


def test_validate_refuses_chunks_that_span_scenes_or_split_channels_unevenly(tmp_path):
    path = fx.write_file(tmp_path / "c.h5", 2)
    with h5py.File(path, "r+") as f:
        data = f["aif"][:]
        del f["aif"]
        f.create_dataset("aif", data=data, maxshape=(None, 16, 16, 3), chunks=(1, 16, 16, 2))
    report = validate_file(path)
    assert any("'aif' has chunks (1, 16, 16, 2) that split a scene" in p for p in report.problems), report.problems


def test_reader_names_a_filter_this_hdf5_build_cannot_decode(tmp_path, monkeypatch):
    path = write_derived(tmp_path / "s.h5", [derived_record(0)])
    monkeypatch.setattr(h5py.h5z, "filter_avail", lambda code: code != h5py.h5z.FILTER_SZIP)
    with pytest.raises(DatasetError, match="'stack' is szip-compressed, which this HDF5 build cannot decode"):
        FocalStackFile(path)
    report = validate_file(path)
    assert any("'stack' is szip-compressed, which this HDF5 build cannot decode" in p for p in report.problems)
