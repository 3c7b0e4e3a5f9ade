"""The wheel: every sub-package and data file under focalstack.* (installed, not only editable), metadata
that admits Python 3.10-3.13 with numpy 2 outside the render extra, and a real install on Python 3.12."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import dataset_fixtures as fx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    # Build from a clean copy: setuptools would reuse a stale build/ folder of the working tree.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("render", "assets", "dataset", "train", "weights"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("focalstack-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_names(wheel_path):
    return set(zipfile.ZipFile(wheel_path).namelist())


@pytest.fixture(scope="module")
def metadata(wheel_path):
    with zipfile.ZipFile(wheel_path) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(z.read(name).decode())


def test_wheel_holds_every_module_and_data_file(wheel_names):
    folders = {
        "render": "focalstack/render",
        "assets": "focalstack/assets",
        "dataset": "focalstack/dataset",
        "train": "focalstack/train",
        "weights": "focalstack/weights",
    }
    for folder, package in folders.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(ROOT / folder).as_posix()
                if (
                    relative == "make_bundled.py"
                    or path.suffix in {".py", ".toml", ".pt"}
                    or "data" in path.parts
                    or folder == "weights"
                ):
                    assert f"{package}/{relative}" in wheel_names, relative


def test_nothing_lands_at_the_top_of_site_packages(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    assert tops <= {"focalstack", *(t for t in tops if t.endswith(".dist-info"))}


def test_metadata_admits_python_3_10_to_3_13_and_numpy_2_outside_the_render_extra(metadata):
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    python = SpecifierSet(metadata["Requires-Python"])
    assert all(v in python for v in ("3.10", "3.11", "3.12", "3.13")) and "3.14" not in python
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    base = [r for r in requirements if r.marker is None or "extra" not in str(r.marker)]
    render = [r for r in requirements if r.marker is not None and 'extra == "render"' in str(r.marker)]
    numpy = [r for r in base if r.name == "numpy"]
    assert numpy and all("2.1" in r.specifier for r in numpy)  # numpy 2 allowed for everyone
    assert not any(r.name == "bpy" for r in base)
    assert any(r.name == "bpy" for r in render)
    assert any(r.name == "numpy" and "2.1" not in r.specifier for r in render)  # numpy < 2 with Blender


def _python312() -> str | None:
    """A Python 3.12 interpreter on this machine (a pyenv shim may exist without the version selected)."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    for candidate in [shutil.which("python3.12"), *sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"))]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_install_on_python_3_12_with_numpy_2_reads_validates_and_previews(wheel_path, tmp_path):
    python = _python312()
    if python is None:
        pytest.skip("no Python 3.12 interpreter on this machine")
    env = tmp_path / "py312"
    subprocess.run([python, "-m", "venv", str(env)], check=True, timeout=120)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, str(wheel_path), "numpy>=2"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    data = fx.write_file(tmp_path / "small.h5", 2)
    bin_ = env / "bin"
    version = subprocess.run(
        [str(bin_ / "python"), "-c", "import numpy, sys; print(sys.version_info[:2], numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith("(3, 12) 2."), version
    validate = subprocess.run([str(bin_ / "focalstack-data"), "validate", str(data), "--full"], capture_output=True, text=True)
    assert validate.returncode == 0 and "valid (2 complete scene(s)" in validate.stdout, validate.stdout + validate.stderr
    inspect = subprocess.run([str(bin_ / "focalstack-data"), "inspect", str(data)], capture_output=True, text=True)
    assert inspect.returncode == 0 and "valid" in inspect.stdout.splitlines()[-1]
    png = tmp_path / "scene0.png"
    subprocess.run([str(bin_ / "focalstack-data"), "preview", str(data), "-o", str(png)], check=True, capture_output=True)
    assert png.stat().st_size > 1000
    # rendering is the one thing that needs Python 3.11: one line, and no output file left behind
    out = tmp_path / "render.h5"
    render = subprocess.run([str(bin_ / "focalstack-render"), "--scenes", "1", "--out", str(out)], capture_output=True, text=True)
    assert render.returncode == 1 and not out.exists()
    assert render.stderr.count("\n") == 1 and "Python 3.11" in render.stderr, render.stderr
