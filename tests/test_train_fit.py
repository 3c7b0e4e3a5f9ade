"""Training: it learns, checkpoints round-trip and never execute code, resume continues exactly,
saving is atomic, the perceptual term follows the VGG weights file, and the logs are written."""

import csv
import os
import pickle

import numpy as np
import pytest
import torch
from train_fixtures import TINY, single_torch_thread, synthetic_file, tiny_fit_config  # noqa: F401

from focalstack.dataset import FocalStackFile
from focalstack.train.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from focalstack.train.evaluate import evaluate
from focalstack.train.trainer import TrainConfig, fit

cfg = tiny_fit_config


def test_a_few_hundred_steps_lower_the_loss_and_beat_a_constant_depth(tmp_path):
    # depths 0.1 to 1 m, where the blur of these 32 px images still tells depths apart
    train = synthetic_file("learn-train", 40, 32, 101, depth_range=(0.1, 1.0))
    test = synthetic_file("learn-test", 8, 32, 202, depth_range=(0.1, 1.0))
    result = fit(
        TrainConfig(
            data=[str(train)],
            out=str(tmp_path / "learn"),
            arch="fod-depth",
            arch_kwargs={"width": 8},
            epochs=25,
            batch_size=4,
            lr=1e-3,
            val_fraction=0.0,
            progress=False,
            tensorboard=False,
        )
    )  # 25 epochs x 10 batches = 250 steps
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.6 * losses[0], losses
    rows, _ = evaluate(result.last, [str(test)], tmp_path / "eval", settings=("All",), progress=False)
    with FocalStackFile(train) as f:
        constant = float(np.mean([f[i].depth.mean() for i in range(len(f))]))  # best guess without images
    with FocalStackFile(test) as f:
        gts = [f[i].depth for i in range(len(f))]
    const_rmse = float(np.mean([np.sqrt(np.mean((g - constant) ** 2)) for g in gts]))
    const_absrel = float(np.mean([np.mean(np.abs(g - constant) / g) for g in gts]))
    got = rows[0]
    print(
        f"after {result.history[-1]['step']} steps: depth RMSE {got['depth_rmse']:.3f} m, AbsRel "
        f"{got['depth_absrel']:.3f}; constant {const_rmse:.3f} m, {const_absrel:.3f}; "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    assert got["depth_rmse"] < 0.85 * const_rmse
    assert got["depth_absrel"] < 0.7 * const_absrel


def test_checkpoint_round_trip(tmp_path):
    result = fit(cfg(tmp_path, epochs=1, vgg_weights=None))
    ckpt = torch.load(result.last, map_location="cpu", weights_only=True)  # plain data only
    assert ckpt["format"] == "focalstack-train" and ckpt["arch"] == "fod" and ckpt["arch_kwargs"] == TINY
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 3 and ckpt["batch"] == 0
    assert ckpt["optimizer"]["state"] and ckpt["config"]["lr"] == 1e-3
    assert ckpt["norm"] == {
        "focus_scale": 1.5,
        "depth_scale": 3.0,
        "defocus_scale": 5.0,
        "max_depth": 3.0,
        "signed_defocus": False,
    }
    assert ckpt["camera"]["focus_distances"] == pytest.approx([0.1, 0.15, 0.3, 0.7, 1.5])
    model, norm = model_from_checkpoint(load_checkpoint(result.best), result.best)
    assert norm.depth_scale == 3.0
    x, f = torch.rand(1, 5, 3, 32, 32), torch.rand(1, 5)
    trained = {k: v for k, v in ckpt["model"].items()}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x, f)["depth"]).all()


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(tmp_path):
    straight = fit(cfg(tmp_path, "straight", epochs=2))
    killed = fit(cfg(tmp_path, "killed", epochs=2, max_steps=4))  # stops in the middle of epoch 2
    assert killed.stopped_early and load_checkpoint(killed.last)["batch"] == 1
    resumed = fit(cfg(tmp_path, "killed", epochs=2), resume=True)
    a = load_checkpoint(straight.last)
    b = load_checkpoint(resumed.last)
    assert b["global_step"] == a["global_step"] == 6
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-6), k
    rows = list(csv.DictReader(open(resumed.out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train_loss"]) == pytest.approx(straight.history[1]["train_loss"], rel=1e-4)


def test_a_cosine_run_killed_and_resumed_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch):
    from focalstack.train import engine

    straight = fit(cfg(tmp_path, "straight", epochs=2, lr_schedule="cosine"))
    step, calls = engine.Trainer.run_step, []

    def dies_in_step_five(self, batch):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        step(self, batch)

    monkeypatch.setattr(engine.Trainer, "run_step", dies_in_step_five)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg(tmp_path, "killed", epochs=2, lr_schedule="cosine", checkpoint_every=1))
    monkeypatch.setattr(engine.Trainer, "run_step", step)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["global_step"] == 4
    resumed = fit(cfg(tmp_path, "killed", epochs=2), resume=True)  # the schedule comes from the checkpoint
    a, b = load_checkpoint(straight.last), load_checkpoint(resumed.last)
    assert b["global_step"] == a["global_step"] == 6
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-6), k
    lrs = [float(r["lr"]) for r in csv.DictReader(open(resumed.out / "metrics.csv"))]
    assert lrs == pytest.approx([h["lr"] for h in straight.history])
    from focalstack.train.hooks import lr_factor

    # the rate each epoch ended with was set before its last step: steps 3 and 6 of 6 (3 batches an epoch)
    assert lrs == pytest.approx([1e-3 * lr_factor("cosine", step / 6) for step in (2, 5)])


def test_rerunning_a_run_stopped_at_max_steps_changes_nothing_and_says_so(tmp_path):
    first = fit(cfg(tmp_path, "capped", epochs=2, max_steps=4))
    before = load_checkpoint(first.last)
    again = fit(cfg(tmp_path, "capped", epochs=2, max_steps=4), resume=True)
    after = load_checkpoint(again.last)
    assert after["global_step"] == before["global_step"] == 4
    assert all(torch.equal(v, after["model"][k]) for k, v in before["model"].items())
    assert "nothing to do: the run reached --max-steps 4 before (step 4)" in (again.out / "train.log").read_text()


def test_resume_refusals(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        fit(cfg(tmp_path, "empty"), resume=True)
    fit(cfg(tmp_path, "one", epochs=1))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(cfg(tmp_path, "one", epochs=1))
    with pytest.raises(CheckpointError, match="architecture 'fod'.*--arch says 'fod-depth'"):
        fit(cfg(tmp_path, "one", arch="fod-depth", arch_kwargs={"width": 4}), resume=True)
    kept = tmp_path / "one" / "best.pt"
    (tmp_path / "one" / "last.pt").unlink()  # a folder of shipped or copied weights: best.pt alone
    before = kept.read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run's best.pt \(no last.pt to resume from\)"):
        fit(cfg(tmp_path, "one", epochs=1))
    assert kept.read_bytes() == before


def test_saving_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"arch": "fod", "value": torch.ones(3)})

    def broken(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"arch": "fod", "value": torch.zeros(3)})
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_a_checkpoint_never_executes_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "focalstack-train", "payload": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pt: not a focalstack-train checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "EVIL_RAN").exists()


def test_other_architecture_weights_are_refused(tmp_path):
    result = fit(cfg(tmp_path, epochs=1))
    ckpt = load_checkpoint(result.last)
    with pytest.raises(CheckpointError, match="expected 'fod-depth'"):
        model_from_checkpoint(ckpt, result.last, arch="fod-depth")
    ckpt["arch"] = "fod-aif-direct"  # claims another architecture: the weights do not fit it
    with pytest.raises(CheckpointError, match="weights do not fit architecture 'fod-aif-direct'.*another shape"):
        model_from_checkpoint(ckpt, result.last)
    ckpt["arch"], ckpt["arch_kwargs"] = "fod-depth", {"width": 4}
    with pytest.raises(CheckpointError, match="weights do not fit architecture 'fod-depth'.*unexpected"):
        model_from_checkpoint(ckpt, result.last)


def _fake_vgg16_file(path):
    torch.manual_seed(0)
    convs = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256), 14: (256, 256), 17: (256, 512)}
    state = {}
    for i, (a, b) in convs.items():  # torchvision naming, including a layer we do not use
        state[f"features.{i}.weight"] = torch.randn(b, a, 3, 3) * (2 / (9 * a)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(b)
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, path)


def test_perceptual_term_follows_the_vgg_weights_file(tmp_path):
    no_vgg = fit(cfg(tmp_path, "plain", epochs=2))
    log = (no_vgg.out / "train.log").read_text()
    assert log.count("perceptual loss off") == 1
    assert "train_perceptual" not in no_vgg.history[0]
    vgg = tmp_path / "vgg16.pth"
    _fake_vgg16_file(vgg)
    with_vgg = fit(cfg(tmp_path, "vgg", epochs=1, vgg_weights=str(vgg)))
    assert with_vgg.history[0]["train_perceptual"] > 0
    assert "perceptual loss off" not in (with_vgg.out / "train.log").read_text()
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth: .*features.0.weight"):
        fit(cfg(tmp_path, "bad", epochs=1, vgg_weights=str(tmp_path / "bad.pth")))


def test_logs_csv_per_epoch_and_tensorboard(tmp_path):
    result = fit(cfg(tmp_path, epochs=2, tensorboard=True, val_fraction=0.34))
    rows = list(csv.DictReader(open(result.out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for col in (
        "train_loss",
        "train_depth",
        "train_defocus",
        "val_loss",
        "val_depth_rmse",
        "val_delta1",
        "val_bumpiness",
        "val_aif_ssim",
        "val_aif_psnr",
    ):
        assert np.isfinite(float(rows[-1][col])), col
    events = list((result.out / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(result.out / "tb"))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"] and "val/depth_rmse" in acc.Tags()["scalars"]
    assert acc.Tags()["images"]


def test_bf16_autocast_and_channels_last_paths_run(tmp_path):
    """The CUDA defaults (bf16 autocast, channels-last), exercised on the CPU."""
    result = fit(cfg(tmp_path, epochs=1, amp="bf16", channels_last="on", val_fraction=0.34))
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_depth_rmse"])
    model, _ = model_from_checkpoint(load_checkpoint(result.last), result.last)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


def test_cache_data_trains_to_the_same_weights_as_reading_the_file(tmp_path):
    plain = fit(cfg(tmp_path, "plain", epochs=1, val_fraction=0.34))
    cached = fit(cfg(tmp_path, "cached", epochs=1, val_fraction=0.34, cache_data=True, workers=1))
    a, b = load_checkpoint(plain.last)["model"], load_checkpoint(cached.last)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert cached.history[0]["val_loss"] == plain.history[0]["val_loss"]
    assert "decoded 6 scenes into memory" in (cached.out / "train.log").read_text()


def test_the_log_says_which_epochs_became_best_pt_by_validation_loss(tmp_path):
    # A learning rate far too high makes validation loss rise after the first epoch: both kinds of line appear.
    result = fit(cfg(tmp_path, epochs=4, lr=3e-2, vgg_weights=None))
    log = (result.out / "train.log").read_text().splitlines()
    lowest, kinds = float("inf"), set()
    for row in result.history:
        line = next(x for x in log if f"epoch {row['epoch']}: train loss" in x)
        became_best = row["val_loss"] < lowest
        lowest = min(lowest, row["val_loss"])
        assert line.endswith("; saved as best.pt (lowest val loss so far)") == became_best, line
        kinds.add(became_best)
    assert kinds == {True, False}


def test_validation_without_usable_depth_is_refused_before_training(tmp_path):
    """A validation file whose depth is all NaN left the RMSE None, and the epoch line crashed formatting it;
    then its depth loss read 0.0 and chose best.pt by it."""
    import shutil

    import h5py

    val = tmp_path / "no-depth.h5"
    shutil.copy(synthetic_file("fit-train", 6, 32, 21), val)
    with h5py.File(val, "r+") as f:
        f["depth"][...] = np.nan
    with pytest.raises(ValueError, match=r"--val-data .*no-depth.h5: none of its 6 scenes has depth ground truth"):
        fit(cfg(tmp_path, epochs=1, vgg_weights=None, val_data=[str(val)]))


def test_weights_holding_nan_are_refused_by_every_reader(tmp_path):
    """Weights saved by a run that diverged: --init blamed the learning rate, evaluate printed NaN metrics."""
    from train_fixtures import tiny_run

    ckpt = torch.load(tiny_run("fod") / "last.pt", map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=rf"nan.pt: 1 weight tensor\(s\) hold NaN or infinite values \(e.g. {name}\)"):
        model_from_checkpoint(load_checkpoint(bad), bad)
    with pytest.raises(CheckpointError, match="hold NaN or infinite values"):
        fit(cfg(tmp_path, "from-nan", epochs=1, vgg_weights=None, init=str(bad)))


def test_exported_half_weights_keep_a_tensor_beyond_float16_in_float32_and_refuse_nan(tmp_path):
    """t.half() turns values above 65504 into inf, and every reader refuses inf: the GPU run's export would have
    come back unloadable."""
    from train_fixtures import tiny_run

    from focalstack.train.checkpoint import export_weights

    ckpt = torch.load(tiny_run("fod") / "last.pt", map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["model"][name] = ckpt["model"][name].clone().contiguous()
    ckpt["model"][name].view(-1)[0] = 1e5
    big = tmp_path / "big.pt"
    torch.save(ckpt, big)
    export_weights(big, tmp_path / "half.pt", half=True)
    exported = load_checkpoint(tmp_path / "half.pt")
    assert exported["model"][name].dtype == torch.float32 and exported["model"][name].reshape(-1)[0] == 1e5
    assert all(v.dtype == torch.float16 for k, v in exported["model"].items() if k != name and v.is_floating_point())
    model, _ = model_from_checkpoint(exported, tmp_path / "half.pt")  # loads, into float32
    assert model.state_dict()[name].reshape(-1)[0] == 1e5
    ckpt["model"][name].view(-1)[1] = float("nan")
    torch.save(ckpt, big)
    with pytest.raises(CheckpointError, match=rf"big.pt: 1 weight tensor\(s\) hold NaN or infinite values \(e.g. {name}\)"):
        export_weights(big, tmp_path / "nan.pt", half=True)
    assert not (tmp_path / "nan.pt").exists()


def test_a_training_file_without_usable_depth_is_refused_before_training(tmp_path):
    """Depth all NaN (or all beyond --max-depth) leaves every depth pixel out of the loss: the depth term
    would read 0 at every step and the run would 'train' without a word. It is refused, naming the file."""
    import h5py
    from train_fixtures import write_synthetic

    blank = write_synthetic(tmp_path / "blank.h5", 4, 32, seed=3)
    with h5py.File(blank, "r+") as f:
        f["depth"][...] = np.nan
    with pytest.raises(ValueError, match=r"blank.h5: none of its \d+ training scenes has depth ground truth in \(0, 3\] m"):
        fit(tiny_fit_config(tmp_path, "nan", data=[str(blank)], arch="fod-depth", arch_kwargs={"width": 4}, epochs=1))
    assert not (tmp_path / "nan").exists()  # refused while the run was built: no empty --out left

    far = write_synthetic(tmp_path / "far.h5", 4, 32, seed=3, depth_range=(4.0, 6.0))
    with pytest.raises(ValueError, match="far.h5: .*larger --max-depth"):
        fit(tiny_fit_config(tmp_path, "far", data=[str(far)], arch="fod-depth", arch_kwargs={"width": 4}, epochs=1))
    # the same file trains once --max-depth takes its depth in
    norm = {**tiny_fit_config(tmp_path).norm, "max_depth": 7.0}
    fit(
        tiny_fit_config(
            tmp_path, "far-ok", data=[str(far)], arch="fod-depth", arch_kwargs={"width": 4}, epochs=1, norm=norm, max_steps=1
        )
    )

    # a validation file as far away: its depth loss read 0.0 (and chose best.pt by it)
    good = synthetic_file("fit-train", 6, 32, 21)
    with pytest.raises(ValueError, match=r"--val-data .*far.h5: none of its 4 scenes has depth ground truth in \(0, 3\] m"):
        fit(
            tiny_fit_config(
                tmp_path, "far-val", data=[str(good)], val_data=[str(far)], arch="fod-depth", arch_kwargs={"width": 4}
            )
        )

    # one scene with depth is enough: the file is read up to it
    with h5py.File(blank, "r+") as f:
        depth = f["depth"][0]
        depth[5, 5] = 1.0
        f["depth"][0] = depth
    fit(
        tiny_fit_config(
            tmp_path,
            "one",
            data=[str(blank)],
            arch="fod-depth",
            arch_kwargs={"width": 4},
            epochs=1,
            max_steps=1,
            val_fraction=0.0,
        )
    )


def test_a_file_given_twice_or_a_loss_weight_given_twice_is_refused(tmp_path):
    """Twice in --data the file was sampled twice as often; as --val-data too, best.pt was chosen on training
    scenes; --loss-weight depth=1 --loss-weight depth=2 kept the last without a word."""
    from focalstack.train.losses import LossWeights

    data = synthetic_file("fit-twice", 4, 32, 2)
    link = tmp_path / "link.h5"
    link.symlink_to(data)
    with pytest.raises(ValueError, match=r"--data .*fit-twice.h5: the same file as --data .*fit-twice.h5"):
        fit(tiny_fit_config(tmp_path, "a", data=[str(data), str(link)]))
    with pytest.raises(ValueError, match=r"--val-data .*: also a training file \(--data .*fit-twice.h5\)"):
        fit(tiny_fit_config(tmp_path, "b", data=[str(data)], val_data=[str(link)]))
    other = synthetic_file("fit-twice-val", 2, 32, 3)
    with pytest.raises(ValueError, match=r"--val-data .*fit-twice-val.h5: the same file as --val-data"):
        fit(tiny_fit_config(tmp_path, "c", data=[str(data)], val_data=[str(other), str(other)]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="'depth=2': depth was given a weight already"):
        LossWeights.parse(["depth=1", "aif=0.5", "depth=2"])


def test_every_public_name_of_the_package_is_what_it_says_after_its_modules_load():
    """focalstack.train.evaluate was the function only until the evaluate module was imported, after which
    the package attribute was the module: `from focalstack.train import evaluate` gave a module."""
    import importlib
    import pkgutil
    import types

    import focalstack.train as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("__main__",):
            importlib.import_module(f"focalstack.train.{info.name}")
    for name in package.__all__:
        assert not isinstance(getattr(package, name), types.ModuleType), name
