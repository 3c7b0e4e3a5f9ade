"""focalstack-train with one more hook: the process of rank KILL_RANK kills itself (SIGKILL, no cleanup)
right after optimiser step KILL_STEP. For tests/test_train_distributed.py, run by torchrun:

    python -m torch.distributed.run --nproc-per-node 2 tests/ddp_kill.py KILL_RANK KILL_STEP fit ...
"""

import os
import signal
import sys

from focalstack.train import trainer
from focalstack.train.cli import main
from focalstack.train.engine import Hook


class KillAfterStep(Hook):
    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def after_step(self) -> None:
        if self.trainer.global_step == self.step and int(os.environ["RANK"]) == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    rank, step = int(sys.argv[1]), int(sys.argv[2])
    hooks = trainer._hooks
    trainer._hooks = lambda *args: [*hooks(*args), KillAfterStep(rank, step)]
    sys.exit(main(sys.argv[3:]))
