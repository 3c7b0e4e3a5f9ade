"""The wheel carries every sub-package and data file under focalstack.* (installed, not only editable)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    # Build from a clean copy: setuptools would reuse a stale build/ folder of the working tree.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("render", "assets", "dataset", "train"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("focalstack-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_wheel_holds_every_module_and_data_file(wheel_names):
    folders = {"render": "focalstack/render", "assets": "focalstack/assets", "dataset": "focalstack/dataset",
               "train": "focalstack/train"}
    for folder, package in folders.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                relative = path.relative_to(ROOT / folder).as_posix()
                if relative == "make_bundled.py" or path.suffix in {".py", ".toml"} or "data" in path.parts:
                    assert f"{package}/{relative}" in wheel_names, relative


def test_nothing_lands_at_the_top_of_site_packages(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    assert tops <= {"focalstack", *(t for t in tops if t.endswith(".dist-info"))}
