"""Asset files (meshes, texture images, environment maps) for a scene: the catalogue a [scene] table draws
from, checks of its folders, and a record of which files a scene used."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from focalstack.assets import AssetCatalogue, AssetFile, cached_catalogue
from focalstack.assets.catalogue import KINDS

from ..scene import AssetUse


def asset_catalogue(p: Mapping) -> AssetCatalogue | None:
    """The catalogue a completed [scene] table draws from, or None when it uses no asset file."""
    uses = p["mesh_file_probability"] > 0 or p["envmap_probability"] > 0 or _image_probability(p) > 0
    if not uses and not p["asset_dirs"]:
        return None
    return cached_catalogue(tuple(str(d) for d in p["asset_dirs"]), bool(p["bundled_assets"]))


def asset_fingerprint(p: Mapping) -> dict | None:
    """What a completed [scene] table's scenes draw their files from: per kind drawn, the number of catalogue files
    of its split and one hash of them all (their contents, in the catalogue's order); None when it draws no file.
    Equal fingerprints draw the same files for the same seeds, wherever the folders are."""
    drawn = [kind for kind, probability in zip(KINDS, _probabilities(p)) if probability > 0]
    catalogue = asset_catalogue(p) if drawn else None
    if catalogue is None:
        return None
    files = {kind: catalogue.select(kind, p["split"]) for kind in drawn}
    lines = [f"{a.kind} {a.sha256}" for kind in drawn for a in files[kind]]
    return {"sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(), **{k: len(v) for k, v in files.items()}}


def _probabilities(p: Mapping) -> tuple[float, float, float]:
    """How likely a scene draws a file of each kind (KINDS' order: mesh, texture, envmap), or one of them."""
    return p["mesh_file_probability"], _image_probability(p), p["envmap_probability"]


def _image_probability(p: Mapping) -> float:
    return max(p["image_texture_probability"], p["background_material"].get("image_texture_probability", 0.0))


def check_assets(p: Mapping) -> None:
    """Folders must hold usable files, and every kind drawn must have files in the preset's split."""
    try:
        catalogue = asset_catalogue(p)
    except ValueError as exc:
        raise ValueError(f"asset_dirs: {exc}") from None
    if catalogue is None:
        return
    for key, kind, prob in (
        ("mesh_file_probability", "mesh", p["mesh_file_probability"]),
        ("image_texture_probability", "texture", _image_probability(p)),
        ("envmap_probability", "envmap", p["envmap_probability"]),
    ):
        if prob > 0 and not catalogue.select(kind, p["split"]):
            where = ", ".join(catalogue.folders + (["the bundled files"] if catalogue.bundled else [])) or "no folder"
            raise ValueError(f"{key} = {prob}: no {p['split']}-split {kind} file among the assets ({where})")


def add_asset_dirs(scene: Mapping, dirs) -> dict:
    """A copy of a [scene] table with user asset folders (the CLI's --assets) added, as absolute paths; a
    folder named twice is listed once."""
    table = dict(scene)
    added = [*table.get("asset_dirs", []), *(str(Path(d).expanduser().resolve()) for d in dirs)]
    table["asset_dirs"] = list(dict.fromkeys(added))
    return table


class AssetDraws:
    """Draws catalogue files of one split for one scene and records which were used, by whom."""

    def __init__(self, catalogue: AssetCatalogue | None, split: str):
        self.catalogue, self.split = catalogue, split
        self.used: list[AssetUse] = []

    def pick(self, rng: np.random.Generator, kind: str, used_by: str) -> AssetFile:
        files = self.catalogue.select(kind, self.split) if self.catalogue is not None else []
        if not files:
            raise ValueError(f"no {self.split}-split {kind} file in the asset catalogue")
        asset = files[int(rng.integers(len(files)))]
        self.used.append(AssetUse(asset.kind, asset.path, asset.sha256, asset.split, used_by))
        return asset
