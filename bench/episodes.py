"""Episode loading speed: 5-way 5-shot episodes per second from an in-RAM feature bank.

Measures :func:`fsv.heads.data.features.episode_tensors` (sampling an episode and gathering its support
and query tensors) for the pooled ``8 x 2048`` and the patch ``8 x 16 x 2048`` views, with and
without temporal jitter (banks holding 16 stored steps), against a baseline measured in the same
run: a plain ``numpy.take`` of 50 random rows (memory bandwidth). Targets: >= 1,000
episodes/s pooled, >= 100/s patches, on a 2-core CPU.

Episodes read the bank in RAM: the store's integrity checks (a CRC-32 per video) run once, when
the bank loads. The last line measures the read that ``FeatureBank.load`` makes from a real store
(``FeatureStore.load``, checked) against the same read unchecked (``check=False``), fastest of
five passes each, taking turns: the target is >= 0.8x.

    .venv/bin/python bench/episodes.py [--videos 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsv.heads.data.episodes import EpisodeConfig, EpisodeSampler
from fsv.heads.data.features import FeatureBank, episode_tensors
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore


def rate(fn, seconds: float) -> float:
    """Calls of ``fn(i)`` per second over about ``seconds``."""
    fn(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000, help="videos in the bank (100 classes)")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    classes = {f"c{c}": [f"c{c}_{k}" for k in range(args.videos // 100)] for c in range(100)}
    ids = [v for vs in classes.values() for v in vs]
    sampler = EpisodeSampler(classes, EpisodeConfig("train", 5, 5, 5, seed=0))
    rows = []
    for view, shape, target in (("pooled", (2048,), 1000), ("patches", (16, 2048), 100)):
        for stored in (8, 16):
            data = (
                np.random.default_rng(0)
                .standard_normal((len(ids), stored, *shape), dtype=np.float32)
                .astype(np.float16)
            )
            bank = FeatureBank(data, {v: i for i, v in enumerate(ids)}, view, 8)
            train = stored > 8

            def load(i: int, bank: FeatureBank = bank, train: bool = train) -> None:
                episode_tensors(bank, sampler.episode(i), train=train, rng=np.random.default_rng(i) if train else None)

            def baseline(i: int, data: np.ndarray = data) -> None:
                np.take(data, np.random.randint(0, len(ids), 50), axis=0)

            eps, base = rate(load, args.seconds), rate(baseline, args.seconds)
            rows.append(
                (f"{view} 8x{'x'.join(map(str, shape))}", stored, "jitter" if train else "-", eps, base, target)
            )
    print(
        f"torch threads {torch.get_num_threads()}, bank of {len(ids)} videos, 5-way 5-shot, 5 queries per class (50 videos per episode)"
    )
    print(
        f"{'view':22s} {'stored':>6s} {'aug':>6s} {'episodes/s':>11s} {'np.take/s':>15s} {'ratio':>6s} {'target':>7s} {'met':>4s}"
    )
    for view, stored, aug, eps, base, target in rows:
        print(
            f"{view:22s} {stored:6d} {aug:>6s} {eps:11.0f} {base:15.0f} {eps / base:6.2f} {target:7d} {'yes' if eps >= target else 'NO':>4s}"
        )
    bank_load(ids)


def bank_load(ids: list[str]) -> None:
    """Print the checked read of a bank's store of ``ids`` (8 x 2048 float16 each) over the
    unchecked read of the same rows."""
    data = np.random.default_rng(1).standard_normal((len(ids), 8, 2048), dtype=np.float32).astype(np.float16)
    spec = FeatureSpec(
        "bench",
        "bench",
        {"name": "random"},
        {"kind": "tsn", "num_segments": 8},
        {"features": FieldSpec((2048,), "float16")},
    )
    with tempfile.TemporaryDirectory(prefix="fsv-bench-") as tmp:
        store = FeatureStore.create(Path(tmp) / "store", spec)
        with store.writer() as w:
            for v, x in zip(ids, data):
                w.write(v, x, spans=np.zeros((8, 2)))
        store = FeatureStore.open(Path(tmp) / "store")
        best = {"checked": float("inf"), "unchecked": float("inf")}
        for _ in range(5):
            for name, load in (
                ("checked", lambda: store.load(ids, with_spans=False)),
                ("unchecked", lambda: store.load(ids, with_spans=False, check=False)),
            ):
                t0 = time.perf_counter()
                load()
                best[name] = min(best[name], time.perf_counter() - t0)
    ratio = best["unchecked"] / best["checked"]
    print(
        f"bank load of {len(ids)} videos ({data.nbytes / 1e6:.0f} MB): checked {best['checked']:.3f} s, unchecked read {best['unchecked']:.3f} s, "
        f"x unchecked {ratio:.2f} (target >= 0.8: {'yes' if ratio >= 0.8 else 'NO'})"
    )


if __name__ == "__main__":
    main()
