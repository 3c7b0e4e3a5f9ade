"""Transport packs: pack then unpack gives the same file (datasets, values, attributes, layout), images
bit-exact; half-float depth is measured and bounded; bad input is one line and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import dataset_fixtures as fx
import h5py
import numpy as np
import pytest

from focalstack.dataset.pack import pack_file, unpack_file
from focalstack.dataset.reader import FocalStackFile
from focalstack.dataset.schema import DatasetError
from focalstack.dataset.validate import validate_file


def textured_file(path, n=3, size=32):
    """Scenes whose images are smooth textures (random noise would not tell WebP's lossless mode apart
    from a lossy one that keeps noise)."""
    rng = np.random.default_rng(0)
    with fx.open_writer(path, height=size, width=size) as w:
        for seed in range(n):
            rec = fx.make_record(seed, height=size, width=size)
            yy, xx = np.mgrid[0:size, 0:size]
            base = (127 + 100 * np.sin(xx / rng.uniform(1, 4)) * np.cos(yy / rng.uniform(1, 4))).astype(np.uint8)
            rec.stack = np.stack([np.dstack([base, base[::-1], base.T])] * len(rec.focus_distance)).astype(np.uint8)
            rec.stack[1] = rng.integers(0, 256, rec.stack[1].shape, dtype=np.uint8)  # and one noisy slice
            w.append(rec)
    return path


def datasets(path):
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        out = {}
        for name, ds in f.items():
            out[name] = {
                "values": ds[...],
                "dtype": ds.dtype,
                "chunks": ds.chunks,
                "maxshape": ds.maxshape,
                "compression": ds.compression,
                "opts": ds.compression_opts,
                "shuffle": ds.shuffle,
                "attrs": dict(ds.attrs),
            }
    return attrs, out


def test_unpack_gives_back_the_same_file(tmp_path):
    src = textured_file(tmp_path / "train.h5")
    fx.append_incomplete(src)  # a killed render's last row: not a scene, not packed
    stats = pack_file(src, tmp_path / "train.pack.h5")
    assert stats.scenes == 3 and stats.codecs["stack"] == "webp" and stats.codecs["aif"] == "webp"
    assert stats.codecs["scene"] == "json-lzma" and stats.codecs["depth"] == "raw"
    out, notes = unpack_file(tmp_path / "train.pack.h5", tmp_path / "again.h5")
    assert notes == []
    attrs_a, a = datasets(src)
    attrs_b, b = datasets(out)
    assert attrs_a == attrs_b and set(a) == set(b)
    for name in a:
        want = a[name]["values"][:3]  # complete scenes only
        if name == "scene":
            assert [v.decode() if isinstance(v, bytes) else v for v in b[name]["values"]] == [
                v.decode() if isinstance(v, bytes) else v for v in want
            ]
        else:
            np.testing.assert_array_equal(b[name]["values"], want, err_msg=name)
        for key in ("dtype", "chunks", "maxshape", "compression", "opts", "shuffle", "attrs"):
            assert a[name][key] == b[name][key], (name, key)
    with FocalStackFile(out) as f:
        assert len(f) == 3 and f[2].seed == 2
    report = validate_file(out, full=True)
    assert report.valid, report.problems


def test_brief_descriptions_drop_objects_and_lights_alone_and_say_so(tmp_path):
    src = textured_file(tmp_path / "train.h5")
    stats = pack_file(src, tmp_path / "train.pack.h5", brief_descriptions=True)
    assert stats.brief_descriptions and stats.to_dict()["brief_descriptions"] is True
    out, _ = unpack_file(tmp_path / "train.pack.h5", tmp_path / "again.h5")
    attrs_a, a = datasets(src)
    attrs_b, b = datasets(out)
    assert attrs_a == attrs_b and set(a) == set(b)
    for name in set(a) - {"scene"}:  # everything else is the same file
        np.testing.assert_array_equal(b[name]["values"], a[name]["values"][:3], err_msg=name)
    for whole, brief in zip(a["scene"]["values"], b["scene"]["values"]):
        whole, brief = json.loads(whole), json.loads(brief)
        assert brief["omitted_for_transport"] == ["objects"]  # the fixtures' descriptions have no lights
        assert {k: v for k, v in whole.items() if k != "objects"} == {
            k: v for k, v in brief.items() if k != "omitted_for_transport"
        }
    with FocalStackFile(out) as f:  # a reader still takes every scene, description included
        assert len(f) == 3 and f[1].description["seed"] == 1 and "objects" not in f[1].description


def test_validate_says_once_that_brief_descriptions_leave_object_indices_unchecked(tmp_path):
    src = tmp_path / "objects.h5"
    with fx.open_writer(src, requested=("objects",)) as w:
        for seed in range(3):
            w.append(fx.make_record(seed, requested=("objects",)))
    assert validate_file(src, full=True).warnings == []
    pack_file(src, tmp_path / "o.pack.h5", brief_descriptions=True)
    out, _ = unpack_file(tmp_path / "o.pack.h5", tmp_path / "o.h5")
    report = validate_file(out, full=True)
    assert report.valid and report.warnings == [
        "'objects' not checked against the scene descriptions: a pack left their object lists out"
    ]


def test_brief_descriptions_make_the_pack_smaller_by_what_they_leave_out(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 4)
    rng = np.random.default_rng(0)
    with h5py.File(src, "r+") as f:  # descriptions as large as a render's: 20 objects of random floats
        for row in range(4):
            d = json.loads(f["scene"][row])
            d["objects"] = [{"location": rng.random(3).tolist(), "material": rng.random(30).tolist()} for _ in range(20)]
            d["lights"] = [{"energy": float(rng.random())}]
            f["scene"][row] = json.dumps(d)
    whole = pack_file(src, tmp_path / "whole.pack.h5")
    brief = pack_file(src, tmp_path / "brief.pack.h5", brief_descriptions=True)
    assert whole.pack_bytes - brief.pack_bytes > 4 * 20 * 33 * 8 * 0.5  # at least half the floats' raw bytes
    unpack_file(tmp_path / "brief.pack.h5", tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5") as f:
        assert json.loads(f["scene"][0])["omitted_for_transport"] == ["objects", "lights"]
    # packed brief again, the record stays as it was; a description with nothing to leave out stays whole
    pack_file(tmp_path / "b.h5", tmp_path / "again.pack.h5", brief_descriptions=True)
    unpack_file(tmp_path / "again.pack.h5", tmp_path / "c.h5")
    with h5py.File(tmp_path / "b.h5") as f, h5py.File(tmp_path / "c.h5") as g:
        assert list(g["scene"][...]) == list(f["scene"][...])


def test_float16_depth_is_measured_and_within_half_float_precision(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 2)
    stats = pack_file(src, tmp_path / "a.pack.h5", float16=("depth",))
    unpack_file(tmp_path / "a.pack.h5", tmp_path / "b.h5")
    with h5py.File(src) as f, h5py.File(tmp_path / "b.h5") as g:
        exact, half = f["depth"][...], g["depth"][...]
        assert g["depth"].dtype == np.float32
        np.testing.assert_array_equal(half, exact.astype(np.float16).astype(np.float32))
        err = np.abs(half.astype(np.float64) - exact)
    assert 0 < err.max() <= exact.max() * 2.0**-11  # half a unit in the last place of an 11-bit mantissa
    assert stats.float16_error["depth"]["max_abs"] == pytest.approx(err.max())
    assert stats.float16_error["depth"]["max_rel"] <= 2.0**-11


def test_a_value_no_half_float_holds_is_refused(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 1)
    with h5py.File(src, "r+") as f:
        d = f["depth"][0]
        d[0, 0] = 1e10  # Blender's background depth
        f["depth"][0] = d
    with pytest.raises(Exception, match="exceed what a half float holds"):
        pack_file(src, tmp_path / "a.pack.h5", float16=("depth",))
    assert not (tmp_path / "a.pack.h5").exists() and not list(tmp_path.glob("*.tmp"))


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "focalstack.dataset", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_packs_a_folder_with_a_manifest_and_unpacks_it(tmp_path):
    a, b = fx.write_file(tmp_path / "a.h5", 2), textured_file(tmp_path / "b.h5", 1)
    done = cli("pack", a, b, "--float16", "depth", "-o", tmp_path / "bundle")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [r["scenes"] for r in manifest["files"]] == [2, 1]
    assert manifest["total_bytes"] == sum((tmp_path / "bundle" / r["pack"]).stat().st_size for r in manifest["files"])
    assert "depth as float16: max error" in done.stdout
    assert "a.pack.h5: 2 scenes" in done.stdout and "defocus computed again from the half floats: moved up to" in done.stdout
    done = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a.h5", "b.h5"]
    again = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data")
    assert again.returncode == 1 and "exists; pass --force" in again.stderr and again.stderr.count("\n") == 1
    done = cli("pack", a, "--brief-descriptions", "-o", tmp_path / "brief")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "brief" / "manifest.json").read_text())["files"][0]["brief_descriptions"] is True


@pytest.mark.parametrize("case", ["not_focalstack", "float16_of_missing", "over_budget", "output_is_input"])
def test_cli_refuses_bad_input_in_one_line(tmp_path, case):
    src = fx.write_file(tmp_path / "a.h5", 1)
    if case == "not_focalstack":
        fx.write_foreign_h5(tmp_path / "x.h5")
        done, needle = cli("pack", tmp_path / "x.h5", "-o", tmp_path / "bundle"), "not a focalstack file"
    elif case == "float16_of_missing":
        done, needle = cli("pack", src, "--float16", "dpeth", "-o", tmp_path / "b"), "--float16 names dpeth"
    elif case == "over_budget":
        done, needle = cli("pack", src, "-o", tmp_path / "b", "--max-size", "0.001"), "over --max-size 0.001 MiB"
    else:  # a pack unpacks to its source's name: in its own folder, that of a pack named so is itself
        (tmp_path / "src").mkdir()
        pack_file(fx.write_file(tmp_path / "src" / "z.h5", 1), tmp_path / "z.h5")
        done, needle = cli("unpack", tmp_path / "z.h5", "-o", tmp_path, "--force"), "is also an input"
    assert done.returncode == 1 and needle in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    if case in ("not_focalstack", "float16_of_missing"):  # refused before a pack was written: no folder
        assert not (tmp_path / "bundle").exists() and not (tmp_path / "b").exists()


def test_a_refused_command_leaves_no_folder_it_made_but_keeps_what_was_there(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 1)
    (tmp_path / "bad.pack.h5").write_bytes(b"not a pack")
    done = cli("unpack", tmp_path / "bad.pack.h5", "-o", tmp_path / "new" / "deeper")
    assert done.returncode == 1 and "bad.pack.h5" in done.stderr, done.stderr
    assert not (tmp_path / "new").exists()  # both folders it made are gone
    (tmp_path / "kept").mkdir()
    done = cli("pack", tmp_path / "bad.pack.h5", "-o", tmp_path / "kept" / "made")
    assert done.returncode == 1 and not (tmp_path / "kept" / "made").exists() and (tmp_path / "kept").is_dir()
    # a failure after a pack was written keeps the folder: it is not empty
    done = cli("pack", src, "-o", tmp_path / "over", "--max-size", "0.000001")
    assert done.returncode == 1 and (tmp_path / "over" / "a.pack.h5").is_file()


def test_a_damaged_pack_is_one_line_and_leaves_nothing(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 2)
    pack_file(src, tmp_path / "a.pack.h5")
    with h5py.File(tmp_path / "a.pack.h5", "r+") as p:
        p.attrs["order"] = "not json"
    with pytest.raises(Exception, match="damaged or not a pack this reads"):
        unpack_file(tmp_path / "a.pack.h5", tmp_path / "b.h5")
    assert not (tmp_path / "b.h5").exists() and not list(tmp_path.glob("*.tmp"))


def test_a_damaged_chunk_is_one_error_naming_file_and_dataset_and_no_pack_is_left(tmp_path):
    from focalstack.dataset.schema import DatasetError

    path = fx.write_file(tmp_path / "good.h5", 3, height=32, width=32)
    with h5py.File(path) as f:
        info = f["depth"].id.get_chunk_info_by_coord((1, 0, 0))
    with open(path, "r+b") as fh:  # flip a byte inside scene 1's depth chunk: its checksum fails
        fh.seek(info.byte_offset + info.size // 2)
        byte = fh.read(1)
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DatasetError, match=r"good.h5: 'depth' cannot be read: damaged \(.*\); `focalstack-data salvage`"):
        pack_file(path, tmp_path / "good.pack.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]


def test_a_damaged_image_in_a_pack_is_found_by_its_checksum_not_unpacked_as_other_pixels(tmp_path):
    """Variable-length WebP blobs have no HDF5 checksum, and a flipped byte can decode to other pixels."""
    src = textured_file(tmp_path / "t.h5", 3, 64)
    pack_file(src, tmp_path / "t.pack.h5")
    with h5py.File(tmp_path / "t.pack.h5", "r") as p:
        blob = bytes(p["data/stack"][1, 1])  # the noisy slice: no other image has its bytes
        assert p["checksums/stack"].shape == p["data/stack"].shape
    raw = bytearray((tmp_path / "t.pack.h5").read_bytes())
    at = raw.find(blob) + len(blob) // 2
    damaged_any = False
    for flip in (0x55, 0x01, 0x80):  # whichever of these still decodes, the checksum must catch
        copy = bytearray(raw)
        copy[at] ^= flip
        (tmp_path / "d.pack.h5").write_bytes(bytes(copy))
        with pytest.raises(Exception, match=r"d.pack.h5: 'stack': scene 1 image 1 (is damaged|does not decode)") as err:
            unpack_file(tmp_path / "d.pack.h5", tmp_path / "d.h5")
        damaged_any |= "checksum" in str(err.value)
        assert not (tmp_path / "d.h5").exists()
    assert damaged_any  # at least one flip decoded to wrong pixels, caught only by the checksum
    unpack_file(tmp_path / "t.pack.h5", tmp_path / "back.h5")  # the intact pack still unpacks
    with FocalStackFile(src) as a, FocalStackFile(tmp_path / "back.h5") as b:
        np.testing.assert_array_equal(a[1].stack, b[1].stack)


def test_float16_of_images_or_strings_and_a_wrong_scene_count_are_one_line_errors(tmp_path):
    src = textured_file(tmp_path / "t.h5", 2, 32)
    for name, kind in (("stack", "uint8"), ("scene", "strings")):
        done = cli("pack", src, "--float16", name, "-o", tmp_path / "b")
        assert done.returncode == 1 and f"'{name}' is {kind}, not floating point" in done.stderr, done.stderr
    pack_file(src, tmp_path / "t.pack.h5")
    with h5py.File(tmp_path / "t.pack.h5", "r+") as p:
        p.attrs["scenes"] = 5
    done = cli("unpack", tmp_path / "t.pack.h5", "-o", tmp_path / "u")
    assert done.returncode == 1 and "t.pack.h5: damaged or not a pack this reads" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "u").exists()


def test_a_pack_whose_recorded_layout_was_edited_is_refused_and_writes_nothing(tmp_path):
    """The checksums cover the pixels, not the layout a pack records: a dtype edited by hand unpacked into a file
    that validate then rejected."""
    src = fx.write_file(tmp_path / "train.h5", 2)
    pack = tmp_path / "train.pack.h5"
    pack_file(src, pack)
    with h5py.File(pack, "r+") as p:
        layout = json.loads(p["data"]["depth"].attrs["__pack__"])
        layout["dtype"] = "int8"
        p["data"]["depth"].attrs["__pack__"] = json.dumps(layout)
    with pytest.raises(DatasetError, match=r"train.pack.h5: what it unpacks to fails validation \(.*int8.*\); the pack is"):
        unpack_file(pack, tmp_path / "again.h5")
    assert not (tmp_path / "again.h5").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["train.h5", "train.pack.h5"]


def test_float16_depth_recomputes_the_stored_defocus_maps_so_the_unpacked_file_agrees_with_itself(tmp_path):
    """A file that stores its defocus maps (schema v1) packed with half-float depth unpacked into one whose
    maps disagreed with the half-float depth by 0.00115 px, past validate's 0.001 px: the maps now travel
    computed again from the depth they travel with, and how far that moved them is reported."""
    from train_fixtures import write_synthetic

    from focalstack.dataset.groundtruth import stored_defocus_maps

    src = write_synthetic(tmp_path / "a.h5", 3, size=32)
    stats = pack_file(src, tmp_path / "a.pack.h5", float16=("depth",))
    unpack_file(tmp_path / "a.pack.h5", tmp_path / "b.h5")  # validates what it wrote
    assert validate_file(tmp_path / "b.h5", full=True).valid
    with h5py.File(src) as f, h5py.File(tmp_path / "b.h5") as g:
        half = f["depth"][...].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(g["depth"][...], half)
        for k in range(3):
            want = stored_defocus_maps(
                half[k], f["focus_distance"][k], f["f_number"][k], f["focal_length_mm"][k], f["sensor_width_mm"][k],
                f.attrs["defocus_model"],
            )  # fmt: skip
            np.testing.assert_array_equal(g["defocus"][k], want)
        moved = np.abs(g["defocus"][...].astype(np.float64) - f["defocus"][...]).max()
        assert g["defocus"].dtype == f["defocus"].dtype and g["defocus"].chunks == f["defocus"].chunks
    assert stats.rederived_change == {"defocus": pytest.approx(moved)} and moved > 0.001
    assert pack_file(src, tmp_path / "exact.pack.h5").rederived_change == {}  # exactly packed: nothing computed


def test_float16_of_ground_truth_derived_from_stored_data_or_of_its_sources_is_refused(tmp_path):
    """Half floats of stored defocus maps (derived from depth) or of either side of DDFF-12's depth from
    disparity would no longer agree with the other side; nothing is written."""
    from interop_fixtures import write_ddff12_file

    from focalstack.dataset.ddff12 import import_ddff12

    src = fx.write_file(tmp_path / "a.h5", 2)
    with pytest.raises(DatasetError, match=r"a.h5: --float16 defocus: 'defocus' is derived from depth, .* pack it exactly"):
        pack_file(src, tmp_path / "a.pack.h5", float16=("defocus",))
    write_ddff12_file(tmp_path / "ddff.h5", 2, 1)
    import_ddff12(tmp_path / "ddff.h5", tmp_path / "d.h5", split="train")
    with pytest.raises(DatasetError, match=r"d.h5: --float16 depth: 'depth' is derived from disparity by ddff12-calibration"):
        pack_file(tmp_path / "d.h5", tmp_path / "d.pack.h5", float16=("depth",))
    with pytest.raises(DatasetError, match=r"d.h5: --float16 disparity: the file stores 'depth' derived from it by ddff12"):
        pack_file(tmp_path / "d.h5", tmp_path / "d.pack.h5", float16=("disparity",))
    assert not list(tmp_path.glob("*.pack.h5")) and not list(tmp_path.glob("*.tmp"))
    pack_file(tmp_path / "d.h5", tmp_path / "d.pack.h5")  # exactly: fine
    unpack_file(tmp_path / "d.pack.h5", tmp_path / "again.h5")
    assert validate_file(tmp_path / "again.h5", full=True).valid


def test_a_half_float_pack_made_before_defocus_was_computed_again_still_unpacks(tmp_path):
    """Packs made before pack computed stored defocus maps again carry the exact depth's maps beside half-float
    depth (0.00115 px apart): unpack computes them again, says so, and the file validates."""
    from train_fixtures import write_synthetic

    src = write_synthetic(tmp_path / "a.h5", 2, size=32)
    pack_file(src, tmp_path / "new.pack.h5", float16=("depth",))
    _, notes = unpack_file(tmp_path / "new.pack.h5", tmp_path / "new.h5")
    assert notes == []  # a pack of today: nothing to compute
    with h5py.File(tmp_path / "new.pack.h5", "r+") as p, h5py.File(src) as f:
        p["data"]["defocus"][...] = f["defocus"][...]  # what an older pack carried
    _, notes = unpack_file(tmp_path / "new.pack.h5", tmp_path / "old.h5")
    assert notes == ["defocus: computed again from the half-float depth in 2 scene(s) (a pack made before pack did so)"]
    assert validate_file(tmp_path / "old.h5", full=True).valid
    with h5py.File(tmp_path / "old.h5") as g, h5py.File(tmp_path / "new.h5") as h:
        np.testing.assert_array_equal(g["defocus"][...], h["defocus"][...])


def test_a_source_that_fails_validation_is_refused_when_packed_not_after_it_travelled(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 2)
    with h5py.File(src, "r+") as f:
        f["defocus"][0, 1] = f["defocus"][0, 1] + 0.01
    with pytest.raises(DatasetError, match=r"a.h5: fails validation \(scene 0: 'defocus' slice 1 .*\); a pack of it would not"):
        pack_file(src, tmp_path / "a.pack.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


# -- the robustness probe of focalstack-data (stop 40) -------------------------------------------------------
def test_packing_into_a_folder_in_several_calls_keeps_every_pack_in_the_manifest_and_its_budget(tmp_path):
    """Each call wrote a manifest of its own packs alone, so --max-size checked one call, not the folder."""
    a, b = fx.write_file(tmp_path / "a.h5", 2), fx.write_file(tmp_path / "b.h5", 1)
    assert cli("pack", a, "-o", tmp_path / "bundle").returncode == 0
    done = cli("pack", b, "-o", tmp_path / "bundle")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [r["pack"] for r in manifest["files"]] == ["a.pack.h5", "b.pack.h5"]
    sizes = [(tmp_path / "bundle" / n).stat().st_size for n in ("a.pack.h5", "b.pack.h5")]
    assert manifest["total_bytes"] == sum(sizes)
    assert "2 pack(s), 3 scenes" in done.stdout
    again = cli("pack", b, "-o", tmp_path / "bundle", "--force", "--max-size", f"{(sizes[0] + sizes[1] // 2) / 2**20}")
    assert again.returncode == 1 and "over --max-size" in again.stderr, again.stderr  # b alone fits; the folder does not
    (tmp_path / "bundle" / "a.pack.h5").unlink()  # a pack removed by hand leaves the manifest with the next call
    assert cli("pack", b, "-o", tmp_path / "bundle", "--force").returncode == 0
    assert [r["pack"] for r in json.loads((tmp_path / "bundle" / "manifest.json").read_text())["files"]] == ["b.pack.h5"]
    (tmp_path / "bundle" / "manifest.json").write_text("{not json")
    bad = cli("pack", a, "-o", tmp_path / "bundle")
    assert bad.returncode == 1 and "manifest.json: not a pack manifest" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "bundle" / "a.pack.h5").exists()  # refused before packing


def test_unpack_gives_the_file_its_original_name(tmp_path):
    """A source named train.hdf5 came back as train.h5, though the pack records its name."""
    src = fx.write_file(tmp_path / "train.hdf5", 1)
    assert cli("pack", src, "-o", tmp_path / "bundle").returncode == 0
    done = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["train.hdf5"]
    with h5py.File(tmp_path / "bundle" / "train.pack.h5", "r+") as p:  # a name with a folder in it is not taken
        p.attrs["source_name"] = "../evil.h5"
    done = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data2")
    assert done.returncode == 0 and [p.name for p in (tmp_path / "data2").iterdir()] == ["train.h5"], done.stderr


def test_a_scaleoffset_filter_survives_pack_and_unpack(tmp_path):
    src = fx.write_file(tmp_path / "a.h5", 3)
    with h5py.File(src, "r+") as f:
        seed = f["seed"][...]
        attrs = dict(f["seed"].attrs)
        chunks, maxshape = f["seed"].chunks, f["seed"].maxshape
        del f["seed"]
        ds = f.create_dataset("seed", data=seed, chunks=chunks, maxshape=maxshape, scaleoffset=0)
        for k, v in attrs.items():
            ds.attrs[k] = v
    assert validate_file(src).valid
    pack_file(src, tmp_path / "a.pack.h5")
    out, _ = unpack_file(tmp_path / "a.pack.h5", tmp_path / "again.h5")
    with h5py.File(out, "r") as f:
        assert f["seed"].scaleoffset == 0 and f["seed"][...].tolist() == seed.tolist()


def test_renamed_packs_unpack_to_their_own_names_and_a_collision_names_both(tmp_path):
    """Two packs of files both named train.h5, renamed to share a folder, were refused once unpack took the
    recorded name; a pack keeps its source's name only while it has the name pack gave it."""
    (tmp_path / "bundle").mkdir()
    for k in ("x", "y"):
        (tmp_path / k).mkdir()
        pack_file(fx.write_file(tmp_path / k / "train.h5", 1), tmp_path / "bundle" / f"{k}-train.pack.h5")
    done = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["x-train.h5", "y-train.h5"]
    pack_file(tmp_path / "x" / "train.h5", tmp_path / "x" / "train.pack.h5")
    pack_file(tmp_path / "y" / "train.h5", tmp_path / "y" / "train.pack.h5")
    done = cli("unpack", tmp_path / "x" / "train.pack.h5", tmp_path / "y" / "train.pack.h5", "-o", tmp_path / "both")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "x/train.pack.h5 and " in done.stderr and "y/train.pack.h5 would both unpack to train.h5" in done.stderr


def test_a_pack_recording_a_name_that_is_no_hdf5_file_unpacks_to_its_own(tmp_path):
    src = fx.write_file(tmp_path / "manifest.h5", 1)
    (tmp_path / "bundle").mkdir()
    pack_file(src, tmp_path / "bundle" / "manifest.pack.h5")
    with h5py.File(tmp_path / "bundle" / "manifest.pack.h5", "r+") as p:
        p.attrs["source_name"] = "manifest.json"
    done = cli("unpack", tmp_path / "bundle", "-o", tmp_path / "data")
    assert done.returncode == 0 and [p.name for p in (tmp_path / "data").iterdir()] == ["manifest.h5"], done.stderr


@pytest.mark.parametrize("row", [{"pack": "a.pack.h5", "scenes": 1}, {"pack": "../a.pack.h5", "scenes": 1, "pack_bytes": 5}])
def test_a_manifest_entry_without_its_fields_is_refused_before_packing(tmp_path, row):
    a = fx.write_file(tmp_path / "a.h5", 1)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps({"files": [row], "total_bytes": 5}))
    done = cli("pack", a, "-o", tmp_path / "bundle")
    assert done.returncode == 1 and "not a pack manifest" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "bundle" / "a.pack.h5").exists()


def test_packs_missing_from_the_manifest_are_named_and_counted_in_the_budget(tmp_path):
    a, b = fx.write_file(tmp_path / "a.h5", 2), fx.write_file(tmp_path / "b.h5", 1)
    (tmp_path / "bundle").mkdir()
    pack_file(a, tmp_path / "bundle" / "a.pack.h5")  # as an older version left it: no manifest entry
    size_a = (tmp_path / "bundle" / "a.pack.h5").stat().st_size
    done = cli("pack", b, "-o", tmp_path / "bundle", "--max-size", f"{size_a / 2**20}")
    assert done.returncode == 1, done.stderr
    assert "a.pack.h5 not in its manifest" in done.stderr and "over --max-size" in done.stderr
