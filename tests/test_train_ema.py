"""A moving average of the weights (``fit --ema``): how it is updated, that validation scores it and the
run's files stand for it, and that a killed and resumed run keeps the same average."""

import csv

import pytest
import torch
from click.testing import CliRunner
from train_fixtures import single_torch_thread, tiny_fit_config  # noqa: F401

from focalstack.train import trainer as trainer_module
from focalstack.train.checkpoint import export_weights, inference_weights, load_checkpoint, model_from_checkpoint
from focalstack.train.cli import main
from focalstack.train.hooks import WeightAverage, average_decay
from focalstack.train.trainer import fit


def test_the_decay_starts_low_so_the_first_weights_fade_and_then_holds():
    assert average_decay(0.999, 0) == pytest.approx(0.1)
    assert average_decay(0.999, 10) == pytest.approx(11 / 20)
    assert average_decay(0.999, 10**6) == 0.999
    assert average_decay(0.5, 5) == pytest.approx(0.4) and average_decay(0.5, 8) == 0.5


class _Holder:  # what the hook reads of a trainer
    def __init__(self, model):
        self.model = model


def test_the_average_follows_its_recurrence_and_is_applied_only_inside_the_block():
    model = torch.nn.Linear(2, 1)
    hook = WeightAverage(0.5)
    hook.trainer = _Holder(model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    hook.before_train()
    expected = torch.ones(1, 2)
    for step, value in enumerate([3.0, -2.0, 5.0, 7.0, 0.0, 4.0, 1.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        hook.after_step()
        d = average_decay(0.5, step)  # 0.1, 2/11, 3/12, ..., 7/16: below 0.5 throughout
        expected = d * expected + (1 - d) * value
    assert torch.allclose(hook.average["weight"], expected)
    with hook.applied():
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, torch.full((1, 2), 1.0))  # the raw weights are back
    state = hook.state_dict()
    again = WeightAverage(0.9)
    again.load_state_dict(state)
    assert again.decay == 0.5 and again.updates == 7 and torch.equal(again.average["weight"], expected)
    with pytest.raises(ValueError, match="--ema 1.0"):
        WeightAverage(1.0)


def test_validation_scores_the_average_and_the_runs_files_stand_for_it(tmp_path, monkeypatch):
    seen = []  # the network's weights each time validation scored it
    real = trainer_module.validation_scores

    def recording(dataset, workers):
        score = real(dataset, workers)

        def scored(t, batches, merge):
            seen.append({k: v.detach().clone() for k, v in t.model.state_dict().items()})
            return score(t, batches, merge)

        return scored

    monkeypatch.setattr(trainer_module, "validation_scores", recording)
    run = fit(tiny_fit_config(tmp_path, "ema", ema=0.9, val_fraction=0.34))
    ckpt = load_checkpoint(run.last)
    average, raw = ckpt["weight_average"]["model"], ckpt["model"]
    assert ckpt["weight_average"]["updates"] == ckpt["global_step"] == 4 and ckpt["config"]["ema"] == 0.9
    assert len(seen) == 2 and all(torch.equal(seen[-1][k], v) for k, v in average.items())
    assert not all(torch.allclose(v, raw[k], atol=1e-6) for k, v in average.items())
    assert inference_weights(ckpt) is average
    model, _ = model_from_checkpoint(ckpt, run.last)
    assert all(torch.equal(v, average[k]) for k, v in model.state_dict().items())
    export_weights(run.last, tmp_path / "weights.pt")
    exported = load_checkpoint(tmp_path / "weights.pt")
    assert "weight_average" not in exported and all(torch.equal(v, average[k]) for k, v in exported["model"].items())
    # the validation loss written is the average's, the one model_from_checkpoint's network scores
    rows = list(csv.DictReader(open(run.out / "metrics.csv")))
    assert len(rows) == 2 and float(rows[-1]["val_loss"]) > 0
    # a run started from it starts from the average (lr 1e-12: the weights cannot move)
    still = fit(tiny_fit_config(tmp_path, "still", epochs=1, lr=1e-12, init=str(run.last)))
    got = load_checkpoint(still.last)["model"]
    assert all(torch.allclose(v, average[k], atol=1e-6) for k, v in got.items())


def test_a_killed_and_resumed_run_keeps_the_same_average(tmp_path):
    straight = fit(tiny_fit_config(tmp_path, "straight", ema=0.8))
    fit(tiny_fit_config(tmp_path, "killed", ema=0.8, max_steps=4))  # mid-epoch: 3 steps per epoch
    resumed = fit(tiny_fit_config(tmp_path, "killed"), resume=True)  # the decay comes from the checkpoint
    plain = fit(tiny_fit_config(tmp_path, "plain"))
    a, b = (load_checkpoint(r.last) for r in (straight, resumed))
    assert a["weight_average"]["updates"] == b["weight_average"]["updates"] == 6
    for k, v in a["weight_average"]["model"].items():
        assert torch.allclose(v, b["weight_average"]["model"][k], atol=1e-6), k
    # averaging changes what is saved, never the optimiser's path: the raw weights are the plain run's
    c = load_checkpoint(plain.last)
    assert "weight_average" not in c
    assert all(torch.allclose(v, c["model"][k], atol=1e-6) for k, v in a["model"].items())
    assert "weights averaged (--ema 0.8)" in (tmp_path / "straight" / "train.log").read_text()


def test_fit_ema_option_is_checked_and_stored(tmp_path):
    from train_fixtures import synthetic_file

    data = str(synthetic_file("fit-train", 6, 32, 21))
    common = ["fit", "--data", data, "--arch", "fod", "--epochs", "1", "--batch-size", "2", "--quiet", "--no-tensorboard"]
    bad = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "bad"), "--ema", "1.5"])
    assert bad.exit_code != 0 and "--ema 1.5: expected a decay in [0, 1)" in bad.output
    assert not (tmp_path / "bad" / "last.pt").exists()
