"""Train and eval step time per few-shot head, 5-way 5-shot at the papers' sizes (D = 2048).

A train step is forward + loss + backward + optimiser step on one episode (5 queries per class);
an eval step is a forward in ``inference_mode``. Episodes come from a random in-RAM feature bank
through the same loader the trainer uses; the loader's own time per episode is the baseline every
figure is divided by (measured in the same run, so the ratio survives a noisy machine).

    .venv/bin/python bench/heads.py [--device cuda] [--reps 5] [--heads trx strm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from fsv.heads.data.episodes import EpisodeConfig, EpisodeSampler
from fsv.heads.data.features import FeatureBank, episode_tensors
from fsv.heads.models import HEADS, create_head

SHAPES = {"pooled": (2048,), "patches": (16, 2048), "grid": (2048, 7, 7)}


def timed(fn, reps: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--heads", nargs="+", default=["protonet", "trx", "strm", "ta2n"])
    args = ap.parse_args()
    device = torch.device(args.device)
    classes = {f"c{c}": [f"c{c}_{k}" for k in range(10)] for c in range(5)}
    ids = [v for vs in classes.values() for v in vs]
    sampler = EpisodeSampler(classes, EpisodeConfig("train", 5, 5, 5))
    rows = []
    for name in args.heads:
        view = HEADS[name].preset["view"]
        data = np.random.default_rng(0).random((len(ids), 8, *SHAPES[view]), dtype=np.float32).astype(np.float16)
        bank = FeatureBank(data, {v: i for i, v in enumerate(ids)}, view, 8)
        torch.manual_seed(0)
        head = create_head(name, feature_dim=2048, seq_len=8).to(device)
        params = [p for p in head.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-3) if params else None
        counter = iter(range(10**9))

        def load() -> object:
            return episode_tensors(bank, sampler.episode(next(counter))).to(device)

        def train_step() -> None:
            t = load()
            head.train()
            loss = head.loss(head(t.support, t.support_labels, t.query, t.way), t.query_labels)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def eval_step() -> None:
            t = load()
            head.eval()
            with torch.inference_mode():
                head(t.support, t.support_labels, t.query, t.way)

        base = timed(load, max(args.reps, 5), device)
        train_s = timed(train_step, args.reps, device) if opt is not None else float("nan")
        eval_s = timed(eval_step, args.reps, device)
        n_params = sum(p.numel() for p in params)
        rows.append((name, view, n_params, base, train_s, eval_s))
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, 5-way 5-shot, 5 queries per class, D = 2048, median of {args.reps}"
    )
    print(
        f"{'head':9s} {'view':8s} {'params':>11s} {'load ms':>8s} {'train ms':>9s} {'x load':>7s} {'eval ms':>8s} {'x load':>7s}"
    )
    for name, view, n, base, tr, ev in rows:
        print(
            f"{name:9s} {view:8s} {n:11,d} {base * 1e3:8.1f} {tr * 1e3:9.0f} {tr / base:7.0f} {ev * 1e3:8.0f} {ev / base:7.0f}"
        )


if __name__ == "__main__":
    main()
