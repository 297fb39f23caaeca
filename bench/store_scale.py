"""A feature store at Something-Something v2's scale: 220,847 videos of pooled 8 × 2048 float16
features, written by 64 parts as 64 cluster jobs would (here by ``--procs`` processes).

It prints the time to open the store and merge its parts' indexes, ``fsv store info`` (the
command, start-up included, and the call), reading one video right after opening (a fresh
process each time, median of ``--reads``), loading a 10,000-video split (random videos, and the
first 10,000 of the manifest, which the 64 parts hold as contiguous runs), and the file count. Targets: open + merge < 2 s, one video < 5 ms after open, < 2,000 files.

    python bench/store_scale.py [--videos 220847] [--parts 64] [--dir /tmp/fsv-scale] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore

SPEC = FeatureSpec(
    name="scale-pooled",
    backbone="synthetic",
    weights={"name": "random", "seed": 0},
    sampling={"kind": "tsn", "num_segments": 8},
    fields={"features": FieldSpec((2048,), "float16")},
)


def block(seed: int = 0, rows: int = 1024) -> np.ndarray:
    """Post-ReLU-like videos of 8 steps (half zeros) reused round-robin, so writing is not
    dominated by the RNG."""
    x = np.random.default_rng(seed).standard_normal((rows, 8, 2048)).astype(np.float16)
    return np.maximum(x, 0)


def write_parts(args: tuple[str, list[int], int, int]) -> int:
    path, parts, videos, n_parts = args
    store = FeatureStore.open(path)
    data = block()
    spans = np.stack([np.arange(8) * 0.5, np.arange(1, 9) * 0.5], axis=1)
    for p in parts:
        with store.writer(shard=f"{p}/{n_parts}", commit_interval_s=30.0) as w:
            for v in range(p, videos, n_parts):
                w.write(f"video{v:06d}", data[v % len(data)], spans=spans, fps=12.0)
    return len(parts)


OPEN = """
import sys, time, json
t0 = time.perf_counter()
from fsv.pipeline.store import FeatureStore
t1 = time.perf_counter()
s = FeatureStore.open(sys.argv[1]); n = len(s.index)
t2 = time.perf_counter()
x = s.get(sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "videos": n, "first_read_s": t3 - t2, "shape": list(x.shape)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=220_847)
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--reads", type=int, default=7)
    ap.add_argument("--split", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/fsv-scale"))
    ap.add_argument("--keep", action="store_true", help="Reuse a store already written there (and keep it).")
    args = ap.parse_args()
    path = args.dir / "ssv2-scale.zarr"
    if not (args.keep and (path / "zarr.json").exists()):
        shutil.rmtree(args.dir, ignore_errors=True)
        FeatureStore.create(path, SPEC, dataset="ssv2-scale")
        t0 = time.perf_counter()
        chunks = [
            (str(path), list(range(i, args.parts, args.procs)), args.videos, args.parts) for i in range(args.procs)
        ]
        with get_context("spawn").Pool(args.procs) as pool:
            pool.map(write_parts, chunks)
        print(
            f"wrote {args.videos:,} videos in {args.parts} parts with {args.procs} processes in {time.perf_counter() - t0:.0f} s"
        )

    rng = np.random.default_rng(1)
    reads = []
    for _ in range(args.reads):
        vid = f"video{int(rng.integers(args.videos)):06d}"
        reads.append(
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", OPEN, str(path), vid], capture_output=True, text=True, check=True
                ).stdout
            )
        )
    open_s = float(np.median([r["open_s"] for r in reads]))
    first_read = float(np.median([r["first_read_s"] for r in reads]))

    store = FeatureStore.open(path)
    t0 = time.perf_counter()
    info = store.info()
    info_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fsv", "store", "info", str(path)], capture_output=True, text=True)
    info_cli_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    loads = {}
    for kind, picks in (
        ("random", rng.choice(args.videos, args.split, replace=False)),
        ("in manifest order", np.arange(args.split)),
    ):
        ids = [f"video{int(v):06d}" for v in picks]
        t0 = time.perf_counter()
        packed = store.load(ids)
        loads[kind] = (time.perf_counter() - t0, packed.data.nbytes)
    files = sum(len(f) for _, _, f in os.walk(path))

    print(f"\n{info['videos']:,} videos, {info['bytes_on_disk'] / 2**30:.2f} GiB on disk, {info['parts']} parts\n")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| open the store and merge the {args.parts} parts' indexes | {open_s:.2f} s | < 2 s |")
    print(
        f"| read one video right after open (fresh process, median of {args.reads}) | {first_read * 1e3:.1f} ms | < 5 ms |"
    )
    print(f"| `fsv store info` (command, with start-up) | {info_cli_s:.2f} s | |")
    print(f"| `FeatureStore.info()` (call, store open) | {info_s:.2f} s | |")
    for kind, (secs, nbytes) in loads.items():
        print(f"| load a {args.split:,}-video split, {kind} | {secs:.2f} s ({nbytes / secs / 1e9:.2f} GB/s) | |")
    print(f"| files | {files:,} | < 2,000 |")
    print(
        f"\n(python start-up and `import fsv` take {float(np.median([r['import_s'] for r in reads])):.2f} s more per process)"
    )
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
