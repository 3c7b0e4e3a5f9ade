"""focalstack.train: DefocusNet, DepthNet and AiFNet ("Focus on defocus", CVPR 2020) trained on the
focal-stack HDF5 files of ``focalstack.dataset``; evaluation in the paper's terms; prediction on real
focal stacks. Imports torch (lazily: ``import focalstack.train`` alone does not).

Public face:

- ``fit(TrainConfig(...), resume=False)`` -> ``FitResult``    train (``trainer``; the loop is ``engine``,
                                                              checkpoints, logs etc. are ``hooks``)
- ``evaluate.evaluate(checkpoint, files, out_dir)``           metrics tables
- ``predict.predict(checkpoint, images, out_dir, ...)``       depth/AiF/defocus of one stack
- ``quick_train_and_evaluate(train, test, out)``              the whole loop, briefly (``quick``)
- ``build_model(name, **kwargs)``, ``ARCHITECTURES``          the networks (``models``)
- ``load_checkpoint(path)``, ``model_from_checkpoint(ckpt)``  checkpoints (``checkpoint``)
"""

from __future__ import annotations

import importlib

# Lazy exports (torch loads on first use). evaluate() and predict() are not among them: they share their
# modules' names, and once a module is imported the package attribute is the module, not the function.
_EXPORTS = {
    "fit": "trainer",
    "TrainConfig": "config",
    "FitResult": "trainer",
    "quick_train_and_evaluate": "quick",
    "build_model": "models",
    "ARCHITECTURES": "models",
    "load_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "Norm": "data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
