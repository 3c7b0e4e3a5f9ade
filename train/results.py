"""Results: an evaluation's rows as Markdown tables (units in the headers, published rows under the same
columns), as metrics.csv (one value per line) and as metrics.json. Computing them is ``evaluate``'s."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from focalstack.dataset.files import atomic_path, write_text_atomic

from .protocols import FOCALSTACK, PROTOCOLS, Protocol

MISSING = "-"  # what tables print for a metric that cannot be computed


@dataclass
class Evaluation:
    """What ``evaluate`` found. Unpacks as ``rows, paths = evaluate(...)``.

    rows: one dict per protocol, file and setting: protocol, file, setting, scenes, and each of the
    protocol's column keys -> a float, or None where it cannot be computed. notes: one line per thing
    the tables cannot show (a file without some ground truth, scenes left out of a mask's means).
    """

    protocols: list[Protocol]
    rows: list[dict]
    notes: list[str]
    paths: dict[str, Path] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.rows, self.paths))

    def report(self, compare_published: bool = False) -> str:
        """Markdown: per protocol a heading, what it does, its table (and the published rows)."""
        parts = []
        for p in self.protocols:
            rows = [r for r in self.rows if r["protocol"] == p.name]
            published = p.published if compare_published else ()
            parts.append(
                f"### Protocol `{p.name}`: {p.summary}\n\n"
                f"{p.quantity}. Clipped: {p.clipping}. Masked: {p.masks}. Averaged: {p.averaging}.\n\n"
                + markdown_table(rows, p, published)
            )
            if compare_published and not p.published:
                parts[-1] += f"\n(no published rows are recorded for `{p.name}`)\n"
            if published:
                parts[-1] += "\n" + "".join(f"[{i}] {r.method}: {r.source}.\n" for i, r in enumerate(published, 1))
        if self.notes:
            parts.append("Notes:\n\n" + "".join(f"- {n}\n" for n in self.notes))
        return "\n".join(parts)


def _fmt(value) -> str:
    if value is None:
        return MISSING
    return f"{value:.4g}"


def markdown_table(rows: list[dict], protocol: Protocol | None = None, published=()) -> str:
    """One protocol's rows (default: the protocol of ``rows``, else focalstack) as a Markdown table,
    column headers with units; ``published`` rows (``protocols.Published``) follow, marked [1], [2], ..."""
    if protocol is None:
        names = {r.get("protocol", FOCALSTACK.name) for r in rows} or {FOCALSTACK.name}
        if len(names) > 1:
            raise ValueError(f"markdown_table: rows of several protocols ({', '.join(sorted(names))}): one at a time")
        protocol = PROTOCOLS[names.pop()]
    cols = protocol.columns
    keys = ["file", "setting"]
    if any(r.get("stack_size") is not None for r in rows):
        keys += ["stack_size", "order"]
    if any(r.get("region", "all") != "all" for r in rows):
        keys.append("region")
    lines = [
        "| " + " | ".join([*keys, *(c.label for c in cols)]) + " |",
        "|" + "|".join(["---"] * len(keys) + ["---:"] * len(cols)) + "|",
    ]
    for r in rows:
        # a full stack has no subset size or order; a row without a region is of whole images
        labels = (MISSING if r.get(k, "all" if k == "region" else None) is None else str(r.get(k, "all")) for k in keys)
        lines.append("| " + " | ".join([*labels, *(_fmt(r.get(c.key)) for c in cols)]) + " |")
    for i, pub in enumerate(published, 1):
        cells = [f"published: {pub.method}", f"[{i}]", *([""] * (len(keys) - 2)), *(_fmt(pub.values.get(c.key)) for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    """``rows`` under the header ``columns`` (None and missing values as empty cells), replacing
    ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({c: r.get(c) for c in columns} for r in rows)


CSV_COLUMNS = ["protocol", "file", "setting", "stack_size", "order", "region", "scenes", "metric", "unit", "value", "source"]


def row_label(row: dict) -> str:
    """'All', or 'All, 5 slices sorted', 'All, flat': what a row of one file is, in one string."""
    parts = [row["setting"]]
    if row.get("stack_size") is not None:
        parts.append(f"{row['stack_size']} slices {row['order']}")
    if row.get("region", "all") != "all":
        parts.append(row["region"])
    return ", ".join(parts)


def _csv_rows(result: Evaluation, compare_published: bool) -> list[dict]:
    """One line per value: ours (source empty), then with ``compare_published`` the published ones."""
    out = []
    for r in result.rows:
        p = PROTOCOLS[r["protocol"]]
        for c in p.columns:
            out.append(
                {
                    "protocol": p.name,
                    "file": r["file"],
                    "setting": r["setting"],
                    "scenes": r["scenes"],
                    "stack_size": r.get("stack_size"),
                    "order": r.get("order"),
                    "region": r.get("region", "all"),
                    "metric": c.key,
                    "unit": c.unit,
                    "value": r[c.key],
                    "source": "",
                }
            )
    for p in result.protocols if compare_published else ():
        for pub in p.published:
            for c in p.columns:
                if c.key in pub.values:
                    out.append(
                        {
                            "protocol": p.name,
                            "file": f"published: {pub.method}",
                            "metric": c.key,
                            "unit": c.unit,
                            "value": pub.values[c.key],
                            "source": pub.source,
                        }
                    )
    return out


def write_results(
    out: Path, result: Evaluation, checkpoint, ckpt: dict, seed: int, compare_published: bool = False, write: bool = True
) -> dict[str, Path]:
    """metrics.md, metrics.csv and metrics.json in ``out``, each replaced atomically (with ``write``: the
    process that writes, rank 0 under torchrun)."""
    paths = {"markdown": out / "metrics.md", "csv": out / "metrics.csv", "json": out / "metrics.json"}
    if not write:
        return paths
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "checkpoint": str(checkpoint),
        "arch": ckpt["arch"],
        "epoch": ckpt.get("epoch"),
        "seed": seed,
        "protocols": {p.name: p.describe() for p in result.protocols},
    }
    write_text_atomic(
        paths["markdown"],
        f"Evaluation of `{checkpoint}` (architecture {ckpt['arch']}, epoch "
        f"{ckpt.get('epoch')}).\n\n" + result.report(compare_published),
    )
    write_csv(paths["csv"], _csv_rows(result, compare_published), CSV_COLUMNS)
    results: dict = {}
    for r in result.rows:
        cols = [c.key for c in PROTOCOLS[r["protocol"]].columns]
        per_file = results.setdefault(r["protocol"], {}).setdefault(r["file"], {})
        per_file[row_label(r)] = {k: r.get(k) for k in ["scenes", "setting", "stack_size", "order", "region", *cols]}
    doc = {"meta": meta, "results": results, "notes": result.notes}
    if compare_published:
        doc["published"] = {
            p.name: [{"method": r.method, "source": r.source, "values": dict(r.values)} for r in p.published]
            for p in result.protocols
        }
    write_text_atomic(paths["json"], json_text(doc))
    return paths


def json_text(doc, default=None) -> str:
    """``doc`` as indented JSON that every parser reads: a value that is not finite (a model's infinite error)
    is written as null, as a missing one is (JSON has no Infinity or NaN; Python would write them anyway)."""

    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(doc), indent=2, allow_nan=False, default=default) + "\n"
