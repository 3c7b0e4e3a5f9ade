"""focalstack-render's handling of bad input: one line, non-zero exit, no traceback, no damage."""

from __future__ import annotations

import hashlib
import json

import h5py
import pytest
from click.testing import CliRunner

from focalstack.render.cli import main
from focalstack.render.config import RenderConfig, load_preset
from focalstack.render.pipeline import open_writer


def run(args):
    result = CliRunner().invoke(main, args)
    return result, result.output.strip()


def assert_one_line_error(result, text, needle):
    assert result.exit_code != 0
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert needle.lower() in text.lower(), text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["--preset", "missing/file.toml"], "not found"),
        (["--f-number", "0"], "f-number = 0"),
        (["--f-number", "-2"], "f-number = -2"),
        (["--focus-distances", "0.1,0.002"], "focus distance 0.002"),
        (["--focus-distances", "0.1,abc"], "--focus-distances '0.1,abc': 'abc' is not a number"),
        (["--focus-distances", "0.1,inf"], "'inf' is not a finite"),
        (["--f-number", "inf"], "f-number = inf: expected a finite number"),
        (["--f-number", "nan"], "f-number = nan: expected a finite number"),
        (["--resolution", "0"], "resolution"),
        (["--resolution", "abc"], "resolution 'abc'"),
        (["--resolution", "12.5"], "resolution '12.5'"),
        (["--samples", "0"], "samples = 0"),
        # Blender's own limits: beyond them bpy failed mid-render, leaving a file of no scenes
        (["--resolution", "2"], "width = 2: Blender renders 4 to 65536 pixels"),
        (["--resolution", "32x3"], "height = 3: Blender renders 4 to 65536 pixels"),
        (["--resolution", "70000x32"], "width = 70000: Blender renders 4 to 65536 pixels"),
        (["--samples", "16777217"], "samples = 16777217: Cycles takes at most 16777216 samples per pixel"),
        (["--scenes", "0"], "scenes = 0"),
    ],
)
def test_bad_settings_get_one_line_error(tmp_path, args, needle):
    out = tmp_path / "x.h5"
    result, text = run([*args, "--out", str(out)])
    assert_one_line_error(result, text, needle)
    assert not out.exists()


def test_output_in_missing_folder(tmp_path):
    out = tmp_path / "nope" / "x.h5"
    result, text = run(["--out", str(out)])
    assert_one_line_error(result, text, "does not exist")
    assert not out.parent.exists()


def test_list_presets_names_fod500():
    result, text = run(["--list-presets"])
    assert result.exit_code == 0 and "fod500" in text.split()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_of_one_scene(config: RenderConfig, out) -> None:
    """``config``'s file holding one complete scene (of blank images: what is checked here is its settings)."""
    from focalstack.render.sampling import scene_seed

    open_writer(config, out).close()
    with h5py.File(out, "r+") as f:
        for name in f:
            f[name].resize(1, axis=0)
        f["seed"][0] = scene_seed(config.seed, 0)
        f["complete"][0] = True


def test_existing_file_with_other_settings_is_refused_and_untouched(tmp_path):
    out = tmp_path / "train.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7).validate()
    _file_of_one_scene(config, out)
    before = _digest(out)
    result, text = run(["--out", str(out), "--resolution", "32", "--seed", "8", "--scenes", "2"])
    assert_one_line_error(result, text, "seed")
    result, text = run(["--out", str(out), "--resolution", "32", "--seed", "7", "--f-number", "2.8"])
    assert_one_line_error(result, text, "f_number")
    assert _digest(out) == before


def test_foreign_file_at_output_is_refused_and_untouched(tmp_path):
    out = tmp_path / "notes.h5"
    out.write_text("not hdf5")
    result, text = run(["--out", str(out), "--resolution", "32"])
    assert_one_line_error(result, text, "not")
    assert out.read_text() == "not hdf5"
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    before = _digest(foreign)
    result, text = run(["--out", str(foreign), "--resolution", "32"])
    assert_one_line_error(result, text, "format")
    assert _digest(foreign) == before


def test_config_validation_names_values():
    with pytest.raises(ValueError, match="f-number"):
        RenderConfig(preset="x", f_number=0).validate()
    with pytest.raises(ValueError, match="beyond the focal length"):
        RenderConfig(preset="x", focus_distances=[0.0029]).validate()


def test_assets_folder_without_usable_files_is_an_error(tmp_path):
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "broken.obj").write_text("v 1 2\nf 9 9 9\n")
    result, text = run(["--preset", "mirrors", "--assets", str(folder), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and str(folder) in error_lines[0], text
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.blender
@pytest.mark.parametrize("args", [["--device", "cuda"], ["--device", "optix"], ["--device", "gpu", "--workers", "2"]])
def test_a_gpu_device_this_machine_lacks_is_one_line_naming_what_cycles_sees(tmp_path, args):
    """No GPU here: the error names the backend and the devices Cycles does see, before any file exists."""
    import subprocess
    import sys

    out = tmp_path / "gpu.h5"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "focalstack.render",
            "--resolution",
            "32",
            "--samples",
            "1",
            "--scenes",
            "1",
            *args,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "Cycles sees no" in lines[0] and "(it sees: " in lines[0] and "CPU" in lines[0]
    assert not out.exists()


def test_gpus_without_workers_and_a_gpu_device_is_refused(tmp_path):
    result, text = run(["--gpus", "0,1", "--out", str(tmp_path / "x.h5")])
    assert_one_line_error(result, text, "--gpus pins --workers processes")


@pytest.mark.blender
def test_the_file_records_which_device_rendered_which_scenes(tmp_path):
    from focalstack.render.pipeline import render_range

    config = load_preset("fod500").with_overrides(width=32, height=32, samples=1, denoise=False, scenes=2).validate()
    out = tmp_path / "devices.h5"
    with open_writer(config, out) as writer:
        render_range(config, writer, 0, 1)
    # resumed elsewhere with another device (here only recorded: this machine has no GPU to render with)
    with open_writer(config.with_overrides(device="cuda"), out) as writer:
        assert writer.attr("render_devices") == [{"device": "cpu", "from_scene": 0}, {"device": "cuda", "from_scene": 1}]
    with open_writer(config.with_overrides(device="cuda"), out) as writer:  # same device again: no new entry
        assert len(writer.attr("render_devices")) == 2
    with h5py.File(out) as f:
        assert "device" in f.attrs["config"]


def _older_file(path, config):
    """A file as the previous focalstack made it: light field 16 views x 2 samples, no light_field_guides."""
    import json

    open_writer(config.with_overrides(light_field_views=16, light_field_samples=2), path).close()
    with h5py.File(path, "r+") as f:
        stored = json.loads(f.attrs["config"])
        del stored["light_field_guides"]
        f.attrs["config"] = json.dumps(stored, sort_keys=True)


def test_changed_light_field_defaults_do_not_refuse_a_cycles_slices_file(tmp_path):
    out = tmp_path / "train.h5"
    config = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7).validate()
    assert config.render.slices == "cycles" and (config.render.light_field_views, config.render.light_field_samples) != (16, 2)
    _older_file(out, config)
    open_writer(config, out).close()  # resumes: the light-field keys change no pixel of this file


def test_a_light_field_file_resumes_only_with_the_light_field_settings_it_was_made_with(tmp_path):
    from focalstack.dataset.schema import DatasetError

    out = tmp_path / "train.h5"
    base = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7)
    config = base.with_overrides(slices="light_field", denoiser="standalone", aif_prefilter="none").validate()
    _older_file(out, config)
    before = _digest(out)
    with pytest.raises(DatasetError, match="light_field_guides.*light_field_samples"):
        open_writer(config, out)
    assert _digest(out) == before
    made_with = config.with_overrides(light_field_views=16, light_field_samples=2, light_field_guides="rays")
    open_writer(made_with, out).close()  # the file predates the key; it was rendered with ray guides


@pytest.mark.parametrize(
    "preset, resolution, want",
    [("fod500", "64", 0.25), ("fod500", "128", 0.5), ("test-wide-dof", "64", 1.0), ("test-medium-dof", "96x64", 0.75)],
)
def test_same_blur_scales_the_f_number_with_the_width(preset, resolution, want):
    from focalstack.dataset.optics import blur_diameter_px
    from focalstack.render.cli import config_from_options

    none = dict(focus_distances=None, focus_breathing=None, shake=None, sensor_noise=None, jpeg_quality=None, asset_dirs=())
    config = config_from_options(preset, resolution=resolution, same_blur=True, **none)
    original = load_preset(preset)
    assert config.f_number == pytest.approx(want)
    # the physics: a point 2 m away, focused at 0.3 m, blurs by the same number of pixels as at the preset's size
    blur = [blur_diameter_px(2.0, 0.3, c.f_number, c.focal_length_mm, c.sensor_width_mm, c.width) for c in (config, original)]
    assert blur[0] == pytest.approx(blur[1], rel=1e-9)


def test_same_blur_needs_a_resolution_and_no_f_number(tmp_path):
    result, text = run(["--same-blur", "--resolution", "64", "--f-number", "1", "--out", str(tmp_path / "x.h5")])
    assert_one_line_error(result, text, "give it or --f-number, not both")
    result, text = run(["--same-blur", "--out", str(tmp_path / "x.h5")])
    assert_one_line_error(result, text, "give --resolution")
    assert not (tmp_path / "x.h5").exists()


def test_light_field_slices_fall_back_to_cycles_where_osl_cannot_run_and_never_mix(tmp_path):
    import dataset_fixtures as fx

    from focalstack.render.config import RENDER_SETTINGS_LIGHT_FIELD, ConfigError
    from focalstack.render.pipeline import slices_for_device

    lf = load_preset("fod500").with_overrides(**RENDER_SETTINGS_LIGHT_FIELD.to_dict())
    out = tmp_path / "new.h5"
    for used in ("CPU", "OPTIX: NVIDIA H200", "optix"):  # OSL runs there: unchanged
        assert slices_for_device(lf, used, out) == (lf, None)
    for used in ("CUDA: NVIDIA H200", "HIP: AMD", "oneapi", "gpu"):  # a Ray task's 'gpu' may be any of them
        config, line = slices_for_device(lf, used, out)
        assert config.render.slices == "cycles" and "rendering each slice with Cycles" in line
        # the Cycles path as measured (in-render denoiser, accurate prefilter), not the light field's denoiser
        assert (config.render.denoiser, config.render.aif_prefilter) == ("in_render", "accurate")
        assert config.render.light_field_views == lf.render.light_field_views and config.seed == lf.seed
    cycles = load_preset("fod500")
    assert slices_for_device(cycles, "CUDA: x", out) == (cycles, None)
    # a file whose scenes are light-field renders is not continued with Cycles slices
    started = fx.write_file(tmp_path / "lf.h5", 1, attrs=fx.make_attrs(fx.make_config(slices="light_field")))
    with pytest.raises(ConfigError, match="its slices are light-field renders.*continue it with --device cpu or optix"):
        slices_for_device(lf, "CUDA: x", started)


def test_light_field_option_gives_the_measured_light_field_settings_and_keeps_the_others():
    from focalstack.render.cli import config_from_options
    from focalstack.render.config import RENDER_SETTINGS_LIGHT_FIELD

    none = dict(focus_distances=None, focus_breathing=None, shake=None, sensor_noise=None, jpeg_quality=None, asset_dirs=())
    plain = config_from_options("walls", resolution="32", samples=8, **none)
    lf = config_from_options("walls", resolution="32", samples=8, light_field=True, **none)
    for key in ("slices", "denoiser", "aif_prefilter"):
        assert getattr(lf.render, key) == getattr(RENDER_SETTINGS_LIGHT_FIELD, key) != getattr(plain.render, key), key
    assert lf.render.denoise_quality == RENDER_SETTINGS_LIGHT_FIELD.denoise_quality == "balanced"
    assert lf.render.samples == plain.render.samples == 8 and lf.scene == plain.scene and lf.f_number == plain.f_number


def test_either_slice_path_can_be_asked_for_on_any_preset():
    """--cycles-slices and --light-field choose either path on any preset, keeping every other setting."""
    from focalstack.render.cli import config_from_options
    from focalstack.render.config import RENDER_SETTINGS_LIGHT_FIELD, RenderSettings, builtin_presets

    none = dict(focus_distances=None, focus_breathing=None, shake=None, sensor_noise=None, jpeg_quality=None, asset_dirs=())
    cycles_keys = ("slices", "denoiser", "aif_prefilter")
    for preset in builtin_presets():
        default = config_from_options(preset, resolution="32", **none)
        cycles = config_from_options(preset, resolution="32", light_field=False, **none)
        lf = config_from_options(preset, resolution="32", light_field=True, **none)
        for key in cycles_keys:
            assert getattr(cycles.render, key) == getattr(RenderSettings(), key), (preset, key)
            assert getattr(lf.render, key) == getattr(RENDER_SETTINGS_LIGHT_FIELD, key), (preset, key)
        for other in (cycles, lf):
            assert other.render.light_field_views == default.render.light_field_views and other.scene == default.scene


def test_an_experiment_dataset_asks_for_the_light_field_or_for_cycles_slices_whatever_the_preset(tmp_path):
    """An experiment's datasets say their path: a preset's default changing does not change them, and a
    light-field preset (mirrors) tested beside Cycles-slices training data gets Cycles slices too."""
    from focalstack.render.cli import config_from_options
    from focalstack.train.experiments.spec import load_experiment

    exp_file = tmp_path / "e.toml"
    for flag, preset, want in (("light_field = true\n", "fod500", "light_field"), ("", "mirrors", "cycles")):
        exp_file.write_text(
            f'name = "e"\n[scales.tiny]\nresolution = 32\n{flag}[datasets.train]\npreset = "{preset}"\n'
            'scenes = 2\n[models.m]\narch = "fod-depth"\ndata = ["train"]\n'
        )
        ds = load_experiment(str(exp_file), "tiny").datasets["train"]
        args = ds.render_args()
        assert ("--light-field" in args) == (want == "light_field") == ds.file_name().endswith("_lf.h5")
        assert ("--cycles-slices" in args) == (want == "cycles")
        parsed = main.make_context("focalstack-render", [*args, "--out", str(tmp_path / "x.h5")]).params
        assert parsed["light_field"] == (want == "light_field")
        none = dict(focus_distances=None, focus_breathing=None, shake=None, sensor_noise=None, jpeg_quality=None, asset_dirs=())
        assert config_from_options(preset, resolution="32", light_field=parsed["light_field"], **none).render.slices == want


def test_a_file_begun_before_a_default_changed_resumes_with_its_own_value(tmp_path):
    """denoise_quality's default went from high to balanced: a file begun with high stays high to its end."""
    from focalstack.dataset.schema import DatasetError
    from focalstack.render.pipeline import CHANGED_DEFAULTS, with_file_settings

    out = tmp_path / "train.h5"
    today = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7).validate()
    assert today.render.denoise_quality == "balanced" and CHANGED_DEFAULTS["denoise_quality"] == "high"
    open_writer(today.with_overrides(denoise_quality="high"), out).close()
    before = _digest(out)
    with pytest.raises(DatasetError, match="denoise_quality"):
        open_writer(today, out)  # what the check alone says: the file was made otherwise
    assert _digest(out) == before  # refused untouched
    config, line = with_file_settings(today, out)
    assert config.render.denoise_quality == "high" and "denoise_quality = 'high'" in line
    open_writer(config, out).close()
    asked = today.with_overrides(denoise_quality="fast")  # a value asked for must still match the file
    assert with_file_settings(asked, out) == (asked, None)
    assert with_file_settings(today, tmp_path / "new.h5") == (today, None)  # a new file: today's default
    open_writer(today, tmp_path / "balanced.h5").close()
    assert with_file_settings(today, tmp_path / "balanced.h5") == (today, None)


def test_a_light_field_file_of_another_light_field_version_is_refused_untouched(tmp_path):
    """Version 1 light-field slices (before the uneven rays and the sub-pixel guides were fixed) are not continued
    with version 2's: a dataset never mixes the two. A Cycles-slices file of that age resumes."""
    import json

    from focalstack.dataset.schema import DatasetError

    base = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7)
    for slices, refused in (("light_field", True), ("cycles", False)):
        out = tmp_path / f"{slices}.h5"
        config = base.with_overrides(slices=slices, denoiser="standalone", aif_prefilter="none").validate()
        open_writer(config, out).close()
        with h5py.File(out, "r+") as f:  # as focalstack 0.2 wrote it
            stored = json.loads(f.attrs["config"])
            del stored["light_field_version"], stored["slice_denoise_quality"]
            f.attrs["config"] = json.dumps(stored, sort_keys=True)
        before = _digest(out)
        if refused:
            with pytest.raises(DatasetError, match="light-field renders of version 1.*choose another --out"):
                open_writer(config, out)
            assert _digest(out) == before
        else:
            open_writer(config, out).close()


def test_an_output_folder_it_may_not_write_in_is_one_line(tmp_path, monkeypatch):
    """Tests run as root, where no folder is unwritable: the lock file's creation is made to fail as it would."""
    import focalstack.render.job as job

    def refuse(path):
        raise PermissionError(13, "Permission denied", f"{path}.lock")

    monkeypatch.setattr(job, "exclusive_lock", refuse)
    out = tmp_path / "x.h5"
    result, text = run(["--scenes", "1", "--resolution", "8", "--samples", "1", "--out", str(out)])
    assert_one_line_error(result, text, f"Error: {out}.lock: Permission denied")
    assert not out.exists()


@pytest.mark.blender
def test_a_light_field_wider_than_blender_renders_is_one_line_naming_the_way_out(tmp_path):
    """The views lie side by side in one image: 16 views of a 17000 px wide frame need about 70000 px."""
    import subprocess
    import sys

    args = ["--scenes", "1", "--resolution", "17000x4", "--samples", "1", "--light-field", "--out", str(tmp_path / "lf.h5")]
    done = subprocess.run([sys.executable, "-m", "focalstack.render", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: light field: 16 views of ") and "beyond Blender's 65536" in last, done.stderr
    assert "--cycles-slices" in last and "Traceback" not in done.stderr


def test_a_render_that_fails_before_its_first_scene_leaves_no_file_it_made(tmp_path, monkeypatch):
    """A file of no scene under the name asked for looks like a dataset: the file this run created goes with
    the error, and so does one of no scene that an earlier run left (below)."""
    import focalstack.render.job as job
    from focalstack.render.pipeline import RenderError

    def broken(*args, **kwargs):
        raise RenderError("Cycles failed on scene 0")

    monkeypatch.setattr(job, "render_range", broken)
    monkeypatch.setattr(job, "check_blender", lambda: None)
    out = tmp_path / "x.h5"
    result, text = run(["--scenes", "2", "--resolution", "8", "--samples", "1", "--out", str(out)])
    assert result.exit_code == 1 and text.splitlines()[-1] == "Error: Cycles failed on scene 0", text  # after the bar
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    config = load_preset("fod500").with_overrides(width=8, height=8, scenes=2, samples=1).validate()
    open_writer(config, out).close()  # an earlier run's file, of no scene yet
    with pytest.warns(UserWarning, match="held no complete scene"), pytest.raises(RenderError):
        job.render_dataset(config, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_file_of_no_scene_left_by_a_killed_run_neither_refuses_nor_binds_the_next_run(tmp_path, monkeypatch):
    """A run killed outright (SIGKILL) before its first scene leaves a file of no scene. A rerun with other
    settings was refused as 'exists with other settings' until the file was deleted by hand; it now starts
    again, with its own settings. A file holding scenes, or that does not read, is not touched."""
    import dataset_fixtures as fx

    import focalstack.render.job as job

    def nothing(config, writer, *args, **kwargs):
        return {}

    monkeypatch.setattr(job, "render_range", nothing)
    monkeypatch.setattr(job, "check_blender", lambda: None)
    out = tmp_path / "x.h5"
    before = load_preset("fod500").with_overrides(width=8, height=8, scenes=2, samples=2).validate()
    open_writer(before, out).close()
    again = before.with_overrides(samples=1)
    with pytest.warns(UserWarning, match=r"x.h5: held no complete scene \(a run stopped before its first one\)"):
        job.render_dataset(again, out)
    with h5py.File(out) as f:
        assert json.loads(f.attrs["config"])["samples"] == 1

    kept = fx.write_file(tmp_path / "kept.h5", 1)
    digest = _digest(kept)
    assert job.drop_empty_leftover(kept) is None and _digest(kept) == digest
    fx.append_incomplete(kept)
    fx.append_incomplete(kept)
    with h5py.File(kept, "r+") as f:  # rows begun, none complete: not what a killed render leaves
        f["complete"][0] = False
    digest = _digest(kept)
    assert job.drop_empty_leftover(kept) is None and _digest(kept) == digest
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert job.drop_empty_leftover(tmp_path / "junk.h5") is None and (tmp_path / "junk.h5").read_bytes() == b"not hdf5"


def test_dry_run_prints_the_resolved_configuration_and_writes_nothing(tmp_path):
    import json

    result, text = run(["--preset", "walls", "--resolution", "48", "--focus-distances", "0.2,0.4", "--dry-run"])
    assert result.exit_code == 0, text
    config = json.loads(text)
    assert (config["preset"], config["width"], config["focus_distances"]) == ("walls", 48, [0.2, 0.4])
    assert list(tmp_path.iterdir()) == []
    result, text = run(["--preset", "walls", "--focus-distances", "0.001,0.4", "--dry-run"])
    assert_one_line_error(result, text, "focus distance 0.001 m")
    # the run options that need neither --out nor Blender are checked too
    result, text = run(["--preset", "walls", "--workers", "2", "--ray", "local", "--dry-run"])
    assert_one_line_error(result, text, "--workers and --ray: choose one")
    result, text = run(["--preset", "walls", "--gpus", "0,1", "--dry-run"])
    assert_one_line_error(result, text, "--gpus pins --workers processes to GPUs")


def test_resolve_answers_each_command_line_with_its_configuration_or_its_error():
    from focalstack.render.cli_resolve import resolve

    assert resolve(["--preset", "fod500", "--samples", "3"])["config"]["samples"] == 3
    assert "width = 2" in resolve(["--preset", "fod500", "--resolution", "2"])["error"]
    assert "No such option" in resolve(["--preset", "fod500", "--bogus"])["error"]


def test_effects_written_otherwise_but_the_same_resume(tmp_path):
    """--jpeg-quality 0 (documented as off) stored {'jpeg_quality': 0}: the same command without it was refused
    as 'exists with other settings', though both make the same data. Other effects are still refused."""
    from focalstack.dataset.schema import DatasetError
    from focalstack.render.pipeline import with_file_settings

    out = tmp_path / "train.h5"
    plain = load_preset("fod500").with_overrides(width=32, height=32, scenes=2, seed=7).validate()
    off = plain.with_overrides(effects={"jpeg_quality": 0, "read_noise": 0.0})
    open_writer(off, out).close()
    config, line = with_file_settings(plain, out)
    assert line is None and config.effects == {"jpeg_quality": 0, "read_noise": 0.0}
    open_writer(config, out).close()  # resumes
    jpeg = plain.with_overrides(effects={"jpeg_quality": 90})
    config, _ = with_file_settings(jpeg, out)
    assert config.effects == {"jpeg_quality": 90}
    with pytest.raises(DatasetError, match="effects"):
        open_writer(config, out)


def test_resolve_answers_an_unreadable_preset_for_its_line_alone(tmp_path):
    from focalstack.render.cli_resolve import resolve

    folder = tmp_path / "p.toml"
    folder.mkdir()  # a preset path that is a folder: an OSError, not a ConfigError
    answer = resolve(["--preset", str(folder)])
    assert "error" in answer and "\n" not in answer["error"]
    assert "error" in resolve(["--help"])


@pytest.mark.parametrize(
    "scene, args, needle",
    [
        ("stack_size = [1, 50]", [], "stack_size = [1, 50]: at most the camera's 5 focus distances"),
        ("stack_size = [2, 3]", ["--focus-distances", "0.2,0.4"], "stack_size = [2, 3]: at most the camera's 2"),
        ('focus_sampling = "random"\nfocus_range = [0.001, 0.002]', [], "focus_range = [0.001, 0.002]: focus distance 0.001 m"),
        ('focus_sampling = "random"\nfocus_range = [0.5, 0.5]', [], "every slice would be focused at one distance"),
    ],
)
def test_scene_keys_the_camera_rules_out_are_refused_by_dry_run_not_at_the_first_scene(tmp_path, scene, args, needle):
    """They passed --dry-run and every check, then the first scene ended the render with a traceback."""
    preset = tmp_path / "p.toml"
    preset.write_text(f'base = "fod500"\n[scene]\n{scene}\n')
    result, text = run(["--preset", str(preset), *args, "--dry-run"])
    assert_one_line_error(result, text, needle)


def test_one_random_focus_distance_is_fine_where_every_stack_has_one_slice(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('base = "fod500"\n[scene]\nfocus_sampling = "random"\nfocus_range = [0.5, 0.5]\nstack_size = [1, 1]\n')
    result, text = run(["--preset", str(preset), "--dry-run"])
    assert result.exit_code == 0, text
    result, text = run(["--preset", str(preset), "--focus-distances", "0.4", "--dry-run"])
    assert result.exit_code == 0, text
