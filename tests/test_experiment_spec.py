"""Experiment files are checked whole before anything runs: one line naming the file, table and value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from focalstack.train.experiments import ExperimentError, bundled_experiments, load_experiment

GOOD = """
name = "t"
[scales.tiny]
resolution = 32
epochs = 1
batch_size = 1
[datasets.train]
preset = "fod500"
scenes = { tiny = 2 }
[datasets.test]
preset = "test-shape"
scenes = 1
[models.m]
arch = "fod-depth"
data = ["train"]
[[evaluations]]
name = "e"
datasets = ["test"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_per_scale_values(tmp_path):
    exp = load_experiment(str(write(tmp_path, GOOD)), "tiny")
    assert exp.datasets["train"].scenes == 2 and exp.datasets["train"].resolution == 32
    assert exp.models["m"].train == {"epochs": 1, "batch_size": 1}
    assert exp.evaluations[0].models == ["m"] and exp.evaluations[0].settings == ["All", "Random"]


@pytest.mark.parametrize(
    "change, needle",
    [
        (('preset = "fod500"', 'preset = "fod9000"'), "[datasets.train]: unknown preset 'fod9000'"),
        (('arch = "fod-depth"', 'arch = "resnet"'), "[models.m]: unknown architecture 'resnet'"),
        (('datasets = ["test"]', 'datasets = ["walls-test"]'), "names dataset 'walls-test', which [datasets] does not define"),
        (('data = ["train"]', 'data = ["nope"]'), "data names dataset 'nope'"),
        (("epochs = 1", "epochs = 1\nwobble = 3"), "[scales.tiny]: unknown key(s) wobble"),
        (("scenes = { tiny = 2 }", "scenes = { tiny = 2, huge = 9 }"), "names scale(s) huge the file does not define"),
        (('arch = "fod-depth"', 'arch = "fod-depth"\nlr = inf'), "[models.m]: --lr inf"),
        (('datasets = ["test"]', 'datasets = ["test"]\nsettings = ["Sometimes"]'), "settings = ['Sometimes']"),
        (("[models.m]", "[models.constant]"), "[models.constant]: 'constant' names the reports' constant-depth baseline"),
        (('arch = "fod-depth"', 'arch = "fod-depth"\nloss_weights = { dpeth = 0.3 }'), "[models.m]: --loss-weight 'dpeth=0.3'"),
        (('arch = "fod-depth"', 'arch = "fod-depth"\nrelative_floor = 0.5'), "--relative-floor 0.5: expected 0 unless"),
        # a value where a list belongs: a traceback (a number), or taken letter by letter (a string)
        (('datasets = ["test"]', 'datasets = ["test"]\nstack_sizes = 3'), "'e': stack_sizes = 3: expected a list"),
        (('datasets = ["test"]', 'datasets = ["test"]\nstack_sizes = { tiny = 3 }'), "stack_sizes = 3: expected a list"),
        (('name = "t"', 'name = "t"\nnotes = "hello"'), "exp.toml: notes = 'hello': expected a list"),
        (('datasets = ["test"]', 'datasets = ["test"]\nsettings = "All"'), "settings = 'All': expected a list"),
        (('datasets = ["test"]', 'datasets = ["test"]\nmetrics = "rms"'), "metrics = 'rms': expected a list"),
        (('datasets = ["test"]', 'datasets = "test"'), "datasets = 'test': expected a list"),
        (('data = ["train"]', 'data = "train"'), "[models.m]: data = 'train': expected a list"),
        # evaluate refuses it, and did so only after every model had trained
        (('datasets = ["test"]', 'datasets = ["test"]\norders = ["sorted", "random"]'), "orders the slices of stack_sizes"),
        # models = [] passed, and the constant's evaluation then failed with a traceback after every model trained
        (('datasets = ["test"]', 'datasets = ["test"]\nmodels = []'), "'e': models = []: expected at least one model"),
        (('datasets = ["test"]', 'datasets = ["test"]\nstack_sizes = [20]'), "no dataset has stacks of 20 slices (test: 5)"),
        # values focalstack-render refuses: found when the dataset's turn to render came, its reason lost
        (("scenes = 1", "scenes = 1\nfocus_distances = [0.001, 0.5]"), "[datasets.test]: focus distance 0.001 m"),
        (("scenes = 1", "scenes = 1\nsamples = 99999999999"), "[datasets.test]: samples = 99999999999"),
        (("resolution = 32", "resolution = 2"), "[datasets.train]: width = 2"),
    ],
)
def test_bad_files_are_refused_naming_what_is_wrong(tmp_path, change, needle):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ExperimentError) as err:
        load_experiment(str(path), "tiny")
    assert needle in str(err.value) and "exp.toml" in str(err.value)


def test_a_binary_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ExperimentError, match=r"^exp.toml: not a text file \(expected TOML in UTF-8\)$"):
        load_experiment(str(path), "tiny")


def test_a_table_of_some_loss_weights_keeps_the_others_defaults(tmp_path):
    text = GOOD.replace('arch = "fod-depth"', 'arch = "fod-depth"\ndepth_loss = "relative"\nloss_weights = { depth = 0.375 }')
    train = load_experiment(str(write(tmp_path, text)), "tiny").models["m"].train
    assert train["depth_loss"] == "relative"
    assert train["loss_weights"] == {"defocus": 1.0, "depth": 0.375, "aif": 1.0, "perceptual": 0.1, "edges": 0.1}
    # a scale's table and a model's merge term by term, the model's winning
    text = GOOD.replace("epochs = 1\n", "epochs = 1\nloss_weights = { depth = 0.375, aif = 2 }\n", 1)
    text = text.replace('arch = "fod-depth"', 'arch = "fod-depth"\nloss_weights = { edges = 0, aif = 3 }')
    train = load_experiment(str(write(tmp_path, text)), "tiny").models["m"].train
    assert train["loss_weights"] == {"defocus": 1.0, "depth": 0.375, "aif": 3.0, "perceptual": 0.1, "edges": 0.0}


def test_a_scale_the_file_does_not_define_is_refused(tmp_path):
    with pytest.raises(ExperimentError, match="scale 'full' is not defined .the file defines tiny."):
        load_experiment(str(write(tmp_path, GOOD)), "full")


def test_bundled_experiments_load_at_every_scale():
    assert set(bundled_experiments()) >= {"paper-table1", "paper-depth", "walls-fix", "weights-v1"}
    for name in bundled_experiments():
        scales = load_experiment(name, "tiny").scales
        assert "tiny" in scales and len(scales) >= 2  # every experiment proves its pipeline at tiny scale
        for scale in scales:
            exp = load_experiment(name, scale)
            assert exp.scale == scale and exp.models and exp.evaluations
    table1 = load_experiment("paper-table1", "full")
    assert {m.arch for m in table1.models.values()} == {"fod-single-direct", "fod-single", "fod-aif-direct", "fod"}
    assert table1.datasets["train"].scenes == 1000 and table1.datasets["test-shape"].resolution == 256


def test_the_cli_refuses_a_bad_file_in_one_line_before_anything_runs(tmp_path):
    path = write(tmp_path, GOOD.replace('preset = "test-shape"', 'preset = "nowhere"'))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "focalstack.train", "experiment", str(path), "--scale", "tiny", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "unknown preset 'nowhere'" in done.stderr and not out.exists()


def test_paper_table1_bundles_the_supplements_tables_as_published_rows():
    ev = load_experiment("paper-table1", "tiny").evaluations[0]
    table1 = [r for r in ev.published if r["source"].startswith("FoD supp. Table 1")]
    table2 = [r for r in ev.published if r["source"].startswith("FoD supp. Table 2")]
    # 4 models x 4 splits x (All, Random), less Random for the two single-image models; Table 2: 4 x (S, R)
    assert len(table1) == 24 and len(table2) == 8
    row4 = next(r for r in table1 if (r["model"], r["dataset"], r["setting"]) == ("stack-defocus-aif", "test-shape", "All"))
    assert (row4["aif_ssim"], row4["aif_psnr_peak255"]) == (0.969, 85.8)
    assert {r["dataset"] for r in table1} == set(ev.datasets) and {r["dataset"] for r in table2} == {"flower (real)"}
    assert not any(r["setting"] == "Random" and r["model"].startswith("single") for r in table1)


def test_published_rows_print_in_both_psnr_conventions_and_say_what_is_not_evaluated_here():
    from focalstack.train.experiments.report import evaluation_section

    ev = load_experiment("paper-table1", "tiny").evaluations[0]
    lines, rows = evaluation_section(ev, {})
    row4 = next(r for r in rows if (r["model"], r["dataset"], r["setting"]) == ("stack-defocus-aif", "test-shape", "All"))
    assert row4["aif_psnr"] == pytest.approx(85.8 - 48.13, abs=0.01) and row4["aif_psnr_peak255"] == 85.8
    text = "\n".join(lines)
    assert "| stack-defocus-aif (FoD supp. Table 1) | test-shape | All | 0.969 | 37.67 | 85.8 |" in text
    assert "Published only (not rendered or evaluated here): flower (real)." in text


def test_a_published_row_under_the_protocols_columns_loads(tmp_path):
    row = '{ model = "m", source = "s", dataset = "test", setting = "All", aif_ssim = 0.9, aif_psnr_peak255 = 80.0 }'
    exp = load_experiment(str(write(tmp_path, GOOD + f"published = [{row}]\n")), "tiny")
    assert exp.evaluations[0].published == [
        {"model": "m", "source": "s", "dataset": "test", "setting": "All", "aif_ssim": 0.9, "aif_psnr_peak255": 80.0}
    ]


@pytest.mark.parametrize(
    "row, needle",
    [
        ('{ model = "m", source = "s", depth_rmse = "high" }', "depth_rmse = 'high': expected a number"),
        ('{ model = "m", depth_rmse = 0.1 }', "source = None: expected a non-empty string"),
        ('{ model = "m", source = "s", rmse_typo = 0.1 }', "unknown key.s. rmse_typo"),
        ('{ model = "m", source = "s", dataset = "test" }', "no value under any column"),
    ],
)
def test_a_bad_published_row_is_refused_in_one_line(tmp_path, row, needle):
    with pytest.raises(ExperimentError, match=needle) as err:
        load_experiment(str(write(tmp_path, GOOD + f"published = [{row}]\n")), "tiny")
    assert "published row 1" in str(err.value) and "\n" not in str(err.value)


def test_without_rendering_a_missing_or_short_file_is_refused_naming_it(tmp_path):
    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    exp = load_experiment(str(write(tmp_path, GOOD)), "tiny")
    runner = ExperimentRunner(exp, RunOptions(out=tmp_path / "run", data_dir=tmp_path / "data", render=False))
    (tmp_path / "data").mkdir()
    with pytest.raises(
        ExperimentRunError,
        match=r"render train: .*fod500_seed0_32px_n2.h5 holds 0 of its 2 scenes, "
        r"and rendering is off",
    ):
        runner.render(exp.datasets["train"])


def test_a_run_that_stops_records_why_and_leaves_no_empty_data_folder(tmp_path):
    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    exp = load_experiment(str(write(tmp_path, GOOD)), "tiny")
    runner = ExperimentRunner(exp, RunOptions(out=tmp_path / "run", render=False, progress=False))
    with pytest.raises(ExperimentRunError, match="holds 0 of its 2 scenes"):
        runner.run()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["running"] is False and "holds 0 of its 2 scenes" in state["error"] and "\n" not in state["error"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["state.json"]  # data/ was made, and is gone


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--samples", "64"], "--samples"),  # the file sets it for one dataset
        (["--seed=3"], "--seed"),
        (["--cycles-slices"], "--cycles-slices"),  # the other half of the flag the experiment always passes
        (["--f-number", "2"], "--f-number"),  # left to the preset by the file: it still changes the data
        (["--workers", "2", "--sensor-noise", "0.01"], "--sensor-noise"),
        (["-x"], "-x"),
    ],
)
def test_a_render_option_that_changes_the_data_is_refused_before_anything_runs(tmp_path, extra, named):
    """The file's name and the report describe the experiment's settings: an override would mislabel the data."""
    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    exp = load_experiment(str(write(tmp_path, GOOD.replace("scenes = 1", "scenes = 1\nsamples = 8"))), "tiny")
    with pytest.raises(ExperimentRunError, match=rf"^--render-option {named}: only options that say how to render pass"):
        ExperimentRunner(exp, RunOptions(out=tmp_path / "run", render_args=extra))
    assert not (tmp_path / "run").exists()


def test_render_options_that_say_how_to_render_are_passed_on(tmp_path):
    from focalstack.train.experiments import ExperimentRunner, RunOptions

    exp = load_experiment(str(write(tmp_path, GOOD)), "tiny")
    how = ["--workers", "2", "--threads=1", "--device", "cpu", "--ray", "--ray-timeout", "30", "--threads", "-1"]
    assert ExperimentRunner(exp, RunOptions(out=tmp_path / "run", render_args=how)).opt.render_args == how


def test_without_rendering_a_file_of_other_settings_or_not_a_focalstack_file_is_refused(tmp_path):
    """--no-render checked the scene count alone: a 16-sample file passed for a 4-sample dataset."""
    import dataset_fixtures as fx

    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    exp = load_experiment(str(write(tmp_path, GOOD.replace("scenes = 1", "scenes = 1\nsamples = 4"))), "tiny")
    ds = exp.datasets["test"]
    runner = ExperimentRunner(exp, RunOptions(out=tmp_path / "run", data_dir=tmp_path / "data", render=False))
    path = runner.dataset_path("test")
    path.parent.mkdir()
    (tmp_path / "run").mkdir()
    right = fx.make_config(preset="test-shape", seed=0, width=32, height=32, samples=4, slices="cycles")
    for change, why in [
        ({"samples": 16}, "samples = 16; the experiment asks for 4"),
        ({"seed": 3}, "seed = 3; the experiment asks for 0"),
        ({"slices": "light_field"}, "slices = 'light_field'; the experiment asks for 'cycles'"),
        ({"preset": "fod500"}, "preset = 'fod500'; the experiment asks for 'test-shape'"),
    ]:
        path.unlink(missing_ok=True)
        fx.write_file(path, 1, height=32, width=32, attrs=fx.make_attrs({**right, **change}))
        with pytest.raises(ExperimentRunError, match=f"render test: .*{ds.file_name()} was rendered with {why}"):
            runner.render(ds)
    path.unlink()
    fx.write_file(path, 1, height=32, width=24, attrs=fx.make_attrs(right))
    with pytest.raises(ExperimentRunError, match="was rendered with images of 24 x 32 px; the experiment asks for 32 x 32"):
        runner.render(ds)
    path.unlink()
    fx.write_file(path, 1, height=32, width=32, attrs=fx.make_attrs(right))
    runner.render(ds)  # the settings it asks for: reused
    assert runner.steps[-1].action == "reused" and runner.steps[-1].detail["checked"] == "scene count and render settings"
    path.write_text("not HDF5")
    with pytest.raises(ExperimentRunError, match=f"render test: {path}: "):
        runner.render(ds)


def test_the_constant_goes_beside_any_depth_column_of_any_protocol(tmp_path):
    from focalstack.train.experiments.runner import _scores_depth

    text = GOOD + 'protocol = "dfv"\nmetrics = ["bump"]\n'
    assert _scores_depth(load_experiment(str(write(tmp_path, text)), "tiny").evaluations[0])
    text = GOOD + 'metrics = ["aif_ssim", "defocus_mse"]\n'
    assert not _scores_depth(load_experiment(str(write(tmp_path, text)), "tiny").evaluations[0])


def test_compare_published_adds_the_protocols_own_rows_to_the_report(tmp_path):
    from focalstack.train.experiments.report import evaluation_section

    text = GOOD + 'protocol = "aifdepthnet"\ncompare_published = true\n'
    ev = load_experiment(str(write(tmp_path, text)), "tiny").evaluations[0]
    _, rows = evaluation_section(ev, {})
    assert {r["model"] for r in rows} == {"DefocusNet", "AiFDepthNet"}
    assert next(r for r in rows if r["model"] == "DefocusNet")["mse_fp"] == 0.0175
    with pytest.raises(ExperimentError, match="compare_published = 'yes': expected true or false"):
        load_experiment(str(write(tmp_path, GOOD + 'compare_published = "yes"\n')), "tiny")


@pytest.mark.parametrize("protocol, metric", [("dfv", "rms"), ("aifdepthnet", "rmse"), ("focalstack", "depth_rmse")])
def test_models_are_compared_by_the_protocols_own_depth_error(tmp_path, protocol, metric):
    from focalstack.train.experiments.report import comparison_section

    ev = load_experiment(str(write(tmp_path, GOOD + f'protocol = "{protocol}"\n')), "tiny").evaluations[0]
    dataset = ev.datasets[0]

    def rows(value):
        other = {"depth_rmse": 9.0, "rms": 9.0, "rmse": 9.0}  # every protocol's other RMS names: must not be read
        return {"rows": [{"dataset": dataset, "setting": "All", **other, metric: value}]}

    text = "\n".join(comparison_section(ev, {"a": rows(0.5), "b": rows(0.4)}))
    assert f"### {ev.name}: {metric} by model (All setting)" in text
    assert f"| {dataset} | all | 0.5 | 0.4 | -20.0 % |" in text


def test_a_model_that_fails_in_a_parallel_run_is_one_line_naming_it_and_the_others_train_on(tmp_path):
    from train_fixtures import experiment_with_synthetic_data

    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    text = GOOD.replace(
        '[models.m]\narch = "fod-depth"\ndata = ["train"]',
        '[models.m]\narch = "fod-depth"\ndata = ["train"]\n'
        "loss_weights = { defocus = 0.0, depth = 0.0, aif = 0.0, perceptual = 0.0, edges = 0.0 }\n"
        '[models.n]\narch = "fod-depth"\ndata = ["train"]\narch_kwargs = { width = 4 }\nepochs = 4',
    )
    text = text.replace("[scales.tiny]\nresolution = 32", "[scales.tiny]\nresolution = 32\nprogress = false")
    exp, data = experiment_with_synthetic_data(tmp_path, text)
    runner = ExperimentRunner(
        exp, RunOptions(out=tmp_path / "run", data_dir=data, render=False, parallel=2, device="cpu", progress=False)
    )
    with pytest.raises(ExperimentRunError, match=r"train m: nothing to train") as err:
        runner.run()
    assert "train n" not in str(err.value) and set(runner.failed) == {"m"}
    # n outlives m's failure (four epochs against none) and still trains to its end
    from focalstack.train.checkpoint import load_checkpoint
    from focalstack.train.resume import run_finished

    last = runner.model_dir("n") / "last.pt"
    assert last.is_file() and run_finished(load_checkpoint(last), runner.train_config(exp.models["n"]))


def test_a_failed_process_is_reported_with_its_own_error_not_an_earlier_sessions(tmp_path):
    from focalstack.train.experiments.runner import _last_error, _log_end

    log = tmp_path / "train.log"
    log.write_text("10:00:00 training fod\nerror: out of memory\n")  # an earlier session
    start = _log_end(log)
    with open(log, "a") as fh:
        fh.write("11:00:00 resuming\n")  # this session, killed by a signal: no error line
    assert _last_error(tmp_path, start) == "its process failed"
    with open(log, "a") as fh:
        fh.write("error: nothing to train\n")
    assert _last_error(tmp_path, start) == "nothing to train"
    assert _last_error(tmp_path / "none") == "its process failed"
    # the process replaced the log (a new run clears one that left no checkpoint), shorter than before: read whole
    start = _log_end(log)
    log.unlink()
    log.write_text("error: bad data\n")
    assert _last_error(tmp_path, start) == "bad data"


def test_a_rerun_trains_no_model_and_reuses_no_evaluation_that_the_file_or_the_data_no_longer_describe(tmp_path):
    """A changed lr reused the model trained with the old one (report.json claimed the new); a test file made
    again under its name reused the model's evaluation of the old file beside the constant's of the new."""
    from dataclasses import replace

    from train_fixtures import experiment_with_synthetic_data, write_synthetic

    from focalstack.train.experiments import ExperimentRunner, RunOptions
    from focalstack.train.experiments.runner import ExperimentRunError

    text = GOOD.replace('data = ["train"]', 'data = ["train"]\narch_kwargs = { width = 4 }\nlr = 0.0001')
    text = text.replace('datasets = ["test"]', 'datasets = ["test"]\nsettings = ["All"]\nfigures = 0')
    exp, data = experiment_with_synthetic_data(tmp_path, text)
    options = RunOptions(out=tmp_path / "run", data_dir=data, render=False, device="cpu", progress=False)
    ExperimentRunner(exp, options).run()

    changed = load_experiment(str(write(tmp_path, text.replace("lr = 0.0001", "lr = 0.01"))), "tiny")
    with pytest.raises(ExperimentRunError, match=r"train m: .* was trained otherwise .*\(lr: 0.0001 -> 0.01\)"):
        ExperimentRunner(changed, options).run()
    with pytest.raises(ExperimentRunError, match=r"train m: .* was trained otherwise"):  # and with --parallel
        ExperimentRunner(changed, replace(options, parallel=2)).run()

    same = ExperimentRunner(exp, options)
    same.run()
    assert {s.action for s in same.steps if s.kind in ("train", "evaluate")} == {"reused"}
    test_file = data / exp.datasets["test"].file_name()
    test_file.unlink()
    write_synthetic(test_file, exp.datasets["test"].scenes, 32, seed=7)  # same name and size, other scenes
    again = ExperimentRunner(exp, options)
    again.run()
    assert {(s.name, s.action) for s in again.steps if s.kind == "evaluate"} == {("e/m", "ran"), ("e/constant", "ran")}


def test_focus_distances_reach_the_renderer_exactly():
    """render_args sent them to 6 significant digits (:g): 0.1234567 rendered at 0.123457."""
    from focalstack.train.experiments.spec import DatasetSpec

    spec = DatasetSpec("d", "fod500", 0, 1, 32, focus_distances=[0.1234567, 0.5])
    args = spec.render_args()
    assert args[args.index("--focus-distances") + 1] == "0.1234567,0.5"
    # its file is not the one rendered at 6 digits under :g's name; names of exact :g values stay as they were
    assert "f0.1234567-0.5" in spec.file_name()
    assert "f0.1-0.5" in DatasetSpec("d", "fod500", 0, 1, 32, focus_distances=[0.1, 0.5]).file_name()


def test_a_render_shows_its_progress_and_its_error_is_still_known():
    """With progress on, focalstack-render's stderr went to the terminal only: a failed render was recorded in
    state.json as 'focalstack-render failed: 1', its reason lost. More than a pipe's buffer on both streams."""
    import io

    from focalstack.train.experiments.runner import _run_passing_stderr

    shown = io.StringIO()
    code = "import sys; print('o' * 200000); sys.stderr.write('rendering 1/3\\r' * 20000 + 'Error: the reason\\n'); sys.exit(1)"
    returncode, stdout, stderr = _run_passing_stderr([sys.executable, "-c", code], shown, keep=200)
    assert (returncode, stdout) == (1, "o" * 200000 + "\n")
    assert stderr.endswith("Error: the reason\n") and len(stderr) == 200
    assert shown.getvalue().startswith("rendering 1/3\r") and shown.getvalue().endswith("Error: the reason\n")

    class Closed(io.StringIO):  # a terminal or pipe that went away: reading on, not hanging the child
        def write(self, text):
            raise BrokenPipeError

    import threading

    answers: list = []
    run = threading.Thread(target=lambda: answers.append(_run_passing_stderr([sys.executable, "-c", code], Closed())))
    run.daemon = True  # a deadlocked run (the child blocked on a full stderr pipe) fails here, not hangs the suite
    run.start()
    run.join(timeout=60)
    assert answers and answers[0][0] == 1 and answers[0][2].endswith("Error: the reason\n")


def test_ctrl_c_of_the_runner_lets_the_render_finish_its_scene_and_waits_for_it(tmp_path):
    """Ctrl-C (or SIGINT to the runner alone) killed the render mid-scene, or left it running without its
    runner, holding its file's lock."""
    import os
    import signal
    import time

    marker = tmp_path / "finished"
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    time.sleep(1); pathlib.Path({str(marker)!r}).write_text('scene written'); sys.exit(1)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import sys\n"
        "from focalstack.train.experiments.runner import _run_passing_stderr\n"
        "print('started', flush=True)\n"
        f"_run_passing_stderr([sys.executable, '-c', {child!r}], None)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"started\n"
    time.sleep(2)  # the child has set its handler
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    assert marker.read_text() == "scene written"  # written before the runner ended
    assert b"KeyboardInterrupt" in proc.stderr.read()


def test_the_reports_scale_note_gives_the_experiments_own_sizes(tmp_path):
    """The tiny scale's note said '64 px scenes' whatever the file's resolution."""
    from focalstack.train.experiments.report import scale_note

    note = scale_note(load_experiment(str(write(tmp_path, GOOD)), "tiny"))
    assert note.startswith("32 px, 2 scene(s) in training datasets; a pipeline check") and "64" not in note
