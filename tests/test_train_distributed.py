"""Several processes (torchrun, DistributedDataParallel on gloo): the loss shares add up to the global
batch's loss and gradient, batches are shared out with stand-ins for ranks a batch has no stack for,
two CPU processes train to the weights of one process with the same global batch, only rank 0 writes,
a killed rank's job resumes to the weights of an uninterrupted run, and evaluation gathers its means."""

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import TINY, shared_dir, single_torch_thread, synthetic_file  # noqa: F401

from focalstack.train.checkpoint import load_checkpoint
from focalstack.train.data import Norm, to_model_inputs
from focalstack.train.evaluate import evaluate
from focalstack.train.losses import FocusLoss, LossWeights
from focalstack.train.models import build_model
from focalstack.train.plan import SampleKey, share_batch
from focalstack.train.trainer import TrainConfig, fit

TESTS = Path(__file__).parent


def test_a_batch_is_dealt_round_robin_and_ranks_without_a_stack_get_an_uncounted_stand_in():
    batch = [SampleKey(0, i, (0, 1)) for i in range(5)]
    assert [k.scene for k in share_batch(batch, 0, 2).keys] == [0, 2, 4]
    assert [k.scene for k in share_batch(batch, 1, 2).keys] == [1, 3]
    assert sorted(k.scene for r in range(3) for k in share_batch(batch, r, 3).keys) == list(range(5))
    short = batch[:1]
    assert share_batch(short, 0, 2).counted and share_batch(short, 0, 2).keys == short
    stand_in = share_batch(short, 1, 2)
    assert not stand_in.counted and stand_in.keys == short


def _batch(b, seed):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(b, 16, 16, generator=g) * 4  # some pixels beyond max_depth: unequal masks
    depth[0, :8] = 1e10
    return {
        "stack": torch.randint(0, 256, (b, 3, 3, 16, 16), generator=g, dtype=torch.uint8),
        "focus": torch.tensor([[0.1, 0.5, 1.5]] * b),
        "depth": depth,
        "defocus": torch.rand(b, 3, 16, 16, generator=g) * 3,
        "aif": torch.randint(0, 256, (b, 3, 16, 16), generator=g, dtype=torch.uint8),
        "edges": (torch.rand(b, 16, 16, generator=g) > 0.8).to(torch.uint8),
    }


def test_loss_shares_add_up_to_the_loss_and_gradient_of_the_whole_batch():
    """Every term is a mean over elements (the depth term over valid pixels, unequal per rank): with
    each part's mean scaled by its count / the total count, the parts add up to the whole."""
    torch.manual_seed(0)
    model = build_model("fod", **TINY)
    loss_fn = FocusLoss(LossWeights())
    whole = _batch(3, 1)
    inputs, targets = to_model_inputs(whole, Norm(), torch.device("cpu"))
    loss, terms = loss_fn(model(inputs["stack"], inputs["focus"]), targets)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    parts = [slice(0, 2), slice(2, 3)]
    outs, tgts = [], []
    for part in parts:
        i, t = to_model_inputs({k: v[part] for k, v in whole.items()}, Norm(), torch.device("cpu"))
        outs.append(model(i["stack"], i["focus"]))
        tgts.append(t)
    counts = []
    for out, tgt in zip(outs, tgts):  # what each rank would send to the all-reduce
        loss_fn(out, tgt, share=lambda c: counts.append(c) or torch.ones(len(c)))
    total = counts[0] + counts[1]
    assert counts[0][1] != 2 * counts[1][1]  # the valid depth pixels do not follow the stack counts
    model.zero_grad()
    summed, summed_terms = 0, {k: 0 for k in terms}
    for out, tgt, c in zip(outs, tgts, counts):
        part_loss, part_terms = loss_fn(out, tgt, share=lambda _, c=c: (c / total).float())
        summed = summed + part_loss
        summed_terms = {k: summed_terms[k] + part_terms[k] for k in terms}
    summed.backward()
    assert float(summed.detach()) == pytest.approx(float(loss.detach()), rel=1e-6)
    assert all(float(summed_terms[k]) == pytest.approx(float(terms[k]), rel=1e-6) for k in terms)
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-8)


# -- torchrun on the CPU -----------------------------------------------------------------------------


def torchrun(nproc, *args, script=("-m", "focalstack.train"), check=True):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        *script,
        *[str(a) for a in args],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# 9 scenes, 2 held out: 7 training scenes in batches of 3, 3 and 1: the 3s split 2 + 1 over two ranks,
# and for the last batch rank 1 trains on a stand-in; the 2 validation scenes are one batch, on rank 0.
DATA = functools.partial(synthetic_file, "ddp-train", 9, 32, 41)
RUN = dict(arch="fod", epochs=2, batch_size=3, lr=1e-3, val_fraction=0.2, seed=3)


def fit_args(out, **extra):
    opts = {**RUN, **{k: v for k, v in TINY.items()}, **extra}
    args = ["fit", "--data", DATA(), "--out", out, "--device", "cpu", "--threads", "1", "--quiet"]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def fit_one_process(out: Path, **extra) -> Path:
    """RUN in this process alone (no torchrun), with ``extra`` settings."""
    fit(TrainConfig(data=[str(DATA())], out=str(out), arch_kwargs=dict(TINY), device="cpu", progress=False, **{**RUN, **extra}))
    return out


@functools.lru_cache(maxsize=None)
def one_process_run() -> Path:
    return fit_one_process(shared_dir() / "ddp-one")


@functools.lru_cache(maxsize=None)
def two_process_run() -> Path:
    out = shared_dir() / "ddp-two"
    torchrun(2, *fit_args(out))
    return out


def weight_differences(a: Path, b: Path) -> torch.Tensor:
    wa, wb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert wa["global_step"] == wb["global_step"] and wa["epoch"] == wb["epoch"]
    assert wa["model"].keys() == wb["model"].keys()
    return torch.cat([(v - wb["model"][k]).abs().flatten() for k, v in wa["model"].items()])


def rows(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "metrics.csv")))


def test_two_processes_compute_the_gradients_of_one_with_the_same_global_batch(tmp_path):
    """The first 3 batches (from the same weights): 3 stacks (2 + 1 over the ranks), 3 and 1 (rank 1: a stand-in)."""
    cfg = TrainConfig(
        data=[str(DATA())], out=str(tmp_path / "unused"), arch_kwargs=dict(TINY), device="cpu", **{**RUN, "grad_clip": 0.0}
    )
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    args = [str(tmp_path / "cfg.json"), "3"]
    subprocess.run([sys.executable, str(TESTS / "ddp_grads.py"), *args, str(tmp_path / "one.pt")], check=True, timeout=120)
    torchrun(2, *args, tmp_path / "two.pt", script=(str(TESTS / "ddp_grads.py"),))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert len(one) == len(two) == 3
    for step, (g1, g2) in enumerate(zip(one, two)):
        a, b = torch.cat([g.flatten() for g in g1]), torch.cat([g.flatten() for g in g2])
        # float32 itself: these gradients are ~2e-6 (norm) and ~5e-6 (largest component) from float64's;
        # the two runs round differently (other batch sizes in oneDNN's kernels, sums in other orders)
        assert float((a - b).norm()) < 2e-5 * float(a.norm()), step
        assert float((a - b).abs().max()) < 5e-5 * float(a.abs().max()), step


def test_two_processes_train_to_the_weights_of_one_with_the_same_global_batch():
    one, two = one_process_run(), two_process_run()
    assert load_checkpoint(two / "last.pt")["global_step"] == 6  # 3 global batches an epoch, not 6
    # The gradients agree to float32 rounding (the test above), but AdamW divides each gradient component
    # by its own running size, so where a component is near zero the rounding becomes a fraction of a
    # step of lr, and later gradients are taken at those weights. A weight cannot drift more than about
    # one lr per step; a wrong share of the batch would move most weights by that much.
    diff = weight_differences(one, two)
    assert float(diff.max()) < 6 * RUN["lr"]
    assert float(diff.median()) < 1e-5 and float(diff.quantile(0.99)) < 1e-4
    for r1, r2 in zip(rows(one), rows(two), strict=True):  # losses summed, validation gathered over ranks
        for col in ("train_loss", "train_depth", "train_aif", "val_loss", "val_depth_rmse", "val_aif_psnr"):
            assert float(r2[col]) == pytest.approx(float(r1[col]), rel=1e-4), col
    log = (two / "train.log").read_text()
    assert log.count("training fod") == 1 and "2 processes (cpu, global batch 3)" in log  # rank 0 writes
    assert sorted(p.name for p in two.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.csv", "tb", "train.log"]


def test_one_process_under_torchrun_is_the_plain_run_bit_for_bit():
    out = shared_dir() / "ddp-world-1"
    torchrun(1, *fit_args(out, epochs=1))
    plain = shared_dir() / "ddp-plain-1"
    fit(
        TrainConfig(
            data=[str(DATA())], out=str(plain), arch_kwargs=dict(TINY), device="cpu", progress=False, **{**RUN, "epochs": 1}
        )
    )
    assert float(weight_differences(plain, out).max()) == 0
    assert rows(out)[0]["train_loss"] == rows(plain)[0]["train_loss"]


def test_a_killed_rank_ends_the_job_and_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed"
    # rank 1 dies after step 4 of 6 (in epoch 2); last.pt is written every 2 steps by rank 0
    killed = torchrun(2, "1", "4", *fit_args(out, checkpoint_every=2), script=(str(TESTS / "ddp_kill.py"),), check=False)
    assert killed.returncode != 0
    assert 2 <= load_checkpoint(out / "last.pt")["global_step"] <= 4
    torchrun(2, "fit", "--out", out, "--resume", "--epochs", RUN["epochs"], "--device", "cpu", "--threads", "1", "--quiet")
    assert float(weight_differences(two_process_run(), out).max()) == 0  # the same sums in the same order
    assert [r["epoch"] for r in rows(out)] == ["1", "2"]


def test_a_cosine_schedule_under_a_time_budget_keeps_the_processes_in_step(tmp_path):
    """The time budget's all-reduce under torchrun (the mean it agrees on is checked in test_train_engine), with
    a budget that never runs out, so the steps set the schedule: the rate each epoch ended with, and the
    weights of the one-process run with the same schedule."""
    from focalstack.train.hooks import lr_factor

    out = tmp_path / "two"
    torchrun(2, *fit_args(out, lr_schedule="cosine", max_time=1e6))
    lrs = [float(r["lr"]) for r in rows(out)]
    assert lrs == pytest.approx([RUN["lr"] * lr_factor("cosine", step / 6) for step in (2, 5)])  # set before steps 3, 6
    one = fit_one_process(tmp_path / "one", lr_schedule="cosine")
    diff = weight_differences(one, out)  # as close as the constant rate's runs (see above)
    assert float(diff.max()) < 6 * RUN["lr"] and float(diff.median()) < 1e-5


def test_two_processes_keep_the_moving_average_of_one(tmp_path):
    """Each process averages its own copy of the (shared) weights and validates its share with the average
    in place: the average and the validation scores are the one-process run's."""
    out = tmp_path / "two"
    torchrun(2, *fit_args(out, ema=0.9))
    one = fit_one_process(tmp_path / "one", ema=0.9)
    wa, wb = (load_checkpoint(r / "last.pt")["weight_average"] for r in (one, out))
    assert wa["updates"] == wb["updates"] == 6
    diff = torch.cat([(v - wb["model"][k]).abs().flatten() for k, v in wa["model"].items()])
    assert float(diff.max()) < 6 * RUN["lr"] and float(diff.median()) < 1e-5  # as the raw weights' (above)
    for r1, r2 in zip(rows(one), rows(out), strict=True):
        assert float(r2["val_loss"]) == pytest.approx(float(r1["val_loss"]), rel=1e-4)
    plain = rows(one_process_run())  # the same raw weights, scored without the average
    assert float(rows(one)[-1]["val_loss"]) != pytest.approx(float(plain[-1]["val_loss"]), rel=1e-4)


def test_evaluation_shares_the_scenes_and_gathers_the_same_means(tmp_path):
    ckpt = two_process_run() / "last.pt"
    test = synthetic_file("ddp-test", 5, 32, 43)  # batches of 2: 2 + 2 on rank 0, 1 on rank 1
    torchrun(
        2,
        "evaluate",
        "-c",
        ckpt,
        "--data",
        test,
        "-o",
        tmp_path / "two",
        "--batch-size",
        2,
        "--device",
        "cpu",
        "--threads",
        "1",
        "-q",
    )
    rows_one, _ = evaluate(ckpt, [str(test)], tmp_path / "one", batch_size=2, device="cpu", progress=False)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["results"]["focalstack"][str(test)]
    for row in rows_one:
        for metric, value in row.items():
            if isinstance(value, float):
                assert two[row["setting"]][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), metric


def test_one_process_without_torchrun_starts_no_process_group():
    one_process_run()
    assert not torch.distributed.is_initialized()
