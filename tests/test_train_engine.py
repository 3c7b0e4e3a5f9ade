"""The training loop and its hooks: call order, stopping and resuming mid-epoch, the running loss
(weighted by batch size, read every log_every steps, non-finite refused), hook state in checkpoints,
and hooks that keep state without writing files (every process but the writer, later)."""

import math

import pytest
import torch
from train_fixtures import TINY, single_torch_thread, synthetic_file  # noqa: F401

from focalstack.train.checkpoint import load_checkpoint
from focalstack.train.data import Norm
from focalstack.train.engine import Hook, RunningLoss, StepOutput, Trainer
from focalstack.train.losses import FocusLoss, LossWeights
from focalstack.train.models import build_model
from focalstack.train.trainer import TrainConfig, build_trainer, fit


class ToyData:
    """Batches of random 2-slice 16 x 16 stacks; batch i of epoch e always holds the same numbers."""

    def __init__(self, n_batches=3, sizes=(2, 1, 2)):
        self.n_batches, self.sizes = n_batches, sizes

    def plan(self, epoch):
        return [(epoch, i) for i in range(self.n_batches)]

    def loader(self, batches, start):
        for epoch, i in batches[start:]:
            g = torch.Generator().manual_seed(1000 * epoch + i)
            b = self.sizes[i % len(self.sizes)]
            yield {
                "stack": torch.randint(0, 256, (b, 2, 3, 16, 16), generator=g, dtype=torch.uint8),
                "focus": torch.tensor([[0.2, 1.0]] * b),
                "depth": torch.rand(b, 16, 16, generator=g) * 2 + 0.1,
                "defocus": torch.rand(b, 2, 16, 16, generator=g) * 3,
                "aif": torch.zeros(b, 3, 16, 16, dtype=torch.uint8),
                "edges": torch.zeros(b, 16, 16, dtype=torch.uint8),
            }


class Recorder(Hook):
    """Writes down every call, and how many steps' losses were still unread after each step."""

    state_key = "recorder"

    def __init__(self):
        self.calls, self.pending_after_step, self.value = [], [], 0

    def before_train(self):
        self.calls.append("before_train")

    def before_epoch(self):
        self.calls.append("before_epoch")

    def before_step(self):
        self.calls.append("before_step")

    def after_step(self):
        self.calls.append("after_step")
        self.pending_after_step.append(len(self.trainer.loss.pending))

    def after_epoch(self):
        self.calls.append("after_epoch")

    def after_train(self):
        self.calls.append("after_train")

    def close(self):
        self.calls.append("close")

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def toy_trainer(hooks=(), criterion=None, **kw):
    torch.manual_seed(0)
    model = build_model("fod-depth", width=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crit = criterion or FocusLoss(LossWeights())
    kw.setdefault("epochs", 2)
    return Trainer(model, opt, crit, ToyData(), Norm(), torch.device("cpu"), terms=["defocus", "depth"], hooks=list(hooks), **kw)


def test_hooks_are_called_in_order_and_after_epoch_only_for_finished_epochs():
    rec = Recorder()
    trainer = toy_trainer([rec], epochs=2, max_steps=4)  # 3 batches an epoch: stops after batch 1 of epoch 2
    trainer.train()
    step = ["before_step", "after_step"]
    assert rec.calls == ["before_train", "before_epoch", *step * 3, "after_epoch", "before_epoch", *step, "after_train", "close"]
    assert trainer.stopped and (trainer.epoch, trainer.batch, trainer.global_step) == (1, 1, 4)
    state = trainer.state_dict()
    assert (state["epoch"], state["batch"], state["partial"]["n"]) == (1, 1, 2)  # mid-epoch: its position


def test_a_mid_epoch_state_resumes_to_the_same_weights_as_an_uninterrupted_run():
    straight = toy_trainer(epochs=2)
    straight.train()
    killed = toy_trainer(epochs=2, max_steps=4)
    killed.train()
    state = killed.state_dict()
    resumed = toy_trainer(epochs=2)
    resumed.load_state_dict(state)
    resumed.train()
    assert resumed.global_step == straight.global_step == 6
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert resumed.summary.row["train_loss"] == pytest.approx(straight.summary.row["train_loss"], rel=1e-6)


def test_losses_are_read_every_log_every_steps_and_at_the_end_of_an_epoch():
    rec = Recorder()
    trainer = toy_trainer([rec], epochs=2, log_every=2)
    trainer.train()
    # steps 1..6, 3 an epoch: read at steps 2, 3 (epoch end), 4 and 6
    assert rec.pending_after_step == [1, 0, 0, 0, 1, 0]


def test_running_loss_weights_by_batch_size_and_refuses_non_finite_values():
    loss = RunningLoss(["depth"])
    loss.add(StepOutput(torch.tensor(1.0), {"depth": torch.tensor(0.5)}, 3))
    loss.add(StepOutput(torch.tensor(3.0), {"depth": torch.tensor(1.5)}, 1))
    assert loss.sums["n"] == 0  # nothing read yet
    loss.flush(epoch=0)
    assert loss.sums == {"n": 4, "loss": 6.0, "depth": 3.0}
    assert loss.mean("loss") == 1.5 and loss.mean("depth") == 0.75
    loss.add(StepOutput(torch.tensor(math.nan), {"depth": torch.tensor(0.5)}, 2))
    with pytest.raises(FloatingPointError, match=r"training loss became nan \(epoch 4\); try a lower --lr"):
        loss.flush(epoch=3)


def test_a_non_finite_loss_stops_training_and_hooks_are_still_closed():
    rec = Recorder()
    base = FocusLoss(LossWeights())

    def exploding(out, target):
        total, terms = base(out, target)
        return (total * math.inf if rec.calls.count("before_step") == 2 else total), terms

    trainer = toy_trainer([rec], criterion=exploding, log_every=3)
    with pytest.raises(FloatingPointError, match=r"became (inf|nan) \(epoch 1\)"):
        trainer.train()
    assert rec.calls[-1] == "close" and "after_train" not in rec.calls and "after_epoch" not in rec.calls


def test_hook_state_goes_into_the_state_dict_and_comes_back():
    rec = Recorder()
    rec.value = 7
    trainer = toy_trainer([rec])
    assert trainer.state_dict()["recorder"] == {"value": 7}
    other = Recorder()
    toy_trainer([other]).load_state_dict(trainer.state_dict())
    assert other.value == 7
    with pytest.raises(ValueError, match="'recorder' is taken"):
        toy_trainer([Recorder(), Recorder()])


def _cfg(tmp_path, **kw):
    base = dict(
        data=[str(synthetic_file("engine-train", 6, 32, 71))],
        out=str(tmp_path / "run"),
        arch="fod",
        arch_kwargs=dict(TINY),
        epochs=2,
        batch_size=2,
        lr=1e-3,
        val_fraction=0.34,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_best_checkpoint_state_is_stored_and_resumed(tmp_path):
    fit(_cfg(tmp_path, epochs=1))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["best"]["epoch"] == 1 and math.isfinite(ckpt["best"]["val_loss"])
    resumed = build_trainer(_cfg(tmp_path, epochs=2).check(), ckpt)
    best = next(h for h in resumed.hooks if h.state_key == "best")
    assert (best.best_epoch, best.best_loss) == (1, ckpt["best"]["val_loss"])


def test_hooks_told_they_are_not_the_writer_keep_state_but_write_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    trainer = build_trainer(_cfg(tmp_path, epochs=2, tensorboard=True).check(), writer=False)
    trainer.train()
    trainer.data.dataset.close()
    assert list((tmp_path / "run").iterdir()) == []
    csv_hook = next(h for h in trainer.hooks if hasattr(h, "history"))
    assert [r["epoch"] for r in csv_hook.history] == [1, 2]
    assert next(h for h in trainer.hooks if h.state_key == "best").best_epoch in (1, 2)


def test_fit_leaves_torchs_global_random_state_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    fit(_cfg(tmp_path, epochs=1, tensorboard=False))
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.fixture
def clock(monkeypatch):
    """The training loop's clock, read from ``clock[0]``; ``clock.Tick`` is a hook whose every step takes a second."""
    from focalstack.train import engine

    class Clock(list):
        pass

    now = Clock([100.0])
    monkeypatch.setattr(engine.time, "monotonic", lambda: now[0])

    class Tick(Hook):
        def before_step(self):
            now[0] += 1.0

    now.Tick = Tick
    return now


def test_max_time_stops_at_the_first_read_step_past_the_budget_and_counts_earlier_sessions(clock):
    Tick = clock.Tick
    first = toy_trainer([Tick()], epochs=10, max_time=2.5, log_every=1)
    first.train()
    assert first.stopped and first.global_step == 3 and first.state_dict()["elapsed"] == 3.0
    # read only every log_every steps: with 2, the step after the budget ran out
    late = toy_trainer([Tick()], epochs=10, max_time=2.5, log_every=2)
    late.train()
    assert late.global_step == 3  # step 3 ends an epoch, where the loss is read too
    resumed = toy_trainer([Tick()], epochs=10, max_time=5.5, log_every=1)
    resumed.load_state_dict(first.state_dict())
    clock[0] += 1000.0  # time between sessions does not count
    resumed.train()
    assert resumed.global_step == 6 and resumed.state_dict()["elapsed"] == 6.0


@pytest.mark.parametrize("limit", [{"max_steps": 4}, {"max_time": 1e-9}])
def test_a_run_resumed_at_its_limit_takes_no_further_step(limit):
    """Rerunning a command whose run stopped at --max-steps or --max-time leaves its weights as they were
    (the ablation's reruns found each finished run one step further)."""
    first = toy_trainer(epochs=3, **limit)
    first.train()
    state = first.state_dict()
    again = toy_trainer(epochs=3, **limit)
    again.load_state_dict(state)
    again.train()
    assert again.stopped and again.global_step == first.global_step
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


class LrSeen(Hook):
    """The learning rate each step ran with."""

    def __init__(self):
        self.lrs = []

    def after_step(self):
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])


def test_lr_factor_is_a_half_cosine_from_one_to_zero_and_refuses_other_schedules():
    from focalstack.train.hooks import lr_factor

    assert [lr_factor("cosine", p) for p in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert lr_factor("cosine", 0.25) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_factor("constant", 0.9) == 1.0
    with pytest.raises(ValueError, match="lr_schedule 'linear': expected one of constant, cosine"):
        lr_factor("linear", 0.5)


@pytest.mark.parametrize("limit, total", [({}, 6), ({"max_steps": 4}, 4)])
def test_a_cosine_schedule_ends_with_the_steps_that_end_the_run(limit, total):
    from focalstack.train.hooks import LearningRate, lr_factor

    seen = LrSeen()
    toy_trainer([LearningRate("cosine", 1e-3, 3), seen], epochs=2, **limit).train()  # 3 batches an epoch
    assert seen.lrs == pytest.approx([1e-3 * lr_factor("cosine", i / total) for i in range(total)])


def test_a_cosine_schedule_under_max_time_follows_the_clock_across_sessions(clock):
    from focalstack.train.hooks import LearningRate, lr_factor

    Tick = clock.Tick

    def trainer(max_time, seen):  # 100 epochs of 3 steps: a step-based rate would stay near 1
        return toy_trainer([Tick(), LearningRate("cosine", 1e-3, 3), seen], epochs=100, max_time=max_time, log_every=1)

    first = trainer(4.0, seen := LrSeen())
    first.train()
    assert first.global_step == 4 and seen.lrs == pytest.approx([1e-3 * lr_factor("cosine", i / 4) for i in range(4)])
    # resumed with twice the time: the schedule goes on from the 4 s of 8 already spent
    resumed = trainer(8.0, seen := LrSeen())
    resumed.load_state_dict(first.state_dict())
    clock[0] += 1000.0  # time between sessions does not count
    resumed.train()
    assert resumed.global_step == 8
    assert seen.lrs == pytest.approx([1e-3 * lr_factor("cosine", i / 8) for i in range(4, 8)])


def test_processes_agree_on_the_time_spent_and_stop_together():
    """Under torchrun each process reads its own clock: the rate follows their mean (the same on every process,
    or the copies of the network would drift apart), and they stop when any is out of time."""

    class TwoProcesses:  # this process and another whose clock reads ``other`` seconds (sum, as all_reduce)
        world_size = 2

        def __init__(self, other_up: bool, other_elapsed: float):
            self.other = torch.tensor([float(other_up), other_elapsed], dtype=torch.float64)

        def sum(self, values):
            return values + self.other

    t = toy_trainer(max_time=10.0)
    t.log_step, t.elapsed = True, 3.0
    t.group = TwoProcesses(False, 5.0)
    assert t._time_up() is False and t.time_used == pytest.approx(0.4)  # (3 + 5) / 2 of 10 s
    t.group = TwoProcesses(True, 11.0)
    assert t._time_up() is True and t.time_used == pytest.approx(0.7)
