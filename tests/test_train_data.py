"""The HDF5 data pipeline: weighted mixing, validation split, random stack subsets, flips and crops,
normalisation, per-worker file handles, and one-line errors for files that do not fit together."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from train_fixtures import single_torch_thread, synthetic_file, write_synthetic  # noqa: F401

from focalstack.dataset import DatasetError, defocus_maps
from focalstack.train.data import (
    FocalStackDataset,
    Norm,
    check_compatible,
    inspect_source,
    make_loader,
    parse_data_spec,
    to_model_inputs,
)
from focalstack.train.plan import PlanSettings, SampleKey, plan_epoch, plan_eval, split_scenes


def test_data_spec_with_and_without_weight():
    assert parse_data_spec("train.h5") == ("train.h5", 1.0)
    assert parse_data_spec("walls.h5:0.3") == ("walls.h5", 0.3)
    assert parse_data_spec("dir:with:colons/x.h5") == ("dir:with:colons/x.h5", 1.0)
    with pytest.raises(ValueError, match="walls.h5:-1"):
        parse_data_spec("walls.h5:-1")


def _sources(weights=(1.0, 1.0)):
    a = inspect_source(synthetic_file("data-a", 10, 16, 1), weights[0])
    b = inspect_source(synthetic_file("data-b", 10, 16, 2), weights[1])
    return [a, b]


def test_equal_weights_make_an_epoch_a_permutation():
    sources = _sources()
    scenes = [np.arange(10), np.arange(10)]
    batches = plan_epoch(sources, scenes, PlanSettings(batch_size=3, stack_size=5), seed=0, epoch=0)
    drawn = sorted((k.file, k.scene) for b in batches for k in b)
    assert drawn == sorted((f, s) for f in range(2) for s in range(10))


def test_sampling_weights_are_per_scene_and_relative():
    sources = _sources((1.0, 0.25))
    settings = PlanSettings(batch_size=50, stack_size=5, samples_per_epoch=4000)
    keys = [k for b in plan_epoch(sources, [np.arange(10), np.arange(10)], settings, 0, 0) for k in b]
    share_b = np.mean([k.file == 1 for k in keys])
    assert abs(share_b - 0.25 * 10 / (10 + 0.25 * 10)) < 0.03  # 0.2 expected


def test_plans_depend_on_seed_and_epoch_only():
    sources = _sources()
    s = PlanSettings(batch_size=4, stack_size=5, random_stack=True, crop=(8, 8))
    scenes = [np.arange(10), np.arange(10)]
    assert plan_epoch(sources, scenes, s, 3, 1) == plan_epoch(sources, scenes, s, 3, 1)
    assert plan_epoch(sources, scenes, s, 3, 1) != plan_epoch(sources, scenes, s, 3, 2)
    assert plan_epoch(sources, scenes, s, 3, 1) != plan_epoch(sources, scenes, s, 4, 1)


def test_validation_split_is_disjoint_seeded_and_complete():
    tr, va = split_scenes(20, 0.25, seed=5)
    assert len(va) == 5 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(20))
    assert [list(x) for x in split_scenes(20, 0.25, 5)] == [list(tr), list(va)]
    assert len(split_scenes(3, 0.1, 0)[1]) == 1  # at least one held out
    assert len(split_scenes(1, 0.5, 0)[1]) == 0  # but never the only scene
    with pytest.raises(ValueError, match="val-fraction"):
        split_scenes(10, 1.0, 0)


def test_random_stack_subsets_vary_in_length_and_order_and_stay_consistent():
    sources = _sources()
    settings = PlanSettings(batch_size=2, stack_size=5, random_stack=True, flips=False)
    batches = plan_epoch(sources, [np.arange(10), np.arange(10)], settings, 0, 0)
    lengths = {len(k.slices) for b in batches for k in b}
    assert len(lengths) >= 3 and lengths <= {1, 2, 3, 4, 5}
    assert all(len({len(k.slices) for k in b}) == 1 for b in batches)  # one length per batch
    assert any(list(k.slices) != sorted(k.slices) for b in batches for k in b)  # some out of order
    ds = FocalStackDataset([s.path for s in sources])
    camera = sources[0].camera
    for b in batches[:6]:
        for k in b:
            item = ds[k]
            # the defocus maps and focus distances follow the stack's subset and order
            want = defocus_maps(
                item["depth"].numpy(),
                item["focus"].numpy(),
                camera["f_number"],
                camera["focal_length_mm"],
                camera["sensor_width_mm"],
            )
            assert np.allclose(item["defocus"].numpy(), want, atol=1e-4)
            assert item["stack"].shape == (len(k.slices), 3, 16, 16) and item["stack"].dtype == torch.uint8
    ds.close()


@pytest.mark.parametrize(
    "flip_h, flip_v, transpose, crop",
    [(True, True, False, (3, 5, 8, 10)), (True, False, True, (3, 5, 9, 9))],
    ids=["flips", "flip-and-transpose"],
)
def test_crops_flips_and_transposes_move_every_array_together(flip_h, flip_v, transpose, crop):
    """The crop first, then the flips, then the transpose (rows and columns swapped), on every array alike."""
    path = synthetic_file("data-a", 10, 16, 1)
    ds = FocalStackDataset([str(path)])
    base = ds[SampleKey(0, 2, (0, 1, 2, 3, 4))]
    got = ds[SampleKey(0, 2, (0, 1, 2, 3, 4), flip_h=flip_h, flip_v=flip_v, crop=crop, transpose=transpose)]
    y, x, h, w = crop
    for name in ("stack", "aif", "defocus", "depth", "edges"):
        want = base[name][..., y : y + h, x : x + w]
        want = want.flip(-1) if flip_h else want
        want = want.flip(-2) if flip_v else want
        want = want.transpose(-1, -2) if transpose else want
        assert torch.equal(got[name], want), name
    ds.close()


def test_loader_with_worker_processes_reads_the_same_as_without():
    path = synthetic_file("data-a", 10, 16, 1)
    ds = FocalStackDataset([str(path)])
    ds[SampleKey(0, 0, (0,))]  # the parent opens the file first: workers must not reuse its handle
    batches = [[SampleKey(0, i, (4, 0, 2), flip_h=bool(i % 2)) for i in range(j, j + 2)] for j in (0, 2, 4, 6)]
    a = [b["stack"] for b in make_loader(ds, batches, workers=0)]
    b = [b["stack"] for b in make_loader(ds, batches, workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == 4
    ds.close()


def test_eval_plans_all_and_random():
    sources = _sources()
    scenes = [np.arange(10), np.arange(4)]
    full = plan_eval(sources, scenes, 4, "All")
    assert sorted((k.file, k.scene) for b in full for k in b) == [(0, i) for i in range(10)] + [(1, i) for i in range(4)]
    assert all(k.slices == (0, 1, 2, 3, 4) for b in full for k in b)
    assert all(len({k.file for k in b}) == 1 for b in full)  # batches never mix files
    rand = plan_eval(sources, scenes, 4, "Random", seed=1)
    assert sorted((k.file, k.scene) for b in rand for k in b) == sorted((k.file, k.scene) for b in full for k in b)
    assert all(len({len(k.slices) for k in b}) == 1 for b in rand)
    assert len({len(k.slices) for b in rand for k in b}) > 1
    assert plan_eval(sources, scenes, 4, "Random", seed=1) == rand


def test_normalisation_and_depth_mask():
    norm = Norm(focus_scale=1.5, depth_scale=3.0, defocus_scale=5.0, max_depth=2.0)
    batch = {
        "stack": torch.full((1, 2, 3, 2, 2), 255, dtype=torch.uint8),
        "focus": torch.tensor([[0.3, 1.5]]),
        "defocus": torch.tensor([[[[-2.0, 1.0], [0.0, 5.0]]] * 2]),
        "depth": torch.tensor([[[1.5, 2.5], [1e10, float("nan")]]]),
        "aif": torch.zeros((1, 3, 2, 2), dtype=torch.uint8),
        "edges": torch.ones((1, 2, 2), dtype=torch.uint8),
    }
    inputs, t = to_model_inputs(batch, norm, torch.device("cpu"))
    assert torch.all(inputs["stack"] == 1.0) and torch.allclose(inputs["focus"], torch.tensor([[0.2, 1.0]]))
    assert t["depth_mask"].tolist() == [[[True, False], [False, False]]]
    assert t["depth"][0, 0, 0] == pytest.approx(0.5)
    assert t["defocus"][0, 0, 0, 0] == pytest.approx(0.4)  # |-2| / 5: absolute by default
    _, signed = to_model_inputs(batch, Norm(signed_defocus=True), torch.device("cpu"))
    assert signed["defocus"][0, 0, 0, 0] == pytest.approx(-0.4)


def test_transposes_are_drawn_only_when_asked_and_leave_plans_without_them_as_they_were():
    sources = _sources()
    scenes = [np.arange(10), np.arange(10)]
    plain = PlanSettings(batch_size=4, stack_size=5, crop=(8, 8))
    keys = [k for b in plan_epoch(sources, scenes, plain, 3, 1) for k in b]
    assert not any(k.transpose for k in keys)
    # Off, the random stream is not touched: the first keys are the ones planned before transposes existed
    # (focalstack 26ade91), so a run started then resumes with the same samples.
    first = [(k.file, k.scene, int(k.flip_h), int(k.flip_v), k.crop[:2]) for k in keys[:6]]
    assert first == [
        (0, 7, 1, 0, (5, 8)),
        (1, 7, 1, 0, (4, 2)),
        (1, 6, 1, 1, (7, 5)),
        (0, 2, 0, 0, (6, 1)),
        (1, 3, 0, 0, (3, 3)),
        (0, 6, 1, 1, (4, 5)),
    ]
    on = PlanSettings(batch_size=4, stack_size=5, transposes=True, samples_per_epoch=400)
    drawn = [k for b in plan_epoch(sources, scenes, on, 3, 1) for k in b]
    orientations = {(k.flip_h, k.flip_v, k.transpose) for k in drawn}
    assert len(orientations) == 8  # every one of the square's eight orientations
    assert 0.4 < np.mean([k.transpose for k in drawn]) < 0.6
    assert drawn == [k for b in plan_epoch(sources, scenes, on, 3, 1) for k in b]


def test_transposes_need_square_samples(tmp_path):
    five = inspect_source(synthetic_file("data-a", 10, 16, 1))
    assert check_compatible([five], None, None, transposes=True) == 5
    assert check_compatible([five], None, (12, 12), transposes=True) == 5
    with pytest.raises(ValueError, match=r"--transposes: the crop 12x10 is not square"):
        check_compatible([five], None, (12, 10), transposes=True)
    wide = dataclasses.replace(five, path="wide.h5", image_size=(16, 24))  # a panorama's shape
    with pytest.raises(ValueError, match=r"--transposes: the 16x24 images of .*wide.h5 are not square"):
        check_compatible([wide], None, None, transposes=True)


def test_files_that_do_not_fit_together_are_refused_with_their_names(tmp_path):
    five = inspect_source(synthetic_file("data-a", 10, 16, 1))
    three = inspect_source(write_synthetic(tmp_path / "three.h5", 2, 16, focus=(0.1, 0.3, 1.5)))
    with pytest.raises(ValueError, match=r"stack sizes differ.*data-a.h5 has 5.*three.h5 has 3.*--stack-size <= 3"):
        check_compatible([five, three], None, None)
    assert check_compatible([five, three], 3, None) == 3
    with pytest.raises(ValueError, match="--stack-size 4: .*three.h5 has 3"):
        check_compatible([five, three], 4, None)
    big = inspect_source(synthetic_file("data-big", 2, 24, 3))
    with pytest.raises(ValueError, match=r"image sizes differ.*16x16.*24x24.*--crop"):
        check_compatible([five, big], None, None)
    assert check_compatible([five, big], None, (16, 16)) == 5
    with pytest.raises(ValueError, match="--crop 20x20"):
        check_compatible([five, big], None, (20, 20))


def test_missing_and_foreign_files_raise_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="nope.h5"):
        inspect_source(str(tmp_path / "nope.h5"))
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="foreign.h5.*not a focalstack file"):
        inspect_source(str(foreign))
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(DatasetError, match="text.h5"):
        inspect_source(str(text))


def test_short_stacks_use_only_their_distinct_slices(tmp_path):
    """Scenes with stack_size < S repeat their last slice; plans draw from the distinct ones only."""
    import json

    from train_fixtures import synthetic_scene

    from focalstack.dataset import FocalStackWriter

    path = tmp_path / "short.h5"
    rng = np.random.default_rng(0)
    attrs = {
        "generator_version": "t",
        "blender_version": "none",
        "created_utc": "2000-01-01T00:00:00Z",
        "preset": "t",
        "config": {"t": 1},
        "defocus_model": "cycles",
    }
    sizes = [5, 2, 3, 1]
    with FocalStackWriter.create_or_resume(path, n_slices=5, height=16, width=16, attrs=attrs) as w:
        for k in sizes:
            rec = synthetic_scene(rng, 16)
            for name in ("stack", "defocus", "focus_distance"):
                arr = getattr(rec, name)
                arr[k:] = arr[k - 1]  # the writer's convention: repeat the last distinct slice
            rec.stack_size = k
            rec.scene = json.dumps({"k": k})
            w.append(rec)
    src = inspect_source(str(path))
    assert [src.distinct(i) for i in range(4)] == sizes
    full = [k for b in plan_eval([src], [np.arange(4)], 4, "All") for k in b]
    assert sorted((k.scene, k.slices) for k in full) == [(i, tuple(range(n))) for i, n in enumerate(sizes)]
    rand = [k for b in plan_eval([src], [np.arange(4)], 4, "Random", seed=3) for k in b]
    assert all(max(k.slices) < sizes[k.scene] and len(set(k.slices)) == len(k.slices) for k in rand)
    for random_stack in (True, False):
        settings = PlanSettings(batch_size=4, stack_size=5, random_stack=random_stack, samples_per_epoch=40)
        for b in plan_epoch([src], [np.arange(4)], settings, 0, 0):
            assert len({len(k.slices) for k in b}) == 1
            for k in b:
                assert max(k.slices) < sizes[k.scene]
                assert len(set(k.slices)) == min(len(k.slices), sizes[k.scene])


def test_samples_from_the_memory_cache_equal_samples_read_from_the_file():
    path = str(synthetic_file("data-a", 10, 16, 1))
    plain, cached = FocalStackDataset([path]), FocalStackDataset([path])
    assert (
        cached.cache_in_memory()
        == cached.cache_nbytes()
        == 10 * (5 * 16 * 16 * 3 + 5 * 16 * 16 * 4 + 16 * 16 * 4 + 16 * 16 * 3 + 16 * 16)
    )
    keys = [
        SampleKey(0, 3, (4, 0, 2)),
        SampleKey(0, 7, (1,), flip_h=True, crop=(2, 3, 8, 9)),
        SampleKey(0, 9, (0, 1, 2, 3, 4), flip_v=True, flip_h=True),
    ]
    for key in keys:
        a, b = plain[key], cached[key]
        assert a.keys() == b.keys()
        for name, value in a.items():
            assert torch.equal(value, b[name]) if isinstance(value, torch.Tensor) else value == b[name], name
    batches = [[SampleKey(0, i, (4, 0, 2), flip_h=bool(i % 2)) for i in range(j, j + 2)] for j in (0, 2, 4, 6)]
    forked = list(make_loader(cached, batches, workers=2))  # workers share the parent's cache
    assert all(torch.equal(x["stack"], y["stack"]) for x, y in zip(forked, make_loader(plain, batches, 0)))
    plain.close()
    cached.close()


def test_a_memory_cache_that_does_not_fit_is_refused_naming_the_option(monkeypatch):
    import focalstack.train.data as data

    ds = FocalStackDataset([str(synthetic_file("data-a", 10, 16, 1))])
    monkeypatch.setattr(data, "available_memory", lambda: 10_000)
    with pytest.raises(ValueError, match=r"--cache-data: the files need 0.0 GB decoded, 0.0 GB of memory is available"):
        ds.cache_in_memory()
    ds.close()


def test_the_memory_cache_gives_the_samples_of_a_file_whose_defocus_is_recomputed(tmp_path):
    """Rendered files store no defocus maps (readers recompute them from depth); the cache must too."""
    from train_fixtures import CAMERA, FOCUS, synthetic_scene

    from focalstack.dataset import FocalStackFile, FocalStackWriter
    from focalstack.dataset.groundtruth import stored_defocus_maps
    from focalstack.dataset.provenance import rendered_declaration
    from focalstack.train.data import FocalStackDataset, inspect_source
    from focalstack.train.plan import plan_eval

    path = tmp_path / "recomputed.h5"
    attrs = {
        "generator_version": "tests",
        "blender_version": "none",
        "created_utc": "2000-01-01T00:00:00Z",
        "preset": "synthetic",
        "config": {"synthetic": True},
        "defocus_model": "cycles",
    }
    rng = np.random.default_rng(0)
    with FocalStackWriter.create_or_resume(
        path,
        n_slices=len(FOCUS),
        height=24,
        width=24,
        attrs=attrs,
        ground_truth=rendered_declaration("cycles", store_defocus=False),
    ) as w:
        for i in range(3):
            rec = synthetic_scene(rng, 24, FOCUS, CAMERA, (0.12, 2.9))
            rec.seed = i
            # as the renderer does: the maps the readers will recompute from the stored values
            rec.defocus = stored_defocus_maps(
                rec.depth, rec.focus_distance, rec.f_number, rec.focal_length_mm, rec.sensor_width_mm, "cycles"
            )
            w.append(rec)
    with FocalStackFile(path) as f:
        assert "defocus" not in f._h5  # really recomputed
    keys = [k for b in plan_eval([inspect_source(str(path))], [np.arange(3)], 1, "All", 0) for k in b]
    plain = FocalStackDataset([str(path)])
    cached = FocalStackDataset([str(path)])
    assert cached.cache_in_memory() == cached.cache_nbytes() > 0
    for k in keys:
        a, b = plain[k], cached[k]
        for name in ("stack", "defocus", "depth", "aif", "edges"):
            assert torch.equal(a[name], b[name]), name


def test_a_files_random_subsets_do_not_depend_on_the_files_listed_before_it():
    """evaluate --data a.h5 --data b.h5 scored b.h5's Random row on other subsets than --data b.h5 alone."""
    from focalstack.train.plan import plan_subsets

    a, b = _sources()
    scenes = np.arange(10)
    for plan in (
        lambda srcs, sc: plan_eval(srcs, sc, 4, "Random", seed=3),
        lambda srcs, sc: plan_subsets(srcs, sc, 4, 3, "random", seed=3),
    ):
        alone = [[(k.scene, k.slices) for k in batch] for batch in plan([b], [scenes])]
        second = [[(k.scene, k.slices) for k in batch] for batch in plan([a, b], [np.arange(0), scenes])]
        assert second == alone
        assert {len(s) for batch in alone for _, s in batch} != {5}  # random subsets, not the full stacks
