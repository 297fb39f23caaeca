"""A writer process for the store tests: writes deterministic features for a range of videos.

    python tests/store_worker.py STORE --start 0 --stop 100 [--shard 0/4] [--commit-interval 0]

Features of video ``v{i}`` depend only on ``i`` (see :func:`features`), so any run, interrupted or
not, must produce bit-identical data. Videos already in the store are skipped (resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsv.pipeline.spec import FeatureSpec, FieldSpec  # noqa: E402
from fsv.pipeline.store import FeatureStore, StoreLayout  # noqa: E402

SPEC = FeatureSpec(
    name="test-spec",
    backbone="test",
    weights={"name": "random", "seed": 0},
    sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
    fields={"features": FieldSpec((64,), "float16")},
)
SMALL_LAYOUT = StoreLayout(chunk_bytes=4096, shard_bytes=256 * 1024)


def features(i: int) -> np.ndarray:
    """Video ``v{i}``'s features: ``(3 + i % 5, 64)`` float16, deterministic in ``i``."""
    rng = np.random.default_rng(i)
    return rng.standard_normal((3 + i % 5, 64)).astype(np.float16)


def spans(i: int) -> np.ndarray:
    n = 3 + i % 5
    t = np.arange(n, dtype=np.float64) * 16 / 25
    return np.stack([t, t + 16 / 25], axis=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("store")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--stop", type=int, required=True)
    p.add_argument("--shard")
    p.add_argument("--commit-interval", type=float, default=10.0)
    p.add_argument("--sleep", type=float, default=0.0, help="pause after each video (to be killed mid-run)")
    args = p.parse_args()
    store = FeatureStore.create(args.store, SPEC, layout=SMALL_LAYOUT)
    done = set(store.index)
    with store.writer(shard=args.shard, commit_interval_s=args.commit_interval) as w:
        for i in range(args.start, args.stop):
            if f"v{i}" in done:
                continue
            w.write(f"v{i}", features(i), spans=spans(i), fps=25.0)
            if args.sleep:
                time.sleep(args.sleep)


if __name__ == "__main__":
    main()
