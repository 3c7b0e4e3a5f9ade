"""Salvage of damaged files: cut short at several points (the robustness probe's 100 B, 4 KiB and 40 %) or
with a damaged chunk in the middle; every scene kept equals the original, no scene with a damaged or lost
chunk is kept, and the result is a file the writer resumes."""

from __future__ import annotations

import shutil

import dataset_fixtures as fx
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from focalstack.dataset import FocalStackFile
from focalstack.dataset.cli import main
from focalstack.dataset.salvage import recorded_length, salvage
from focalstack.dataset.schema import DatasetError

N = 6


def original(tmp_path):
    path = fx.write_file(tmp_path / "good.h5", N, height=32, width=32)
    with FocalStackFile(path) as f:
        scenes = [f[i] for i in range(N)]
    return path, scenes


def assert_same(a, b):
    for name, value in a.arrays().items():
        np.testing.assert_array_equal(value, b.arrays()[name], err_msg=name)


def test_new_files_carry_checksums_and_a_damaged_chunk_is_a_clear_error(tmp_path):
    path, _ = original(tmp_path)
    with h5py.File(path) as f:
        assert f["stack"].fletcher32 and f["depth"].fletcher32 and f["seed"].fletcher32
        info = f["depth"].id.get_chunk_info_by_coord((2, 0, 0))
    with open(path, "r+b") as fh:  # flip a byte inside scene 2's depth chunk
        fh.seek(info.byte_offset + info.size // 2)
        byte = fh.read(1)
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with FocalStackFile(path) as f:
        f[1]
        with pytest.raises(DatasetError, match="'depth' of row 2 cannot be read: damaged .*salvage"):
            f[2]
    report = salvage(path, tmp_path / "rescued.h5")
    assert report.kept == [0, 1, 3, 4, 5] and report.dropped[0][0] == 2 and "depth" in report.dropped[0][1]
    assert not report.resumable


@pytest.mark.parametrize("cut", [100, 4096, "40%"])
def test_a_file_cut_short_keeps_exactly_its_intact_scenes(tmp_path, cut):
    path, scenes = original(tmp_path)
    size = path.stat().st_size
    keep = size - cut if isinstance(cut, int) else int(size * 0.6)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(path.read_bytes()[:keep])
    assert recorded_length(broken) == size
    with pytest.raises(OSError):
        h5py.File(broken, "r")  # HDF5 refuses it as it is
    report = salvage(broken, tmp_path / "rescued.h5")
    assert report.missing_bytes == size - keep and report.checksums
    # What a repair without checksums or extents would hand out: the zero-extended file, read as it is
    extended = tmp_path / "extended.h5"
    shutil.copy(broken, extended)
    with open(extended, "r+b") as fh:
        fh.truncate(size)
    right = []
    with FocalStackFile(extended) as f:
        for i in range(len(f)):
            try:
                same = all(np.array_equal(v, scenes[i].arrays()[k]) for k, v in f[i].arrays().items())
            except Exception:  # noqa: BLE001 - a damaged chunk: not right either
                same = False
            right.append(same)
    assert set(report.kept) <= {i for i, ok in enumerate(right) if ok}  # never a wrong scene
    assert sorted(report.kept + [i for i, _ in report.dropped]) == list(range(report.complete))
    if cut in (100, 4096):
        assert len(report.kept) >= N - 1  # a small cut costs at most the last scene
    else:
        assert 0 < len(report.kept) < N and not all(right)  # the 40 % cut: some scenes lost, and caught
    with FocalStackFile(tmp_path / "rescued.h5") as g:
        assert len(g) == len(report.kept)
        for k, i in enumerate(report.kept):
            assert_same(g[k], scenes[i])
    # the writer resumes it (same settings), appending after the kept scenes
    if report.resumable:
        with fx.open_writer(tmp_path / "rescued.h5", height=32, width=32) as w:
            assert len(w) == len(report.kept)
            w.append(fx.make_record(len(report.kept), height=32, width=32))


def test_cli_salvage_lists_what_it_dropped_and_refuses_its_own_input(tmp_path):
    path, _ = original(tmp_path)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    result = CliRunner().invoke(main, ["salvage", str(broken), "-o", str(tmp_path / "rescued.h5")])
    assert result.exit_code == 0, result.output
    assert "bytes shorter than its header records" in result.output and "complete scene(s) kept" in result.output
    result = CliRunner().invoke(main, ["salvage", str(broken), "-o", str(broken)])
    assert result.exit_code == 1 and "is also an input" in result.output
    shutil.copy(tmp_path / "rescued.h5", tmp_path / "again.h5")
    result = CliRunner().invoke(main, ["salvage", str(broken), "-o", str(tmp_path / "again.h5")])
    assert result.exit_code == 1 and "exists" in result.output


def test_a_file_with_no_intact_scene_or_no_valid_rescue_leaves_out_as_it_was(tmp_path):
    """Salvage once replaced a good OUT (--force) with a file of no scenes, and called a file without 'stack' saved."""
    path, _ = original(tmp_path)
    out = tmp_path / "out.h5"
    shutil.copy(path, out)
    before = out.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:20000])  # the header survives, every scene's chunks are past the cut
    nostack = tmp_path / "nostack.h5"
    shutil.copy(path, nostack)
    with h5py.File(nostack, "r+") as f:
        del f["stack"]
    for source, why in [
        (cut, r"cut.h5: no complete scene is intact \(none is recorded complete where the file is intact\); nothing"),
        (nostack, r"nostack.h5: its intact scenes do not make a valid file \(dataset 'stack' missing.*\); nothing salvaged"),
    ]:
        with pytest.raises(DatasetError, match=why):
            salvage(source, out)
        assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out.h5"]
    result = CliRunner().invoke(main, ["salvage", str(cut), "-o", str(out), "--force"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "nothing salvaged" in result.output
    assert out.read_bytes() == before


@pytest.mark.parametrize("damage", ["cut inside the header", "heap overwritten"])
def test_damaged_metadata_is_one_line_naming_the_file(tmp_path, damage, monkeypatch):
    """A file cut inside its header hung in HDF5 (its zero-extended copy) or ended in h5py's KeyError; a damaged
    global heap in 'Can't synchronously read data (...)', naming neither the file nor salvage."""
    import focalstack.dataset.salvage as salvage_module

    monkeypatch.setattr(salvage_module, "HEADER_SECONDS", 5)  # the child that reads the header hangs until then
    path, _ = original(tmp_path)
    broken = tmp_path / "broken.h5"
    data = bytearray(path.read_bytes())
    if damage == "cut inside the header":
        data = data[:3000]
    else:
        heap = data.find(b"GCOL")  # the global heap collection of the variable-length strings
        assert heap > 0
        data[heap : heap + 4] = b"\xff" * 4
    broken.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["salvage", str(broken), "-o", str(tmp_path / "out.h5")])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "broken.h5" in result.output and "nothing salvaged" in result.output
    assert not (tmp_path / "out.h5").exists()


def test_an_error_writing_the_rescue_names_the_output_not_the_source(tmp_path, monkeypatch):
    """A full disk was reported as 'SOURCE: HDF5 cannot read what salvage needs of it', blaming a sound file."""
    path, _ = original(tmp_path)

    def full_disk(self, key, value):
        raise OSError("Can't write data (file write failed: No space left on device)")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    with pytest.raises(DatasetError, match=r"out.h5: cannot write the salvaged file \(Can't write data"):
        salvage(path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_a_rescue_of_rows_with_a_gap_is_not_called_resumable(tmp_path):
    """With row 1 incomplete, rows 0 and 2 were kept and called resumable: a render would refuse the file (row 1
    holds seed 2)."""
    path, _ = original(tmp_path)
    with h5py.File(path, "r+") as f:
        f["complete"][1] = False
    result = CliRunner().invoke(main, ["salvage", str(path), "-o", str(tmp_path / "s.h5")])
    assert result.exit_code == 0, result.output
    assert f"{N - 1} of {N - 1} complete scene(s) kept" in result.output
    assert "can resume" not in result.output and "good.h5's first rows in order (a row not kept lies between" in result.output
    report = salvage(path, tmp_path / "s2.h5")
    assert report.kept_rows == [0, *range(2, N)] and not report.resumable
    fx.append_incomplete(path)  # the first rows, then an incomplete one: resumable
    with h5py.File(path, "r+") as f:
        f["complete"][1] = True
    assert salvage(path, tmp_path / "s3.h5").resumable


def test_salvage_keeps_a_scaleoffset_filter(tmp_path):
    path, _ = original(tmp_path)
    with h5py.File(path, "r+") as f:
        seed, attrs, chunks, maxshape = f["seed"][...], dict(f["seed"].attrs), f["seed"].chunks, f["seed"].maxshape
        del f["seed"]
        ds = f.create_dataset("seed", data=seed, chunks=chunks, maxshape=maxshape, scaleoffset=0)
        for k, v in attrs.items():
            ds.attrs[k] = v
    salvage(path, tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["seed"].scaleoffset == 0 and f["seed"][...].tolist() == seed.tolist()
