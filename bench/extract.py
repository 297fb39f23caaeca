"""Extraction throughput against the backbone alone, and peak memory on a long video.

Throughput, per backbone (``resnet50`` TSN-8 grids, ``i3d`` RGB 16-frame snippets at 25 fps,
``c3d`` fc6 16-frame snippets at 25 fps, ``clip-vit-b16`` TSN-8 frames, ``videomaev2-s`` 16-frame
windows every 4 native frames, ``tsp-r2plus1d-34`` 16-frame clips at 15 fps by default, each
backbone's default recipe; ``--backbones`` adds the other transformer cards; seeded random
weights, as ``--weights random``):

- the videos: generated clips (320x240, 8 s, alternately 25 fps H.264 and 30 fps MPEG-4, a
  textured square moving over a noisy background) interleaved with the shared real videos
  (``--real``, skipped when absent); each backbone takes videos from that list until it has
  ``--units`` feature steps (frames for ResNet-50, snippets for I3D and C3D);
- model-only: the same videos decoded and resized in memory first (``VideoSource`` in this
  process), then only ``Batcher.add`` + ``Batcher.flush`` timed (crop, normalise, backbone) after
  one untimed warm-up batch;
- end-to-end: ``extract()`` into a fresh store with ``workers`` 1 (decoding in a DataLoader worker
  process, ``prefetch`` 2) and 0 (decoding in this process, for reference), timed over its loop
  (``ExtractSummary.seconds``: worker start, decoding, model, store writes; model construction and
  store creation are the "setup s" column).

With ``--streams rgb,flow`` (I3D) the flow stream runs too, its flow computed by ``--flow`` on
``--device`` (``tvl1-torch``) or the CPU (OpenCV's ``tvl1``, ``dis``): model-only then runs both
networks on flow computed beforehand, and end-to-end includes computing it, so the ratio shows
what flow costs. ``--json FILE`` writes the table's rows.

The three run ``--repeats`` times, interleaved, and the fastest round of each counts (the machine is
shared: single rounds moved the ratio by +-0.3). Each is printed as units/s and the ratio
end-to-end / model-only (target >= 0.85 with one worker: decoding hidden behind the model).

Threads: this process runs the model with ``--threads`` intra-op threads (default: the cores this
process may use, less one for the decoding worker, which runs with one thread); the model-only
baseline uses the same count, so the ratio compares like with like.

Peak memory: extraction of a generated ``--rss-minutes`` long video (320x240, 25 fps, H.264
ultrafast, cached in ``--cache``) in a fresh spawned process per video, one decoding worker. Printed:
peak RSS of the extracting process and of its worker (``getrusage``), and the polled peak of their
summed proportional set size (PSS, which counts pages shared after fork once). Target: under 3 GB
and about the same for every length; and for resolution: a 128-frame 3840x2160 clip through C3D
(every decoded batch is bounded in bytes, not frames) with ``--decoder auto`` (which leaves such
videos to PyAV), decord and PyAV. Full 25 fps I3D over 60 minutes takes hours on a CPU, so the
default samples at ``--rss-fps 1`` (3,600 frames, 225 snippets from 90,000 decoded frames); on a
GPU run ``--rss-fps 25``.

    python bench/extract.py                      # everything (about fifteen minutes on 2 CPU cores)
    python bench/extract.py --quick              # small sizes, a sanity check
    python bench/extract.py --backbones i3d --skip-rss --device cuda
    python bench/extract.py --backbones i3d --streams rgb,flow --flow tvl1-torch --skip-rss --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from rich.console import Console
from rich.table import Table

from fsv.device import resolve_device
from fsv.pipeline.extract import (
    ExtractSummary,
    RunOptions,
    default_batch_size,
    extract,
)
from fsv.pipeline.infer import Batcher, StreamModel
from fsv.pipeline.manifests import Manifest, VideoRecord, build_manifest
from fsv.pipeline.plan import ExtractRecipe, make_recipe
from fsv.pipeline.source import Chunk, Failure, VideoJob, VideoSource
from fsv.pipeline.backbones import backbone_card, resolve_weights

BACKBONES = (
    "resnet50",
    "i3d",
    "c3d",
    "clip-vit-b16",
    "clip-vit-b32",
    "clip-vit-l14",
    "videomaev2-s",
    "videomaev2-b",
    "videomaev2-g",
    "videomae-b",
    "tsp-r2plus1d-34",
)
DEFAULT_BACKBONES = ("resnet50", "i3d", "c3d", "clip-vit-b16", "videomaev2-s", "tsp-r2plus1d-34")
UNITS = {
    "resnet50": 120,
    "i3d": 24,
    "c3d": 32,
    "clip-vit-b16": 48,
    "clip-vit-b32": 96,
    "clip-vit-l14": 16,
    "videomaev2-s": 12,
    "videomaev2-b": 6,
    "videomaev2-g": 4,
    "videomae-b": 6,
    "tsp-r2plus1d-34": 16,
}
QUICK_UNITS = {**{name: max(1, n // 8) for name, n in UNITS.items()}, "resnet50": 32, "i3d": 6, "c3d": 6}
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
SIZE = (320, 240)
TARGET_RATIO = 0.85
TARGET_RSS = 3e9


def write_video(
    path: Path,
    *,
    seconds: float,
    fps: int,
    codec: str,
    seed: int,
    noise: bool = True,
    preset: str | None = None,
    size: tuple[int, int] = SIZE,
) -> None:
    """A ``size`` (default ``SIZE``) clip of a textured square moving over a noisy background (plus fresh per-frame
    noise when ``noise``), written to a temporary name and renamed, so a cached file is complete."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    background = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    square = rng.integers(100, 256, (32, 32, 3), dtype=np.uint8)
    vx, vy = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if preset:
            stream.options = {"preset": preset}
        for t in range(round(seconds * fps)):
            img = background ^ rng.integers(0, 24, (h, w, 3), dtype=np.uint8) if noise else background.copy()
            x, y = (vx * t) % (w - 32), (vy * t) % (h - 32)
            img[y : y + 32, x : x + 32] = square
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)


def video_pool(cache: Path, count: int, seconds: float, real: Path | None) -> tuple[Path, list[str]]:
    """The throughput videos under ``cache/pool`` (``gen/`` generated, ``real/`` links to ``real``'s
    files); returns the root and the relative paths, generated and real interleaved."""
    root = cache / "pool"
    generated = []
    for i in range(count):
        fps, codec = (25, "libx264") if i % 2 == 0 else (30, "mpeg4")
        rel = f"gen/gen_{i:02d}_{seconds:g}s_{fps}fps_{codec}.mp4"
        if not (root / rel).is_file():
            write_video(root / rel, seconds=seconds, fps=fps, codec=codec, seed=zlib.crc32(rel.encode()))
        generated.append(rel)
    shutil.rmtree(root / "real", ignore_errors=True)
    linked = []
    if real is not None and real.is_dir():
        (root / "real").mkdir()
        for src in sorted(real.iterdir()):
            if src.is_file():  # the extension goes into the name too: the folder builder keys videos by path without it
                name = f"{src.stem}_{src.suffix.lstrip('.')}{src.suffix}"
                (root / "real" / name).symlink_to(src)
                linked.append(f"real/{name}")
    order = [p for pair in zip(generated, linked) for p in pair]
    order += generated[len(linked) :] + linked[len(generated) :]
    return root, order


def recipe_for(
    backbone: str,
    sampling: dict[str, Any] | None = None,
    streams: tuple[str, ...] = ("rgb",),
    flow: str = "tvl1",
    precision: str = "fp32",
) -> ExtractRecipe:
    """The backbone's default protocol with seeded random weights (``--weights random``) for each of ``streams``."""
    weights = {s: resolve_weights(backbone_card(backbone).networks[s], "random") for s in streams}
    return make_recipe(
        backbone,
        streams=streams,
        weights=weights,
        sampling=sampling,
        flow={"method": flow} if "flow" in streams else None,
        precision=precision,
    )


def predecode(
    recipe: ExtractRecipe, root: Path, manifest: Manifest, order: list[str], units: int, device: str
) -> tuple[list[Chunk], list[VideoRecord]]:
    """Decoded chunks (with their flow, on ``device``, when the recipe has a flow stream) of the
    videos of ``order`` taken until they hold ``units`` steps (decoded in this process, as
    ``extract`` does with ``workers=0``), and those videos' records. A video that fails to decode is
    left out, as ``extract`` would leave it out."""
    records = {r.path: r for r in manifest.records}
    by_id = manifest.by_id()
    source = VideoSource(
        [VideoJob(records[p].video_id, root / p) for p in order], recipe, flow_device=str(resolve_device(device))
    )
    chunks: list[Chunk] = []
    taken: list[VideoRecord] = []
    for item in source:
        if isinstance(item, Failure):
            print(f"left out: {item.reason}")
            chunks = [c for c in chunks if c.video_id != item.video_id]
            continue
        chunks.append(item)
        if item.last:
            taken.append(by_id[item.video_id])
            if sum(len(c.offsets) for c in chunks) >= units:
                break
    return chunks, taken


def time_model(recipe: ExtractRecipe, options: RunOptions, chunks: list[Chunk]) -> float:
    """Seconds to run ``chunks`` through crop, normalise and the backbone as ``extract`` batches
    them, after one untimed warm-up batch."""
    device = resolve_device(options.device)
    batcher = Batcher(
        {s: StreamModel(recipe, s, device, channels_last=options.channels_last) for s in recipe.streams},
        options.batch_size or default_batch_size(recipe, device),
    )
    for chunk in chunks:
        batcher.add(chunk)
        if batcher.full:
            break
    batcher.flush(final=True)
    t0 = time.perf_counter()
    for chunk in chunks:
        batcher.add(chunk)
        if batcher.full:
            batcher.flush()
    batcher.flush(final=True)  # the zero-padded last batch, as extract runs it
    return time.perf_counter() - t0


def time_extract(
    recipe: ExtractRecipe, manifest: Manifest, root: Path, store: Path, options: RunOptions
) -> tuple[ExtractSummary, float]:
    """``extract`` into a fresh ``store``: its summary and the wall seconds of the whole call."""
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    summary = extract(manifest, root, store, recipe, options)
    wall = time.perf_counter() - t0
    if summary.failed or summary.written != len(manifest.records):
        raise RuntimeError(
            f"extraction into {store} wrote {summary.written}/{len(manifest.records)} videos; failed: {summary.failed}"
        )
    return summary, wall


def throughput(args: argparse.Namespace, console: Console, work: Path) -> list[dict[str, Any]]:
    """The throughput table (see module docstring); its rows as dicts."""
    figures: list[dict[str, Any]] = []
    real = None if args.real == "none" else Path(args.real)
    count, seconds = (6, 4.0) if args.quick else (12, 8.0)
    seconds = args.clip_seconds or seconds
    root, order = video_pool(args.cache, count, seconds, real)
    manifest = build_manifest("folder", root=root)
    n_real = sum(p.startswith("real/") for p in order)
    console.print(
        f"videos: {count} generated ({seconds:g} s, {SIZE[0]}x{SIZE[1]}) + {n_real} real ({real if n_real else 'none'}); "
        f"torch {torch.__version__}, {args.threads} intra-op thread(s) in this process, device {args.device}"
    )
    budget = QUICK_UNITS if args.quick else UNITS
    table = Table(title="End-to-end extraction vs. the backbone alone on pre-decoded frames")
    cuda = args.device.startswith("cuda")
    for col in (
        "backbone",
        "streams",
        "videos",
        "units",
        "batch",
        "model-only units/s",
        "workers",
        "end-to-end units/s",
        "setup s",
        "ratio",
        f">= {TARGET_RATIO}",
        *(["peak GPU GiB"] if cuda else []),
    ):
        table.add_column(col, justify="left" if col in ("backbone", "streams") else "right")
    for backbone in args.backbones:
        streams = tuple(args.streams.split(","))
        recipe = recipe_for(backbone, streams=streams, flow=args.flow, precision=args.precision)
        kind = "frames" if recipe.unit_frames == 1 else "snippets"
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        chunks, taken = predecode(recipe, root, manifest, order, args.units or budget[backbone], args.device)
        steps = sum(len(c.offsets) for c in chunks)
        subset = manifest.with_records(taken)
        base = RunOptions(device=args.device, prefetch=2, progress=False, batch_size=args.batch_size)
        model_s = float("inf")
        e2e: dict[int, tuple[float, float]] = {}  # workers -> (loop seconds, setup seconds) of the fastest round
        for _ in range(args.repeats):
            model_s = min(model_s, time_model(recipe, base, chunks))
            for workers in (1, 0):
                summary, wall = time_extract(
                    recipe, subset, root, work / f"{backbone}-w{workers}.zarr", replace(base, workers=workers)
                )
                if summary.steps != steps:
                    raise RuntimeError(f"{backbone}: extract computed {summary.steps} steps, the baseline {steps}")
                if workers not in e2e or summary.seconds < e2e[workers][0]:
                    e2e[workers] = (summary.seconds, wall - summary.seconds)
        del chunks
        model_ups = steps / model_s
        batch = base.batch_size or default_batch_size(recipe, resolve_device(args.device))
        peak = torch.cuda.max_memory_allocated(args.device) / 2**30 if cuda else None
        label = "+".join(streams) + (f" ({args.flow})" if "flow" in streams else "")
        for workers, (seconds, setup) in e2e.items():
            ratio = steps / seconds / model_ups
            first = workers == 1
            figures.append(
                {
                    "backbone": backbone,
                    "streams": label,
                    "videos": len(taken),
                    "units": steps,
                    "kind": kind,
                    "model_only_per_s": model_ups,
                    "workers": workers,
                    "end_to_end_per_s": steps / seconds,
                    "ratio": ratio,
                    "peak_gpu_gib": peak,
                }
            )
            table.add_row(
                backbone if first else "",
                label if first else "",
                f"{len(taken)}" if first else "",
                f"{steps} {kind}" if first else "",
                f"{batch}" if first else "",
                f"{model_ups:.2f}" if first else "",
                f"{workers}",
                f"{steps / seconds:.2f}",
                f"{setup:.1f}",
                f"{ratio:.2f}",
                ("yes" if ratio >= TARGET_RATIO else "NO") if first else "(reference)",
                *([f"{peak:.1f}" if first else ""] if cuda else []),
            )
    console.print(table)
    return figures


@dataclass
class RssResult:
    """One peak-memory run: its summary, the getrusage peaks (bytes) and the polled PSS peak."""

    summary: ExtractSummary
    main_rss: int
    worker_rss: int
    total_pss: int = 0


def rss_child(
    root: str,
    store: str,
    backbone: str,
    sampling: dict[str, Any],
    device: str,
    threads: int,
    decoder: str,
    conn: Connection,
) -> None:
    """Extract every video under ``root`` (run in a fresh process); sends an :class:`RssResult`."""
    torch.set_num_threads(threads)
    manifest = build_manifest("folder", root=Path(root))
    summary = extract(
        manifest,
        Path(root),
        Path(store),
        recipe_for(backbone, sampling),
        RunOptions(device=device, workers=1, prefetch=2, progress=False, decoder=decoder),
    )
    kib = 1024  # ru_maxrss is in KiB on Linux
    conn.send(
        RssResult(
            summary,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
        )
    )
    conn.close()


def tree_pss(proc: psutil.Process) -> int:
    """Summed PSS (bytes) of ``proc`` and its descendants; 0 for processes already gone."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure_rss(
    root: Path,
    store: Path,
    backbone: str,
    sampling: dict[str, Any],
    device: str,
    threads: int,
    *,
    decoder: str = "auto",
) -> RssResult:
    """Run :func:`rss_child` in a spawned process, polling its tree's PSS every 0.2 s."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    shutil.rmtree(store, ignore_errors=True)
    proc = ctx.Process(
        target=rss_child, args=(str(root), str(store), backbone, sampling, device, threads, decoder, send)
    )
    proc.start()
    send.close()
    watched = psutil.Process(proc.pid)
    peak = 0
    while not recv.poll(0.2):
        if not proc.is_alive():
            raise RuntimeError(f"the extraction process for {root} exited with {proc.exitcode}")
        peak = max(peak, tree_pss(watched))
    result: RssResult = recv.recv()
    proc.join()
    result.total_pss = peak
    return result


def peak_memory(args: argparse.Namespace, console: Console, work: Path) -> None:
    """The peak-memory table (see module docstring)."""
    sampling = {"fps": args.rss_fps}
    console.print(
        f"peak memory: {args.rss_backbone} with sampling {sampling} (the backbone's defaults otherwise), one decoding worker, "
        f"prefetch 2, {args.threads} thread(s), device {args.device}; videos {SIZE[0]}x{SIZE[1]} 25 fps H.264"
    )
    table = Table(title="Peak memory of one extraction process by video length")
    for col in (
        "video",
        "sampled frames",
        "steps",
        "seconds",
        "main peak RSS GB",
        "worker peak RSS GB",
        "peak PSS main+worker GB",
        "< 3 GB",
    ):
        table.add_column(col, justify="left" if col == "video" else "right")
    for minutes in args.rss_minutes:
        root = args.cache / f"long-{minutes:g}min"
        video = root / "long" / f"long_{minutes:g}min.mp4"
        if not video.is_file():
            t0 = time.perf_counter()
            write_video(video, seconds=minutes * 60, fps=25, codec="libx264", seed=0, noise=False, preset="ultrafast")
            console.print(f"wrote {video} in {time.perf_counter() - t0:.0f} s")
        r = measure_rss(
            root, work / f"long-{minutes:g}min.zarr", args.rss_backbone, sampling, args.device, args.threads
        )
        worst = max(r.main_rss + r.worker_rss, r.total_pss)
        table.add_row(
            f"{minutes:g} min",
            f"{r.summary.frames:,}",
            f"{r.summary.steps:,}",
            f"{r.summary.seconds:.0f}",
            f"{r.main_rss / 1e9:.2f}",
            f"{r.worker_rss / 1e9:.2f}",
            f"{r.total_pss / 1e9:.2f}",
            "yes" if worst < TARGET_RSS else "NO",
        )
    # resolution, not length: a 4K clip (24.9 MB a frame) with C3D's 16-frame snippets at every frame
    root = args.cache / "uhd"
    video = root / "uhd" / "uhd_3840x2160.mp4"
    if not video.is_file():
        write_video(
            video, seconds=128 / 25, fps=25, codec="libx264", seed=0, noise=False, preset="ultrafast", size=(3840, 2160)
        )
    for decoder in ("auto", "decord", "pyav"):  # auto sends frames above 1080p past decord (its buffers)
        r = measure_rss(root, work / f"uhd-{decoder}.zarr", "c3d", {}, args.device, args.threads, decoder=decoder)
        worst = max(r.main_rss + r.worker_rss, r.total_pss)
        table.add_row(
            f"4K 128 frames, c3d, {decoder}",
            f"{r.summary.frames:,}",
            f"{r.summary.steps:,}",
            f"{r.summary.seconds:.0f}",
            f"{r.main_rss / 1e9:.2f}",
            f"{r.worker_rss / 1e9:.2f}",
            f"{r.total_pss / 1e9:.2f}",
            "yes" if worst < TARGET_RSS else "NO",
        )
    console.print(table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, a sanity check")
    p.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES), choices=BACKBONES)
    p.add_argument(
        "--units",
        type=int,
        help="feature steps per backbone (default: UNITS, e.g. resnet50 120 frames, i3d 24 snippets)",
    )
    p.add_argument(
        "--batch-size", type=int, help="units per forward pass (default: extract's default for the backbone and device)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds of model-only / workers 1 / workers 0, interleaved; the fastest of each counts",
    )
    p.add_argument("--real", default=str(REAL), help="folder of real videos to add to the generated ones, or 'none'")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="autocast precision of the backbones (as fsv extract --precision)",
    )
    p.add_argument("--streams", default="rgb", help="comma-separated: rgb, or rgb,flow (i3d)")
    p.add_argument("--flow", default="tvl1", help="the flow method with --streams rgb,flow (tvl1, tvl1-torch, dis)")
    p.add_argument("--json", type=Path, help="also write the throughput rows here")
    p.add_argument("--clip-seconds", type=float, help="length of the generated clips (default 8; --quick 4)")
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, len(os.sched_getaffinity(0)) - 1),
        help="intra-op threads of the model process",
    )
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument(
        "--rss-minutes", type=float, nargs="+", help="lengths of the long videos (default 6 60; --quick: 1 6)"
    )
    p.add_argument("--rss-backbone", default="i3d", choices=("i3d", "c3d"))
    p.add_argument(
        "--rss-fps",
        type=float,
        default=1.0,
        help="snippet sampling rate of the peak-memory runs (25: the full protocol)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fsv-bench-extract",
        help="where generated videos are kept for re-runs",
    )
    args = p.parse_args()
    args.rss_minutes = args.rss_minutes or ([1, 6] if args.quick else [6, 60])
    torch.set_num_threads(args.threads)
    console = Console(width=200)
    work = Path(tempfile.mkdtemp(prefix="fsv-bench-extract-"))
    t0 = time.perf_counter()
    try:
        if not args.skip_throughput:
            figures = throughput(args, console, work)
            if args.json:
                args.json.write_text(json.dumps({"throughput": figures}, indent=1))
        if not args.skip_rss:
            peak_memory(args, console, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
