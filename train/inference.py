"""Inference: a model run over planned batches, in eval mode, under autocast; its outputs in physical
units; and the ``focalstack`` protocol's means over them, which validation during training reports.
Evaluation over files and settings (``evaluate``) and the written results (``results``) build on it."""

from __future__ import annotations

import torch

from .data import FocalStackDataset, Norm, make_loader, to_model_inputs
from .device import autocast
from .metrics import MeanMeter
from .protocols import FOCALSTACK


def batch_outputs(model, loader, prepare, device: torch.device, amp_dtype, progress=None):
    """(inputs, truth, outputs) of each batch of ``loader``, the model in eval mode meanwhile. Callers
    run under ``torch.no_grad()`` (on a generator it would cover only the generator's own steps)."""
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            inputs, truth = prepare(batch)
            with autocast(device, amp_dtype):
                out = model(inputs["stack"], inputs["focus"])
            yield inputs, truth, out
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)


def validation_scores(dataset: FocalStackDataset, workers: int = 0):
    """The validation hook's score (``hooks.ValidationScore``): ``run_batches`` of the trainer's model, loss
    and settings over ``dataset``."""

    def score(trainer, batches, merge):
        return run_batches(
            trainer.eval_model,
            dataset,
            batches,
            trainer.norm,
            trainer.device,
            trainer.amp_dtype,
            trainer.criterion,
            workers,
            merge=merge,
        )

    return score


@torch.no_grad()
def run_batches(
    model,
    dataset: FocalStackDataset,
    batches,
    norm: Norm,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    criterion=None,
    workers: int = 0,
    progress=None,
    merge=None,
) -> tuple[dict[str, float], dict | None]:
    """The ``focalstack`` protocol's means over the scenes of ``batches`` (validation during training);
    also the first batch's (inputs, targets, outputs) on the CPU, for pictures. With ``criterion`` the
    loss and its terms are averaged too. ``merge`` (several processes, each with its part of the
    batches): (sums, counts) -> means over all of them."""
    meter = MeanMeter()
    first = None
    loader = make_loader(dataset, batches, workers, pin=device.type == "cuda")
    prepare = lambda batch: to_model_inputs(batch, norm, device)  # noqa: E731
    for inputs, targets, out in batch_outputs(model, loader, prepare, device, amp_dtype, progress):
        b = inputs["stack"].shape[0]
        if criterion is not None:
            loss, terms = criterion(out, targets)
            meter.add("loss", float(loss), n=b)
            for k, v in terms.items():
                meter.add(k, float(v), n=b)
        for k, values in FOCALSTACK.score(norm.physical(out), targets, norm).items():
            meter.add_images(k, values)
        if first is None:
            cpu = lambda d: {k: v.detach().float().cpu() for k, v in d.items()}  # noqa: E731
            first = {"inputs": cpu(inputs), "targets": cpu(targets), "outputs": cpu(out)}
    return (meter.means() if merge is None else merge(meter.sums, meter.counts)), first
