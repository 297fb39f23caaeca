"""Balanced extraction shards: the largest shard's planned frames divided by the mean shard's.

For the shipped THUMOS14 manifest (its durations are known; 25 fps assumed where the annotation
gives none) and for a long-tailed synthetic manifest of 20,000 videos (log-normal durations: median
2 min, a tail past an hour), at N = 4, 16, 64 shards, it prints the ratio for every ``N``-th video
(``--shard-by stride``, what fsv did before) and for cost-balanced shards (``--shard-by cost``),
beside the bound no assignment of whole videos can beat (the longest video over the mean shard).

    python bench/shards.py
"""

from __future__ import annotations

import time

import numpy as np

from fsv.pipeline.balance import imbalance, plan_shards, record_costs
from fsv.pipeline.manifests import Manifest, VideoRecord, load_manifest


def synthetic(n: int = 20_000, seed: int = 0) -> Manifest:
    """``n`` videos with log-normal durations (median 120 s, sigma 1.2) at 25 or 30 fps."""
    rng = np.random.default_rng(seed)
    durations = np.exp(rng.normal(np.log(120.0), 1.2, n))
    fps = rng.choice([25.0, 29.97, 30.0], n)
    records = [
        VideoRecord(f"v{i:05d}", f"v{i:05d}.mp4", "a", "train", fps=float(f), duration=float(d))
        for i, (d, f) in enumerate(zip(durations, fps))
    ]
    return Manifest("longtail", records, ["a"], "classification")


def main() -> None:
    manifests = {
        "thumos14 (shipped, 412 videos)": load_manifest("thumos14"),
        "long-tailed synthetic (20,000 videos)": synthetic(),
    }
    print("| manifest | N | every N-th (max/mean) | balanced (max/mean) | bound: longest / mean | plan time |")
    print("|---|---|---|---|---|---|")
    for name, manifest in manifests.items():
        costs = record_costs(list(manifest.records))
        for n in (4, 16, 64):
            stride = imbalance(costs, plan_shards(costs, n, "stride"))
            t0 = time.perf_counter()
            plan = plan_shards(costs, n, "cost")
            ms = (time.perf_counter() - t0) * 1e3
            bound = max(1.0, float(costs.max() / (costs.sum() / n)))
            print(f"| {name} | {n} | {stride:.3f} | **{imbalance(costs, plan):.3f}** | {bound:.3f} | {ms:.0f} ms |")


if __name__ == "__main__":
    main()
