"""Run an experiment: render what it needs, train every model, evaluate, report; each step resumable.

Steps and what makes them reusable:

- render: ``focalstack-render`` in its own process (train/ never imports render/; Blender wants its own
  process anyway). The output file is its own ledger: a finished file renders nothing, a killed one
  continues at its first incomplete scene.
- train: ``fit`` into ``models/<name>/``. A run whose ``last.pt`` has reached its epochs is reused; a
  killed one continues with ``--resume`` (mid-epoch too, to the same weights).
- evaluate: ``evaluations/<evaluation>/<model>/``; reused while the checkpoint it evaluated is unchanged.

``state.json`` in the run folder lists, for the latest run, what each step did ("ran", "resumed" or
"reused"), so a rerun shows that nothing finished was done again.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from focalstack.dataset import FocalStackFile
from focalstack.dataset.cliutil import one_line
from focalstack.dataset.files import output_folder, write_text_atomic

from ..results import json_text
from .spec import CONSTANT_MODEL, DatasetSpec, EvaluationSpec, Experiment, ModelSpec


class ExperimentRunError(RuntimeError):
    """A step failed; the message names the step and what it said."""


@dataclass
class Step:
    kind: str  # render | train | evaluate | report
    name: str
    action: str  # ran | resumed | reused
    seconds: float
    detail: dict = field(default_factory=dict)


# focalstack-render's options that say how to render, not what: the only ones --render-option passes on (what
# to render is the experiment file's, which names the data file and the report after it).
RENDER_HOW = (
    "--workers",
    "--device",
    "--gpus",
    "--threads",
    "--ray",
    "--ray-gpus-per-task",
    "--ray-scenes-per-task",
    "--ray-timeout",
)


def check_render_args(render_args: list[str]) -> None:
    """ExperimentRunError naming the first option of ``render_args`` that is not one of ``RENDER_HOW``."""
    for arg in render_args:
        name = arg.split("=", 1)[0]
        if (name.startswith("--") or re.fullmatch(r"-[A-Za-z]", name)) and name not in RENDER_HOW:
            raise ExperimentRunError(
                f"--render-option {name}: only options that say how to render pass ({', '.join(RENDER_HOW)}); "
                "what to render is the experiment file's to say"
            )


@dataclass
class RunOptions:
    out: Path
    data_dir: Path | None = None  # where rendered files live (default <out>/data); experiments may share it
    render_args: list[str] = field(default_factory=list)  # extra focalstack-render options (--workers 2, --ray)
    device: str = "auto"
    progress: bool = True
    render: bool = True  # False: use the files in data_dir as they are (no Blender here)
    parallel: int = 1  # models trained at once, each in its own process (one GPU has room for several)


class ExperimentRunner:
    def __init__(self, experiment: Experiment, options: RunOptions, record_state: bool = True):
        check_render_args(options.render_args)  # before anything renders, not when the dataset it harms does
        self.exp, self.opt = experiment, options
        self.record_state = record_state  # False: write no state.json (a training process of a parallel run)
        self.out = Path(options.out)
        self.data_dir = Path(options.data_dir) if options.data_dir else self.out / "data"
        self.steps: list[Step] = []
        self.trained = False  # train_all has run
        self.results: dict[str, dict[str, dict]] = {}  # evaluation -> model -> its results, as run() gets them
        self.failed: dict[str, str] = {}  # model -> why its training process failed (a parallel run trains on)

    # -- the whole run -------------------------------------------------------------------------------
    def run(self) -> dict:
        """Every step; state.json ends with ``running`` false, and the error if one stopped the run."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._save_state(running=True)
        try:
            with output_folder(self.data_dir):  # a run refused before it renders leaves no empty data/
                return self._run()
        except BaseException as exc:
            self._save_state(running=False, error=one_line(exc))
            raise

    def _run(self) -> dict:
        for name in self._datasets_needed():
            self.render(self.exp.datasets[name])
        if not self.trained:
            self.train_all()
        results = self.results  # filled as each evaluation ends: a run stopped half-way still has what it did
        for e in self.exp.evaluations:
            results[e.name] = {}
            for m in e.models:
                results[e.name][m] = self.evaluate(e, self.exp.models[m])
        for e in self.exp.evaluations:
            if _scores_depth(e):
                results[e.name][CONSTANT_MODEL] = self.evaluate_constant(e)
        from .report import write_report

        t = time.perf_counter()
        report = write_report(self, results)
        self._step("report", "report.md", "ran", t)
        self._save_state(running=False)
        return report

    def train_all(self) -> None:
        """Every model, ``parallel`` at a time (a model already trained is reused); ``run`` after this only
        evaluates and reports."""
        if self.opt.parallel > 1:
            self.train_in_parallel(list(self.exp.models.values()))
        else:
            for model in self.exp.models.values():
                self.train(model)
        self.trained = True

    def _datasets_needed(self) -> list[str]:
        used = [d for m in self.exp.models.values() for d, _ in m.data]
        used += [d for e in self.exp.evaluations for d in e.datasets]
        return list(dict.fromkeys(used))

    def dataset_path(self, name: str) -> Path:
        return self.data_dir / self.exp.datasets[name].file_name()

    def model_dir(self, name: str) -> Path:
        return self.out / "models" / name

    # -- render --------------------------------------------------------------------------------------
    def render(self, ds: DatasetSpec) -> None:
        path = self.dataset_path(ds.name)
        t = time.perf_counter()
        before = _complete_scenes(path)
        if not self.opt.render:
            if before < ds.scenes:
                unreadable = _unreadable(path)
                raise ExperimentRunError(
                    f"render {ds.name}: {unreadable}"
                    if unreadable
                    else f"render {ds.name}: {path} holds {before} of its {ds.scenes} scenes, and "
                    "rendering is off (--no-render): render it where Blender runs"
                )
            mismatch = settings_mismatch(ds, path)
            if mismatch:  # rendering would refuse to extend it; without rendering, nothing else would notice
                raise ExperimentRunError(f"render {ds.name}: {path} was rendered with {mismatch}")
            self._step(
                "render",
                ds.name,
                "reused",
                t,
                {"file": str(path), "rendered": 0, "scenes": ds.scenes, "checked": "scene count and render settings"},
            )
            return
        cmd = [sys.executable, "-m", "focalstack.render", *ds.render_args(), "--out", str(path), *self.opt.render_args]
        self._log(f"render {ds.name}: {' '.join(cmd[3:])}")
        returncode, stdout, stderr = _run_passing_stderr(cmd, sys.stderr if self.opt.progress else None)
        if returncode != 0:
            why = (stderr or stdout or "").replace("\r", "\n").strip().splitlines()
            raise ExperimentRunError(f"render {ds.name}: focalstack-render failed: {why[-1] if why else returncode}")
        rendered = _complete_scenes(path) - before  # counted in the file, not read from the command's output
        action = "reused" if rendered == 0 else ("resumed" if before else "ran")
        self._step("render", ds.name, action, t, {"file": str(path), "rendered": rendered, "scenes": ds.scenes})

    # -- train ---------------------------------------------------------------------------------------
    def train_config(self, model: ModelSpec):
        from ..config import TrainConfig

        data = [f"{self.dataset_path(d)}:{w:g}" for d, w in model.data]
        settings = {"progress": self.opt.progress, "device": self.opt.device, **model.train}
        return TrainConfig(data=data, out=str(self.model_dir(model.name)), arch=model.arch, **settings)

    def train(self, model: ModelSpec) -> None:
        from ..checkpoint import load_checkpoint
        from ..resume import run_finished
        from ..trainer import fit

        cfg = self.train_config(model)
        last = Path(cfg.out) / "last.pt"
        t = time.perf_counter()
        if last.is_file():
            ckpt = self._trained_as_described(model, load_checkpoint(last))
            if run_finished(ckpt, cfg):
                self._step("train", model.name, "reused", t, {"epoch": int(ckpt["epoch"])})
                return
            self._log(f"train {model.name}: resuming at epoch {int(ckpt['epoch']) + 1}")
            fit(cfg, resume=True)
            self._step("train", model.name, "resumed", t, {"from_epoch": int(ckpt["epoch"])})
            return
        self._log(f"train {model.name}: {model.arch} on {', '.join(d for d, _ in model.data)}")
        fit(cfg)
        self._step("train", model.name, "ran", t, {"epochs": cfg.epochs})

    def _trained_as_described(self, model: ModelSpec, ckpt: dict) -> dict:
        """``ckpt`` (the model's last.pt), or ExperimentRunError when it was trained with other settings or
        data than the experiment file now gives: reused or resumed, it would not be the model the file describes."""
        from ..config import TrainConfig
        from ..resume import training_differences

        cfg = self.train_config(model)
        changed = training_differences(TrainConfig.from_dict(ckpt["config"]), cfg)
        if changed:
            raise ExperimentRunError(
                f"train {model.name}: {cfg.out} was trained otherwise than the experiment file now says "
                f"({'; '.join(changed)}): remove that folder to train it again, or run into another --out"
            )
        return ckpt

    def train_in_parallel(self, models: list[ModelSpec]) -> None:
        """Every model's ``train`` at once, ``parallel`` at a time, each in a spawned process of its own
        (CUDA and DataLoader workers want a fresh process); their progress goes to their train.log. A model
        whose process fails does not stop the others (their time is not lost): each failure is kept in
        ``failed``, and one ExperimentRunError names them all once every other model has trained."""
        import multiprocessing

        from ..checkpoint import load_checkpoint
        from ..resume import run_finished

        ctx = multiprocessing.get_context("spawn")
        self.failed = {}
        pending = []
        for model in models:
            last = self.model_dir(model.name) / "last.pt"
            if last.is_file() and run_finished(
                self._trained_as_described(model, load_checkpoint(last)), self.train_config(model)
            ):
                self._step("train", model.name, "reused", time.perf_counter())
            else:
                pending.append((model, "resumed" if last.is_file() else "ran"))
        from multiprocessing.connection import wait

        running: dict[int, tuple[ModelSpec, str, multiprocessing.Process, float, tuple[int, int]]] = {}  # sentinel -> ...
        try:
            while pending or running:
                while pending and len(running) < self.opt.parallel:
                    model, action = pending.pop(0)
                    log = self.model_dir(model.name) / "train.log"
                    start = _log_end(log)  # an earlier session's errors are not this one's
                    proc = ctx.Process(target=_train_one, args=(self.exp, self.opt, model.name), name=f"train-{model.name}")
                    proc.start()
                    running[proc.sentinel] = (model, action, proc, time.perf_counter(), start)
                    self._log(f"train {model.name}: started in process {proc.pid} (log: {self.model_dir(model.name)}/train.log)")
                for sentinel in wait(list(running)):  # whichever ends first frees its slot
                    model, action, proc, t, start = running.pop(sentinel)
                    proc.join()
                    if proc.exitcode != 0:
                        error = _last_error(self.model_dir(model.name), start)
                        why = f"{error} (process exit code {proc.exitcode}; see its train.log)"
                        self.failed[model.name] = why
                        self._log(f"train {model.name}: failed: {why}")
                        self._step("train", model.name, "failed", t, {"process": proc.pid, "error": why})
                        continue
                    self._step("train", model.name, action, t, {"process": proc.pid})
        finally:
            for _, _, proc, _, _ in running.values():
                proc.terminate()
                proc.join()
        if self.failed:
            raise ExperimentRunError("; ".join(f"train {name}: {why}" for name, why in self.failed.items()))

    def checkpoint(self, model: str) -> Path:
        return self.model_dir(model) / "best.pt"

    # -- evaluate ------------------------------------------------------------------------------------
    def evaluate(self, ev: EvaluationSpec, model: ModelSpec) -> dict:
        from .evaluation import evaluate_for_experiment

        ckpt = self.checkpoint(model.name)
        files = {d: str(self.dataset_path(d)) for d in ev.datasets}
        return self._reused_or_run(
            ev,
            model.name,
            {"checkpoint_stamp": _stamp(ckpt), "data": [data_stamp(p) for p in files.values()]},
            lambda out: evaluate_for_experiment(ckpt, files, ev, out, device=self.opt.device, progress=self.opt.progress),
        )

    def evaluate_constant(self, ev: EvaluationSpec) -> dict:
        """The evaluation's rows for a constant depth: the mean true depth of the training data of its
        first model (``baselines``), beside the models in every table. Reused like a model's."""
        from ..baselines import mean_depth
        from ..checkpoint import load_checkpoint
        from ..data import Norm
        from .evaluation import evaluate_constant_for_experiment

        model = self.exp.models[ev.models[0]]
        train_files = [str(self.dataset_path(d)) for d, _ in model.data]
        files = {d: str(self.dataset_path(d)) for d in ev.datasets}
        norm = Norm.from_dict(load_checkpoint(self.checkpoint(model.name))["norm"])
        stamp = [data_stamp(p) for p in [*train_files, *files.values()]] + [norm.to_dict()]

        def run(out: Path) -> dict:
            depth_m = mean_depth(train_files, norm.max_depth)
            return {
                **evaluate_constant_for_experiment(depth_m, norm, files, ev, progress=self.opt.progress),
                "trained_on": model.name,
            }

        return self._reused_or_run(ev, "constant", {"stamp": stamp}, run)

    def _reused_or_run(self, ev: EvaluationSpec, name: str, key: dict, run) -> dict:
        """evaluations/EV/NAME/results.json when it was made for ``key`` and this spec, else ``run(out)``'s
        results, saved with them."""
        out = self.out / "evaluations" / ev.name / name
        saved = out / "results.json"
        key = {**key, "spec": asdict(ev)}
        t = time.perf_counter()
        if saved.is_file():
            previous = json.loads(saved.read_text())
            if all(previous.get(k) == v for k, v in key.items()):
                self._step("evaluate", f"{ev.name}/{name}", "reused", t)
                return previous
        results = {**run(out), **key}
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(saved, json_text(results))
        detail = {k: results[k] for k in ("depth_m",) if k in results}
        self._step("evaluate", f"{ev.name}/{name}", "ran", t, detail)
        return results

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _step(self, kind: str, name: str, action: str, t0: float, detail: dict | None = None) -> None:
        self.steps.append(Step(kind, name, action, round(time.perf_counter() - t0, 3), detail or {}))
        self._save_state(running=True)

    def _save_state(self, running: bool, error: str | None = None) -> None:
        if not self.record_state:
            return
        state = {
            "experiment": self.exp.name,
            "scale": self.exp.scale,
            "running": running,
            **({"error": error} if error is not None else {}),
            "steps": [asdict(s) for s in self.steps],
        }
        write_text_atomic(self.out / "state.json", json.dumps(state, indent=2) + "\n")

    def _log(self, message: str) -> None:
        if self.opt.progress:
            print(f"[{self.exp.name}] {message}", file=sys.stderr, flush=True)


def _train_one(exp: Experiment, opt: RunOptions, name: str) -> None:
    """A spawned process's part of ``ExperimentRunner.train_in_parallel``: an error is one line in the model's
    train.log (the parent reports it), not a traceback on the terminal."""
    from dataclasses import replace

    runner = ExperimentRunner(exp, replace(opt, progress=False, parallel=1), record_state=False)
    try:
        runner.train(exp.models[name])
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, said in one line where the parent looks
        folder = runner.model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "train.log", "a") as fh:
            fh.write(f"error: {' '.join(str(exc).split()) or type(exc).__name__}\n")
        sys.exit(1)


def _log_end(log: Path) -> tuple[int, int]:
    """Where ``log`` ends now: (inode, size), (0, 0) when there is none."""
    if not log.is_file():
        return 0, 0
    st = log.stat()
    return st.st_ino, st.st_size


def _last_error(folder: Path, start: tuple[int, int] = (0, 0)) -> str:
    """The error line a training process left in its train.log past ``start`` (``_log_end`` when the process
    started), or a stand-in (a process killed by a signal writes none). A log the process replaced (a new run
    clears one that left no checkpoint) is read whole."""
    log = folder / "train.log"
    inode, size = start
    now = _log_end(log)
    offset = size if now[0] == inode and now[1] >= size else 0
    text = log.read_bytes()[offset:].decode(errors="replace") if log.is_file() else ""
    lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    return lines[-1][len("error: ") :] if lines else "its process failed"


def _scores_depth(ev: EvaluationSpec) -> bool:
    """True when a column the evaluation reports is computed from the depth output (the constant-depth
    baseline then goes beside the models)."""
    from ..protocols import PROTOCOLS

    return any(c.output == "depth" and c.key in ev.metrics for c in PROTOCOLS[ev.protocol].columns)


def _complete_scenes(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with FocalStackFile(path) as f:
            return len(f)
    except Exception:  # noqa: BLE001 - an unreadable file is the renderer's to refuse, with its own message
        return 0


def _unreadable(path: Path) -> str | None:
    """Why an existing ``path`` is not a focalstack file, or None (missing or readable)."""
    if not path.exists():
        return None
    try:
        with FocalStackFile(path) as f:
            len(f)
    except Exception as exc:  # noqa: BLE001 - any reason is the answer
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def settings_mismatch(ds: DatasetSpec, path: Path) -> str | None:
    """What of the render settings the experiment asks for ``ds`` the file's stored config contradicts, or None.
    Settings the experiment leaves to the preset are the preset's business and not compared."""
    from focalstack.dataset import DatasetError

    try:
        with FocalStackFile(path) as f:
            config, (height, width) = f.config, f.image_size
    except DatasetError as exc:
        return f"settings it does not record ({exc})"
    if (width, height) != (ds.resolution, ds.resolution):  # the images themselves, whatever the config says
        return f"images of {width} x {height} px; the experiment asks for {ds.resolution} x {ds.resolution}"
    asked: dict[str, object] = {"seed": ds.seed, "slices": "light_field" if ds.light_field else "cycles"}
    if not ds.preset.endswith(".toml"):
        asked["preset"] = ds.preset
    if ds.samples is not None:
        asked["samples"] = ds.samples
    if ds.denoise is not None:
        asked["denoise"] = ds.denoise
    for key, want in asked.items():
        if key in config and config[key] != want:  # a key the file does not record is not contradicted
            return f"{key} = {config[key]!r}; the experiment asks for {want!r}"
    if ds.focus_distances and "focus_distances" in config:
        have = [float(x) for x in config.get("focus_distances") or []]
        sent = [float(s) for s in ds.focus_distances]
        if len(have) != len(sent) or any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(have, sent)):
            return f"focus_distances = {have}; the experiment asks for {list(ds.focus_distances)}"
    return None


def _run_passing_stderr(cmd: list[str], show, keep: int = 8192) -> tuple[int, str, str]:
    """Run ``cmd``: its return code, its stdout and the last ``keep`` characters of its stderr, which goes on
    to ``show`` (a text stream, or None) as it comes, so that a progress bar shows and the error that ends the
    run is still known (state.json and the one-line error name it).

    The child runs in its own session: Ctrl-C (or SIGINT/SIGTERM to this process alone) reaches this process,
    which passes one SIGINT on, so the render finishes and writes its scene, and waits for it, so that its
    file's lock is free when this process ends; a second Ctrl-C kills it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""

    def pump():
        nonlocal tail, show
        while chunk := os.read(proc.stderr.fileno(), 4096):  # whatever has come: a bar's update shows at once
            text = decoder.decode(chunk)
            if show is not None:
                try:
                    show.write(text)
                    show.flush()
                except (OSError, ValueError):  # a closed terminal or pipe: stop showing, keep reading
                    show = None
            tail = (tail + text)[-keep:]
        tail = (tail + decoder.decode(b"", final=True))[-keep:]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read().decode(errors="replace")
        returncode = proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        raise
    finally:
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    return returncode, stdout, tail


def data_stamp(path: str) -> dict:
    """What a data file holds, by content rather than by time (a resumed render that added nothing, or a
    pack and unpack, touch a file without changing it): its name, when it was created, its complete scenes
    and a digest of their seeds. A file made again under the same name differs in one of them."""
    with FocalStackFile(path) as f:
        seeds = np.asarray(f.read_all("seed") if len(f) else [], dtype=np.int64)
        return {
            "file": Path(path).name,
            "created_utc": str(f.attrs.get("created_utc")),
            "scenes": len(f),
            "seeds": hashlib.sha256(seeds.tobytes()).hexdigest()[:16],
        }


def _stamp(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"
