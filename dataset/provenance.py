"""Which ground truth a file holds, and where each array came from (schema v2's ``ground_truth`` attribute).

The root attribute ``ground_truth`` is a JSON object with one entry per ground-truth dataset of the schema
(``schema.GROUND_TRUTH_NAMES``: aif, depth, defocus, edges, the camera's f_number, focal_length_mm and
sensor_width_mm, disparity, and from schema v3 normals and objects; a file of v2 declares none of the last
two, and readers take them as absent)::

    {"aif":     {"source": "rendered"},
     "defocus": {"source": "derived", "from": ["depth", "focus_distance", "f_number", ...],
                 "method": "cycles", "stored": false},
     "edges":   {"source": "derived", "from": ["aif"], "method": "canny"},
     "depth":   {"source": "imported", "method": "FoD500 {i:06d}Dpt.exr, channel R", "no_data": 0.0},
     "disparity": {"source": "absent"}, ...}

``source`` is one of

- ``rendered``: made by focalstack's renderer;
- ``imported``: copied from another data set (``method`` says from what);
- ``derived``: computed from the datasets listed in ``from`` by ``method`` (an ``optics`` defocus model,
  ``canny``, or ``ddff12-calibration`` for depth from disparity);
- ``absent``: the file has no such data; readers return None and skip it.

``stored`` (default true) is false for a derived array that readers recompute bit for bit instead of
reading it: only defocus maps, ``optics.defocus_maps`` of the stored float32 depth and camera by the
file's ``defocus_model`` (``groundtruth.stored_defocus_maps``). ``no_data`` names the value that marks
pixels without ground truth (depth and disparity 0 in DDFF-12 where the light field gave no disparity).

A schema-v1 file has no such attribute: it holds everything, as ``v1_declaration`` says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from . import schema
from .optics import DEFOCUS_MODELS
from .schema import DatasetError

SOURCES = ("rendered", "imported", "derived", "absent")
# What a derived array that readers recompute is computed from (only defocus can be: it is exact).
RECOMPUTABLE = {"defocus": ("depth", "focus_distance", *schema.CAMERA_NAMES)}


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth dataset's entry: where it came from and whether the file stores it."""

    source: str  # rendered | imported | derived | absent
    stored: bool = True  # False: absent, or derived and recomputed by readers
    derived_from: tuple[str, ...] = ()  # datasets it is computed from ('derived' only)
    method: str = ""  # how it was derived (an optics model, 'canny', ...) or where it was imported from
    no_data: float | None = None  # pixel value meaning 'no ground truth here'

    @property
    def present(self) -> bool:
        """True when readers give values for it (stored or recomputed)."""
        return self.source != "absent"

    @property
    def recomputed(self) -> bool:
        """True when readers compute it instead of reading it."""
        return self.source == "derived" and not self.stored

    def describe(self) -> str:
        """One line for people: 'rendered', 'derived from depth by cycles (recomputed, not stored)', ..."""
        if self.source == "absent":
            return "absent"
        text = self.source
        if self.derived_from:
            text += f" from {', '.join(self.derived_from[:1])}"
        if self.method:
            text += f" by {self.method}" if self.source == "derived" else f" ({self.method})"
        if self.recomputed:
            text += ", recomputed by readers (not stored)"
        if self.no_data is not None:
            text += f"; {self.no_data:g} = no ground truth"
        return text

    def to_dict(self) -> dict:
        out: dict = {"source": self.source}
        if self.derived_from:
            out["from"] = list(self.derived_from)
        if self.method:
            out["method"] = self.method
        if self.source != "absent" and not self.stored:
            out["stored"] = False
        if self.no_data is not None:
            out["no_data"] = self.no_data
        return out

    @classmethod
    def from_dict(cls, name: str, d) -> "GroundTruth":
        if not isinstance(d, Mapping):
            raise DatasetError(f"ground_truth[{name!r}]: expected a JSON object, got {d!r}")
        unknown = sorted(set(d) - {"source", "from", "method", "stored", "no_data"})
        if unknown:
            raise DatasetError(f"ground_truth[{name!r}]: unknown key(s) {', '.join(unknown)}")
        source = d.get("source")
        if source not in SOURCES:
            raise DatasetError(f"ground_truth[{name!r}]: source {source!r}, expected one of {', '.join(SOURCES)}")
        stored = d.get("stored", source != "absent")
        derived_from = d.get("from", [])
        no_data = d.get("no_data")
        if not isinstance(stored, bool) or (source == "absent" and stored):
            raise DatasetError(f"ground_truth[{name!r}]: 'stored' is {stored!r}, expected true or false (false for absent data)")
        if not (isinstance(derived_from, list) and all(isinstance(x, str) for x in derived_from)):
            raise DatasetError(f"ground_truth[{name!r}]: 'from' is {derived_from!r}, expected a list of names")
        if no_data is not None and (isinstance(no_data, bool) or not isinstance(no_data, (int, float))):
            raise DatasetError(f"ground_truth[{name!r}]: 'no_data' is {no_data!r}, expected a number")
        gt = cls(source, stored, tuple(derived_from), str(d.get("method", "")), None if no_data is None else float(no_data))
        gt.check(name)
        return gt

    def check(self, name: str) -> None:
        """DatasetError unless this entry is one readers can honour for dataset ``name``."""
        if self.source not in SOURCES:
            raise DatasetError(f"ground_truth[{name!r}]: source {self.source!r}, expected one of {', '.join(SOURCES)}")
        if self.source == "absent" and self.stored:
            raise DatasetError(f"ground_truth[{name!r}]: absent data cannot be stored")
        if self.source != "absent" and not self.stored:
            if self.source != "derived" or name not in RECOMPUTABLE:
                raise DatasetError(
                    f"ground_truth[{name!r}]: not stored, but readers can only recompute "
                    f"{', '.join(RECOMPUTABLE)} (derived); store it or declare it absent"
                )
            if self.method not in DEFOCUS_MODELS:
                raise DatasetError(
                    f"ground_truth[{name!r}]: recomputed by method {self.method!r}, expected one of {', '.join(DEFOCUS_MODELS)}"
                )


ABSENT = GroundTruth("absent", stored=False)
Declaration = dict  # dataset name -> GroundTruth, one entry per schema.GROUND_TRUTH_NAMES


def rendered_declaration(defocus_model: str, *, store_defocus: bool = True, requested: tuple[str, ...] = ()) -> Declaration:
    """What a rendered file holds: everything but disparity and the ground truth rendered only on request
    (``schema.ON_REQUEST_GROUND_TRUTH``) that is not in ``requested``; defocus maps derived by
    ``defocus_model``, stored or (``store_defocus=False``) recomputed by readers."""
    unknown = sorted(set(requested) - set(schema.ON_REQUEST_GROUND_TRUTH))
    if unknown:
        raise DatasetError(
            f"ground truth {', '.join(unknown)}: not one the renderer makes on request "
            f"(expected some of {', '.join(schema.ON_REQUEST_GROUND_TRUTH)})"
        )
    return {
        "aif": GroundTruth("rendered"),
        "depth": GroundTruth("rendered"),
        "defocus": GroundTruth("derived", store_defocus, RECOMPUTABLE["defocus"], defocus_model),
        "edges": GroundTruth("derived", True, ("aif",), "canny"),
        **{name: GroundTruth("rendered") for name in schema.CAMERA_NAMES},
        "disparity": ABSENT,
        **{name: GroundTruth("rendered") if name in requested else ABSENT for name in schema.ON_REQUEST_GROUND_TRUTH},
    }


def v1_declaration(defocus_model) -> Declaration:
    """A schema-v1 file stores every array of its table; its defocus maps follow its ``defocus_model``."""
    model = defocus_model if isinstance(defocus_model, str) else ""
    return rendered_declaration(model, store_defocus=True)


def complete_declaration(declared: Mapping[str, GroundTruth], version: int = schema.SCHEMA_VERSION) -> Declaration:
    """``declared`` checked and in schema order. Every ground-truth name of schema ``version`` must be there
    (DatasetError), but for those introduced later (``ArraySpec.since``) and those made only on request
    (``schema.ON_REQUEST_GROUND_TRUTH``): they are absent when not declared, so a writer (an importer) names
    only what it has of them."""
    unnamed_is_absent = set(schema.ON_REQUEST_GROUND_TRUTH) | (set(schema.GROUND_TRUTH_NAMES) - set(schema.declared_in(version)))
    declared = {**{name: ABSENT for name in schema.GROUND_TRUTH_NAMES if name in unnamed_is_absent}, **declared}
    missing = [name for name in schema.GROUND_TRUTH_NAMES if name not in declared]
    unknown = sorted(set(declared) - set(schema.GROUND_TRUTH_NAMES))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise DatasetError(
            f"ground_truth: {'; '.join(parts)} (expected one entry per ground-truth dataset: "
            f"{', '.join(schema.GROUND_TRUTH_NAMES)})"
        )
    out = {}
    for name in schema.GROUND_TRUTH_NAMES:
        gt = declared[name]
        if not isinstance(gt, GroundTruth):
            raise DatasetError(f"ground_truth[{name!r}]: expected a GroundTruth, got {gt!r}")
        gt.check(name)
        out[name] = gt
    if out["defocus"].recomputed:
        lacking = [n for n in RECOMPUTABLE["defocus"] if n in out and not out[n].present]
        if lacking:
            raise DatasetError(f"ground_truth['defocus']: recomputed from {', '.join(lacking)}, which the file lacks")
    return out


def to_json(declared: Mapping[str, GroundTruth]) -> str:
    return json.dumps({name: gt.to_dict() for name, gt in complete_declaration(declared).items()})


def from_json(text, *, known_only: bool = True, version: int = schema.SCHEMA_VERSION) -> Declaration:
    """Parse the ``ground_truth`` attribute of a file of schema ``version`` (DatasetError naming what is
    wrong). Entries for datasets this code does not know (a later schema) are dropped; missing entries of
    that version are an error, and ground truth introduced after it is absent."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        raw = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"attribute 'ground_truth' is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"attribute 'ground_truth' is JSON {type(raw).__name__}, expected an object")
    known = {k: v for k, v in raw.items() if k in schema.GROUND_TRUTH_NAMES} if known_only else raw
    return complete_declaration({name: GroundTruth.from_dict(name, d) for name, d in known.items()}, version)


def stored_names(declared: Mapping[str, GroundTruth]) -> tuple[str, ...]:
    """The ground-truth datasets the file itself holds."""
    return tuple(name for name, gt in declared.items() if gt.stored)


def generator_version() -> str:
    """focalstack's version, for a new file's ``generator_version`` attribute."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("focalstack")
    except PackageNotFoundError:
        return "unknown"
