"""Training step and inference time of the localization heads at the papers' sizes.

* ``vqknet``: THUMOS14 sizes — I3D RGB‖flow features (D = 2048), 20 classes; a train step is one
  batch of 10 videos x 500 sampled segments (forward, Eq. 14 loss, backward, Adam step); inference
  is one test video of ``--video-steps`` steps (default 750, about 8 minutes of I3D snippets)
  through the model and ``detect`` (thresholds, outer-inner contrast, soft-NMS).
* ``cdcca``: C3D fc6 features (D = 4096), 5-shot; a train step is one episode with a single-instance
  query of 120 steps (about 77 s of C3D snippets); inference is one multi-instance query of
  ``--video-steps`` steps with the paper's sliding windows (512 and 768 frames at 25 fps = 32 and 48
  C3D steps, 75% overlap).

Batches come from a random in-RAM bank through the trainers' own loaders; the loader's time per
batch or episode is the baseline every figure is divided by (same run, so ratios survive noise).

    .venv/bin/python bench/localization.py [--device cuda] [--reps 3] [--heads vqknet cdcca]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from heads import timed  # bench/heads.py, beside this script

from fsv.heads.models import create_head
from fsv.heads.data import common_episodes as cm
from fsv.heads.data.videos import VideoBank
from fsv.heads.data.video_batches import WtalBatches
from fsv.pipeline.manifests import VideoRecord


def random_bank(videos: int, steps: int, dim: int, seed: int = 0) -> VideoBank:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((videos * steps, dim), dtype=np.float32).astype(np.float16)
    spans = np.tile(np.stack([np.arange(steps), np.arange(1, steps + 1)], 1) * 0.64, (videos, 1))
    records = [VideoRecord(f"v{i}", f"v{i}", f"c{i % 20}", "train") for i in range(videos)]
    return VideoBank(data, spans, np.arange(videos) * steps, np.full(videos, steps), records)


def bench_vqknet(device: torch.device, reps: int, video_steps: int) -> tuple[float, float, float, int]:
    bank = random_bank(40, 600, 2048)
    labels = np.zeros((40, 20), np.float32)
    labels[np.arange(40), np.arange(40) % 20] = 1
    batches = WtalBatches(bank, labels, 10, 3, 500, 0)
    torch.manual_seed(0)
    head = create_head("vqknet", feature_dim=2048, num_classes=20).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=5e-5)
    counter = iter(range(10**9))

    def load() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batches.batch(next(counter))
        return x.to(device), y.to(device)

    def train_step() -> None:
        x, y = load()
        head.train()
        loss = head.loss(head(x), y)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    video = torch.randn(1, video_steps, 2048, device=device)

    def infer() -> None:
        head.eval()
        with torch.inference_mode():
            head.detect(head(video))

    return (
        timed(load, max(reps, 5), device),
        timed(train_step, reps, device),
        timed(infer, reps, device),
        sum(p.numel() for p in head.parameters()),
    )


def bench_cdcca(device: torch.device, reps: int, video_steps: int) -> tuple[float, float, float, int]:
    bank = random_bank(30, 200, 4096)
    torch.manual_seed(0)
    head = create_head("cdcca", feature_dim=4096, num_pseudo_classes=160).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)

    def episode() -> cm.CommonEpisodeTensors:
        q = int(rng.integers(30))
        start = float(rng.uniform(10, 40))
        sups = tuple((f"v{(q + k + 1) % 30}", 20.0, 20.0 + float(rng.uniform(5, 40))) for k in range(5))
        ep = cm.CommonEpisode("b", "c", f"v{q}", (0.0, 120 * 0.64), ((start, start + 20.0),), sups)
        pseudo = {(v, s, e): int(rng.integers(160)) for v, s, e in sups}
        return cm.episode_tensors(bank, ep, head.num_snippets, pseudo=pseudo, num_pseudo=160)

    def train_step() -> None:
        t = episode()
        head.train()
        gt = t.gt.to(device)
        loss = head.loss(head(t.query.to(device), t.supports.to(device), t.pseudo.to(device), gt), gt)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    query = torch.randn(video_steps, 4096, device=device)
    supports = torch.randn(5, head.num_snippets, 4096, device=device)

    def infer() -> None:
        head.eval()
        head.detect(query, supports, windows=[32, 48], overlap=0.75)

    return (
        timed(episode, max(reps, 5), device),
        timed(train_step, reps, device),
        timed(infer, reps, device),
        sum(p.numel() for p in head.parameters()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--heads", nargs="+", default=["vqknet", "cdcca"])
    ap.add_argument("--video-steps", type=int, default=750)
    args = ap.parse_args()
    device = torch.device(args.device)
    runs = {"vqknet": bench_vqknet, "cdcca": bench_cdcca}
    rows = [(name, *runs[name](device, args.reps, args.video_steps)) for name in args.heads]
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, median of {args.reps}; inference on one video of {args.video_steps} steps"
    )
    print(
        f"{'head':7s} {'params':>11s} {'load ms':>8s} {'train step ms':>14s} {'x load':>7s} {'infer/video ms':>15s} {'x load':>7s}"
    )
    for name, base, tr, inf, n in rows:
        print(
            f"{name:7s} {n:11,d} {base * 1e3:8.1f} {tr * 1e3:14.0f} {tr / base:7.0f} {inf * 1e3:15.0f} {inf / base:7.0f}"
        )


if __name__ == "__main__":
    main()
