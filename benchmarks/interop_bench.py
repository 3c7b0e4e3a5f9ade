"""Peak memory of a DDFF-12 import: is it flat in the number of stacks?

Writes synthetic DDFF-12 files in the real layout (``stack_train`` (N, 10, 383, 552, 3) uint8, one
chunk per stack, uncompressed; ``disp_train`` (N, 383, 552) float32 in DDFF's range with some zeros) of
each size in ``--stacks``, imports each with ``focalstack-data import ddff12`` in a fresh child process,
and prints the child's peak resident memory (ru_maxrss), the resident memory of a child that only
imports the package (the floor), the time per stack and the output size. The real file holds 12.6 GB;
memory that does not grow from 50 to 500 stacks will not grow there either.

    python benchmarks/interop_bench.py [--stacks 50,500] [--size 383x552] [--folder /tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from focalstack.dataset.ddff12 import import_ddff12
if sys.argv[1] != "-":
    summary = import_ddff12(sys.argv[1], sys.argv[2], split="train")
    n = len(summary.imported)
else:
    n = 0
print(json.dumps({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "stacks": n,
                  "seconds": time.perf_counter() - t}))
"""


def write_source(path: Path, n: int, height: int, width: int, seed: int = 0) -> None:
    """A DDFF-12 trainval file of ``n`` training stacks (and one validation stack), written stack by stack."""
    rng = np.random.default_rng(seed)
    # a few distinct textures, cycled: realistic sizes, quick to make
    base = [rng.integers(0, 256, (10, height, width, 3), dtype=np.uint8) for _ in range(4)]
    with h5py.File(path, "w") as f:
        for split, count in (("train", n), ("val", 1)):
            stack = f.create_dataset(
                f"stack_{split}", shape=(count, 10, height, width, 3), dtype=np.uint8, chunks=(1, 10, height, width, 3)
            )
            disp = f.create_dataset(f"disp_{split}", shape=(count, height, width), dtype=np.float32, chunks=(1, height, width))
            for i in range(count):
                stack[i] = base[i % len(base)]
                d = rng.uniform(0.020, 0.283, (height, width)).astype(np.float32)
                d[rng.random((height, width)) < 0.05] = 0  # no ground truth
                disp[i] = d


def run_child(source: str, out: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, source, out], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", default="50,500", help="comma-separated stack counts")
    ap.add_argument("--size", default="383x552", help="HxW of the stacks (DDFF-12: 383x552)")
    ap.add_argument("--folder", default=None, help="where the temporary files go (needs ~13 MB per stack)")
    args = ap.parse_args()
    height, width = (int(x) for x in args.size.lower().split("x"))
    counts = [int(x) for x in args.stacks.split(",")]

    floor = run_child("-", "-")
    print(f"child that only imports focalstack.dataset.ddff12: peak RSS {floor['peak_rss_kb'] / 1024:.1f} MB")
    print(f"{'stacks':>7} {'source GB':>10} {'peak RSS MB':>12} {'above floor MB':>15} {'s/stack':>8} {'output MB/stack':>16}")
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        for n in counts:
            src, out = Path(tmp) / f"ddff-{n}.h5", Path(tmp) / f"out-{n}.h5"
            write_source(src, n, height, width)
            t = time.perf_counter()
            r = run_child(str(src), str(out))
            seconds = time.perf_counter() - t
            assert r["stacks"] == n, r
            rss = r["peak_rss_kb"] / 1024
            print(
                f"{n:7d} {src.stat().st_size / 1e9:10.2f} {rss:12.1f} {rss - floor['peak_rss_kb'] / 1024:15.1f} "
                f"{seconds / n:8.3f} {out.stat().st_size / n / 1e6:16.2f}",
                flush=True,
            )
            src.unlink()
            out.unlink()


if __name__ == "__main__":
    main()
