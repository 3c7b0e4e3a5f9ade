"""Shared pytest setup: tests marked 'blender' are skipped where bpy is not installed."""

import importlib.util

import pytest

HAVE_BPY = importlib.util.find_spec("bpy") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_BPY:
        return
    skip = pytest.mark.skip(reason="needs bpy (pip install 'focalstack[render]')")
    for item in items:
        if "blender" in item.keywords:
            item.add_marker(skip)
