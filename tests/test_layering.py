"""Who may import whom (docs/design.md, "The house"), checked on every module's import statements.

dataset/ is the ground floor (numpy, h5py, opencv; never bpy, torch, render or train); assets/ does not
import render/ or train/; render/ never imports torch or train/, and only render/blender/ touches
Blender (render/blender/, the one room that talks to it); train/ never imports bpy or render/.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "dataset": "focalstack.dataset",
    "assets": "focalstack.assets",
    "render": "focalstack.render",
    "train": "focalstack.train",
}
BLENDER_MODULES = {"bpy", "mathutils", "bpy_extras"}


def imports_of(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved within ``package``."""
    module = package + "." + ".".join(path.relative_to(ROOT / package.split(".")[1]).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def all_imports(folder: str) -> dict[Path, set[str]]:
    return {p: imports_of(p, PACKAGES[folder]) for p in sorted((ROOT / folder).rglob("*.py"))}


def offenders(folder: str, forbidden) -> list[str]:
    out = []
    for path, names in all_imports(folder).items():
        bad = sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            out.append(f"{path.relative_to(ROOT)}: {', '.join(bad)}")
    return out


def test_the_resolver_sees_relative_and_lazy_imports():
    names = imports_of(ROOT / "render" / "sampling" / "sample.py", "focalstack.render")
    assert "focalstack.render.scene" in names and "focalstack.render.sampling.params" in names
    assert "bpy" in imports_of(ROOT / "render" / "blender" / "renderer.py", "focalstack.render")  # inside functions


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("dataset", ["focalstack.render", "focalstack.train", "focalstack.assets", "torch", *BLENDER_MODULES]),
        ("assets", ["focalstack.render", "focalstack.train", "torch", *BLENDER_MODULES]),
        ("render", ["focalstack.train", "torch"]),
        ("train", ["focalstack.render", *BLENDER_MODULES]),
    ],
)
def test_no_package_imports_what_it_may_not(folder, forbidden):
    assert offenders(folder, forbidden) == []


def test_only_render_blender_touches_blender():
    users = [
        p.relative_to(ROOT).as_posix()
        for folder in PACKAGES
        for p, names in all_imports(folder).items()
        if names & BLENDER_MODULES or any(n.split(".")[0] in BLENDER_MODULES for n in names)
    ]
    assert users and all(u.startswith("render/blender/") for u in users), users


def test_importing_the_packages_loads_neither_blender_nor_torch():
    code = (
        "import sys, focalstack.dataset, focalstack.assets, focalstack.render, focalstack.render.sampling, "
        "focalstack.render.pipeline, focalstack.train; "
        "print(sorted(m for m in ('bpy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_command_lines_import_click():
    """click belongs to the command lines (cli*.py, cliutil.py, __main__.py); a sampler, loss, config or
    reader that imported it would drag it into every library user's import (it did: number checks lived in
    cliutil)."""
    bad = []
    for folder in PACKAGES:
        for path, names in all_imports(folder).items():
            if path.name.startswith("cli") or path.name == "__main__.py":
                continue
            if any(n == "click" or n.startswith("click.") for n in names):
                bad.append(str(path.relative_to(ROOT)))
    assert bad == [], bad


def test_the_render_configuration_does_not_import_blender():
    names = imports_of(ROOT / "render" / "config.py", "focalstack.render")
    assert not any(n.startswith("focalstack.render.blender") or n in BLENDER_MODULES for n in names)


def test_evaluation_lives_in_three_rooms_and_the_training_loop_imports_none_of_them():
    """inference (run a model over batches) <- evaluate (metrics over files and settings) -> results (tables,
    CSV, JSON); the hooks get validation as a callable and import neither inference nor evaluation."""
    imports = all_imports("train")
    of = {p.relative_to(ROOT / "train").as_posix(): names for p, names in imports.items()}
    assert not {"focalstack.train.evaluate", "focalstack.train.inference"} & of["hooks.py"]
    assert not {"focalstack.train.evaluate", "focalstack.train.results"} & of["inference.py"]
    assert not {"focalstack.train.evaluate", "focalstack.train.inference"} & of["results.py"]
    assert {"focalstack.train.inference", "focalstack.train.results"} <= of["evaluate.py"]


def test_the_data_commands_import_their_helpers_not_each_other():
    """focalstack-data's main module registers the import/export and pack commands; they import only cliutil."""
    of = {p.name: names for p, names in all_imports("dataset").items()}
    for name in ("cli_interop.py", "cli_pack.py"):
        assert "focalstack.dataset.cli" not in of[name], name
