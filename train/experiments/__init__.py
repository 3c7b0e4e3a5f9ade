"""Experiments as files: ``focalstack-train experiment NAME|FILE.toml --scale tiny|small|full -o runs/NAME``.

``spec`` reads and checks an experiment file, ``runner`` renders (through ``focalstack-render``, its own
process), trains and evaluates it resumably, ``report`` writes report.md and report.json, ``figures`` draws
the pictures. Bundled experiments live in ``bundled/``: ``paper-table1``, ``paper-depth``, ``walls-fix``.
"""

from .runner import ExperimentRunError, ExperimentRunner, RunOptions
from .spec import Experiment, ExperimentError, bundled_experiments, load_experiment

__all__ = [
    "Experiment",
    "ExperimentError",
    "ExperimentRunError",
    "ExperimentRunner",
    "RunOptions",
    "bundled_experiments",
    "load_experiment",
]
