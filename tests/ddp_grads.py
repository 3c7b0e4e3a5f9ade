"""The gradients of the first few batches of a run, each from the initial weights, as the trainer's
step computes them, saved to a file.
For tests/test_train_distributed.py: run as one process, or by torchrun (rank 0 saves; DDP has already
made every rank's gradient the same):

    python ddp_grads.py CONFIG.json STEPS OUT.pt
    python -m torch.distributed.run --nproc-per-node 2 ddp_grads.py CONFIG.json STEPS OUT.pt
"""

import copy
import json
import sys

import torch

from focalstack.train.distributed import is_writer, process_group
from focalstack.train.trainer import TrainConfig, build_trainer


def step_gradients(cfg: TrainConfig, steps: int) -> list[list[torch.Tensor]]:
    group = process_group(cfg.device)
    trainer = build_trainer(cfg.check(), writer=False, group=group)
    start = copy.deepcopy(trainer.model.state_dict())
    grads = []
    batches = trainer.data.plan(0)
    for _, batch in zip(range(steps), trainer.data.loader(batches, 0)):
        trainer.model.load_state_dict(start)
        trainer.run_step(batch)
        grads.append([p.grad.detach().clone() for p in trainer.model.parameters()])
    trainer.data.dataset.close()
    return grads


if __name__ == "__main__":
    torch.set_num_threads(1)
    config, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    grads = step_gradients(TrainConfig.from_dict(json.loads(open(config).read())), steps)
    if is_writer():
        torch.save(grads, out)
