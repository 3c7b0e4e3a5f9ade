"""Continuing a run, and starting one where another was: what a run folder may hold before a new run begins
there, which settings a resumed run keeps from its checkpoint (and refuses to change), whether a run has
anything left to do, and what makes two configurations different trainings (the experiment runner asks)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .config import TrainConfig
from .data import Norm, parse_data_spec
from .losses import LossWeights
from .models import ARCHITECTURES

if TYPE_CHECKING:
    from .trainer import RunData

# Settings that a resumed run may change; all others but --data (when given) come from the checkpoint.
RUNTIME_FIELDS = (
    "epochs",
    "device",
    "amp",
    "channels_last",
    "compile",
    "workers",
    "cache_data",
    "max_steps",
    "max_time",
    "checkpoint_every",
    "tensorboard",
    "progress",
    "log_every",
)


def run_settings(path: Path) -> dict | None:
    """``path`` read as a run's config.json, or None when it is not one (missing, not JSON, other keys)."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) and {"arch", "data", "out", "epochs"} <= set(settings) else None


def epochs_logged(path: Path) -> bool:
    """Whether ``path`` (a run's metrics.csv) holds a row for an epoch, beyond its header."""
    try:
        with open(path) as fh:
            return sum(1 for line in fh if line.strip()) > 1
    except OSError:
        return False


RUN_TRACES = ("train.log", "metrics.csv", "config.json", "tb")  # what a run writes besides its checkpoints


def clear_run_without_checkpoint(out: Path) -> list[str]:
    """Remove the log, metrics, settings and TensorBoard events that a run killed before its first checkpoint
    left in ``out`` (fit refuses a folder with a checkpoint before this): a new run would append its log to
    theirs and mix its curves with theirs in TensorBoard. Only where ``config.json`` is a run's settings: a folder
    of other files (a project's own config.json, say) is left as it is. Returns the names removed."""
    if run_settings(out / "config.json") is None:
        return []
    removed = []
    for name in RUN_TRACES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def absolute_specs(specs: list[str]) -> list[str]:
    """ "path[:weight]" specs with absolute paths (the weight kept as written)."""
    out = []
    for spec in specs:
        path, _ = parse_data_spec(spec)
        out.append(str(Path(path).resolve()) + spec[len(path) :])
    return out


def run_finished(ckpt: dict, cfg: TrainConfig) -> bool:
    """True when the run that ``ckpt`` (a last.pt) saved has nothing left to do under ``cfg``: all its
    epochs, or its ``max_steps`` steps, or its ``max_time`` seconds of training."""
    if int(ckpt["epoch"]) >= cfg.epochs and int(ckpt.get("batch", 0)) == 0:
        return True
    if cfg.max_steps is not None and int(ckpt.get("global_step", 0)) >= cfg.max_steps:
        return True
    return cfg.max_time is not None and float(ckpt.get("elapsed", 0.0)) >= cfg.max_time


def training_differences(stored: TrainConfig, cfg: TrainConfig) -> list[str]:
    """The settings that make ``cfg`` another training than the run that ``stored`` describes, as
    'name: stored -> new': every field but where and how long it runs (``RUNTIME_FIELDS``) and the run's own
    folder; data files compared by name and weight (a run folder or its files may have moved)."""
    out = []
    skip = {*RUNTIME_FIELDS, "out", "data", "val_data"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        a, b = getattr(stored, f.name), getattr(cfg, f.name)
        if f.name in ("init", "vgg_weights"):  # by name: a moved run's files moved too
            a, b = (None if v is None else _named_file(v, f.name).name for v in (a, b))
        a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
        if a != b:
            out.append(
                f"{f.name}: {_shown(a) if not isinstance(a, dict) else a} -> {_shown(b) if not isinstance(b, dict) else b}"
            )
    for name in ("data", "val_data"):
        a, b = _file_names(getattr(stored, name)), _file_names(getattr(cfg, name))
        if a != b:
            out.append(f"{name}: {', '.join(a) or 'none'} -> {', '.join(b) or 'none'}")
    return out


def _named_file(value: str, field_name: str) -> Path:
    """The file a path or shipped name (``init``) stands for, resolved: a shipped name, a relative path and
    a link are the file they name."""
    try:
        return Path(resolve_checkpoint(value) if field_name == "init" else value).resolve()
    except (CheckpointError, OSError):
        return Path(value)


def _file_names(specs: list[str]) -> list[str]:
    """'folder/name.h5:0.5' -> 'name.h5:0.5'."""
    out = []
    for spec in specs:
        path, _ = parse_data_spec(spec)
        out.append(Path(path).name + spec[len(path) :])
    return out


def resumed_config(cfg: TrainConfig, last_path: Path, given: tuple = ()) -> tuple[TrainConfig, dict, dict]:
    """The stored configuration of the run that ``last_path`` continues, with ``cfg``'s RUNTIME_FIELDS, its
    checkpoint, and the given settings whose default the data decides (checked by ``check_data_defaults``).
    A setting in ``given`` whose value in ``cfg`` differs from the run's is refused: it would be ignored."""
    if not last_path.is_file():
        raise CheckpointError(f"{last_path}: no checkpoint to resume from")
    ckpt = load_checkpoint(last_path)
    stored = TrainConfig.from_dict(ckpt["config"])
    if cfg.arch is not None and cfg.arch != stored.arch:
        raise CheckpointError(f"{last_path}: the run is architecture {stored.arch!r}, --arch says {cfg.arch!r}")
    data_defaults = {}
    for option in given:
        if option in DATA_DEFAULTS and _setting(stored, option) is None:  # known once the data is read
            data_defaults[option] = _setting(cfg, option)
        elif option in SETTING_PATHS:
            want, had = _setting(cfg, option), _setting(stored, option)
            if had is None:  # not set when the run began: what it trained with is the default's value
                had = _effective_default(stored, option, ckpt)
            if want != had and isinstance(want, bool):  # a flag, given
                raise ValueError(
                    f"{option}: the run in {cfg.out} was trained without it, and a resumed run keeps its training "
                    "settings; start a new --out to change it"
                )
            if want != had:
                raise ValueError(
                    f"{option} {_shown(want)}: the run in {cfg.out} was trained with "
                    f"{'the default' if had is None else _shown(had)}, and a resumed run "
                    "keeps its training settings (--epochs, --max-steps, --max-time, --device and the like apply); "
                    "start a new --out to change it"
                )
    for name in RUNTIME_FIELDS:
        if name == "epochs" and cfg.epochs is None:  # not given: the run's own
            continue
        setattr(stored, name, getattr(cfg, name))
    if cfg.data:
        check_moved_data(stored.data, absolute_specs(cfg.data))
        stored.data = cfg.data
    if cfg.val_data:
        check_moved_data(stored.val_data, absolute_specs(cfg.val_data), "--val-data")
        stored.val_data = cfg.val_data
    stored.out = cfg.out  # the folder given: a copied or moved run writes only there
    return stored, ckpt, data_defaults


# Settings whose default is a property of the training data: --samples-per-epoch's is the number of training
# scenes (an epoch of exactly that many is the same plan as the default's).
DATA_DEFAULTS = {"--samples-per-epoch": lambda data: data.n_train}


def check_data_defaults(given: dict, data: RunData, out: Path) -> None:
    """ValueError for a setting, given on --resume, that the run left to its data's default and that differs
    from what that default amounts to."""
    for option, want in given.items():
        had = DATA_DEFAULTS[option](data)
        if want != had:
            data.dataset.close()
            raise ValueError(
                f"{option} {_shown(want)}: the run in {out} was trained with the default, {_shown(had)} here, and a "
                "resumed run keeps its training settings; start a new --out to change it"
            )


def refuse_other_scene_counts(had: dict | None, data: RunData, cfg: TrainConfig) -> None:
    """ValueError when a file of the run holds another number of complete scenes than when its last checkpoint
    was written (a render went on, or the file was replaced): the held-out scenes and the epoch plans follow
    the count, so the resumed run would train on scenes it validated on, or validate on others. Checkpoints from
    before the count was kept pass."""
    now = data.scene_counts()
    if had is None or had == now:
        return
    data.dataset.close()
    what = {
        "data": "which scenes are held out and each epoch's plan follow the count",
        "val_data": "the validation set would not be the one best.pt was chosen on",
    }
    paths = {"data": [parse_data_spec(d)[0] for d in cfg.data], "val_data": list(cfg.val_data)}
    for key, option in (("data", "--data"), ("val_data", "--val-data")):
        for path, then, count in zip(paths[key], had.get(key, []), now[key]):
            if then != count:
                raise ValueError(
                    f"{option} {path}: {count} complete scenes now, {then} when the run in {cfg.out} last saved "
                    f"last.pt (a render went on, or the file was replaced?); {what[key]}: resume with the file as it "
                    "was, or start a new --out (--init with this run's last.pt keeps its weights)"
                )
    raise ValueError(f"--data: the run in {cfg.out} saved last.pt with other files' scene counts ({had}, now {now})")


def check_moved_data(trained: list[str], given: list[str], option: str = "--data") -> None:
    """--data (or --val-data) on --resume names the run's own files where they moved to: ValueError for other
    files (a run that switched data would compare validation losses of two data sets, and mix two trainings)."""
    if len(given) != len(trained):
        raise ValueError(
            f"{option}: {len(given)} file(s), the run used {len(trained)}; on --resume {option} only says where they moved"
        )
    for old, new in zip(trained, given):
        (old_path, old_weight), (new_path, new_weight) = parse_data_spec(old), parse_data_spec(new)
        if old_weight != new_weight:
            raise ValueError(f"{option} {new}: the run sampled {old_path} with weight {old_weight:g}; a resumed run keeps it")
        if Path(old_path).exists() and not os.path.samefile(old_path, new_path):
            raise ValueError(
                f"{option} {new}: the run used {old}, which is still there; on --resume {option} only says where "
                "the run's files moved (start a new --out, or fine-tune with --init, to train on others)"
            )


# Every fit option that sets how the network is trained (not where, or for how long): option -> its place in
# TrainConfig (a field, or a field and a key). --data and --val-data may name moved files on resume; --arch is checked.
SETTING_PATHS: dict[str, tuple[str, ...]] = {
    "--width": ("arch_kwargs", "width"),
    "--aif-width": ("arch_kwargs", "aif_width"),
    "--aif-blocks": ("arch_kwargs", "aif_blocks"),
    "--no-flip": ("flips",),
    **{f"--loss-weight {term}": ("loss_weights", term) for term in LossWeights().to_dict()},
    **{f"--{name.replace('_', '-')}": ("norm", name) for name in Norm().to_dict()},
    **{
        f"--{name.replace('_', '-')}": (name,)
        for name in (
            "val_fraction",
            "batch_size",
            "stack_size",
            "random_stack",
            "align_slices",
            "crop",
            "transposes",
            "capture_augment",
            "init",
            "ema",
            "lr",
            "lr_schedule",
            "weight_decay",
            "grad_clip",
            "depth_loss",
            "relative_floor",
            "vgg_weights",
            "seed",
            "samples_per_epoch",
        )
    },
}


def _setting(cfg: TrainConfig, option: str):
    """The value ``option`` sets in ``cfg``, comparable across a stored and a new configuration."""
    path = SETTING_PATHS[option]
    value = getattr(cfg, path[0])
    if len(path) == 2:
        value = (value or {}).get(path[1])
    if path[0] in ("init", "vgg_weights") and value is not None:
        return str(_named_file(value, path[0]))
    return list(value) if isinstance(value, tuple) else value


def _effective_default(stored: TrainConfig, option: str, ckpt: dict):
    """What a setting the run left unset amounted to, where that is known: the architecture's own default
    width, the stack size of its data; else None."""
    path = SETTING_PATHS[option]
    if path[0] == "arch_kwargs":
        default = inspect.signature(ARCHITECTURES[stored.arch]).parameters.get(path[1])
        return None if default is None or default.default is inspect.Parameter.empty else default.default
    if path[0] == "stack_size":
        return (ckpt.get("camera") or {}).get("stack_size")
    return None


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "none"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
