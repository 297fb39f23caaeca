"""``fsv demo``: both stages end to end on a generated few-shot video set, in a few minutes on a CPU.

Writes ``OUT/videos/{train,val,test}/<class>/<class>_<k>.mp4`` (a square moving over a noisy
background and changing colour in a class-specific order; classes of a split differ only in the
order of the same colours), builds and probes the manifest, checks it, extracts ResNet-50 frame grids
into ``OUT/store.zarr`` (weights from the cache when present, else random weights, recorded as such
in the spec), verifies the store, then scores ProtoNet and trains and scores TRX on fixed 3-way
1-shot test episodes (runs in ``OUT/runs/``). The TRX run uses short demo settings (Adam, one
episode per update, :data:`DEMO_EPISODES` episodes, ``D' = 256``), not the paper's preset.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.extract import ExtractSummary, RunOptions, extract
from fsv.pipeline.manifests import (
    Manifest,
    build_manifest,
    check_manifest,
    probe_manifest,
)
from fsv.pipeline.plan import make_recipe
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.store.verify import VerifyReport, verify_store
from fsv.pipeline.backbones import resolve_weights
from fsv.heads.engine.run_folder import DataSource
from fsv.heads.tasks import config_for, train
from fsv.heads.tasks.recognition import EvalResult, evaluate

log = logging.getLogger(__name__)
stages = logging.getLogger("fsv.progress")  # what the demo is doing, shown without -v

# class -> the colours the moving square takes, one after the other (equal shares of the clip). Train,
# val and test classes are disjoint (few-shot); each split holds classes that differ only in the
# order of the same colours, which no time-averaged feature can tell apart.
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (230, 210, 40)}
CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    split: {"_then_".join(seq): seq for seq in seqs}
    for split, seqs in {
        "train": [
            ("red", "green"),
            ("green", "red"),
            ("blue", "yellow"),
            ("yellow", "blue"),
            ("red", "blue"),
            ("blue", "red"),
        ],
        "val": [("green", "yellow"), ("yellow", "green"), ("red", "yellow")],
        "test": [("green", "blue"), ("blue", "green"), ("yellow", "red")],
    }.items()
}


def write_video(
    path: Path,
    colours: tuple[str, ...],
    seed: int,
    *,
    frames: int = 40,
    fps: int = 25,
    size: tuple[int, int] = (160, 120),
) -> None:
    """An H.264 (or MPEG-4 Part 2 when libx264 is absent) clip of a square moving in a random
    direction whose colour runs through ``colours``; the change comes after a random share
    (35-65%) of the clip, so speed and timing vary from video to video."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    background = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    x, y = float(rng.integers(30, w - 30)), float(rng.integers(30, h - 30))
    dx, dy = rng.uniform(-3, 3, 2)
    cuts = np.sort(rng.uniform(0.35, 0.65, len(colours) - 1)) * frames
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except (av.error.FFmpegError, ValueError):
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            x, y = (x + dx) % w, (y + dy) % h
            img = background.copy()
            cx, cy = int(x), int(y)
            img[max(0, cy - 16) : cy + 16, max(0, cx - 16) : cx + 16] = COLOURS[
                colours[int(np.searchsorted(cuts, t, side="right"))]
            ]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(root: Path, per_class: int = 4) -> int:
    """Write the demo set under ``root``; returns the number of videos."""
    n = 0
    for split, classes in CLASSES.items():
        for label, motion in classes.items():
            for k in range(per_class):
                write_video(
                    root / split / label / f"{label}_{k}.mp4", motion, seed=zlib.crc32(f"{split}/{label}/{k}".encode())
                )
                n += 1
    return n


DEMO_EPISODES = 200
DEMO_SETTINGS = {
    "way": 3,
    "shot": 1,
    "query": 2,
    "optimizer": "adam",
    "lr": 1e-3,
    "episodes_per_update": 1,
    "train_episodes": DEMO_EPISODES,
    "val_every": 100,
    "val_episodes": 50,
    "test_episodes": 200,
}
DEMO_HEAD_ARGS = {"trx": {"head_args.out_dim": 256}}


@dataclass
class DemoResult:
    manifest: Manifest
    store: FeatureStore
    extract: ExtractSummary
    verify: VerifyReport
    results: list[EvalResult]
    seconds: float


def run_demo(out: Path, *, per_class: int = 4, weights: str | None = None) -> DemoResult:
    """Generate, build, check, extract, verify, train and evaluate (see module docstring)."""
    need = DEMO_SETTINGS["shot"] + DEMO_SETTINGS["query"]
    if per_class < need:
        raise FsvInputError(
            f"--per-class {per_class}: the demo's {DEMO_SETTINGS['way']}-way {DEMO_SETTINGS['shot']}-shot episodes need at least {need} videos per class"
        )
    t0 = time.perf_counter()
    root = out / "videos"

    def stage(k: int, text: str) -> None:
        stages.info("demo %d/5 (%.0f s): %s", k, time.perf_counter() - t0, text)

    if not root.is_dir():
        stage(1, f"writing {sum(len(c) for c in CLASSES.values()) * per_class} clips to {root}")
        make_videos(root, per_class)
    stage(2, f"building, probing and checking the manifest {out / 'manifest.csv'}")
    manifest = build_manifest("folder", root=root)
    manifest, problems = probe_manifest(manifest, root)
    manifest.write(out / "manifest.csv")
    problems.extend(check_manifest(manifest, root))
    problems.raise_if_any(f"demo manifest {out / 'manifest.csv'}")
    ref = resolve_weights("resnet50", weights, allow_random_fallback=True)
    if ref.path is None:
        log.warning("no ResNet-50 weights in the cache: the demo uses random weights (recorded in the store's spec)")
    stage(
        3,
        f"extracting ResNet-50 layer4 grids of {len(manifest)} videos into {out / 'store.zarr'} (the longest stage on a CPU), then verifying them",
    )
    summary = extract(
        manifest, root, out / "store.zarr", make_recipe("resnet50", weights={"rgb": ref}), RunOptions(workers=1)
    )
    store = FeatureStore.open(out / "store.zarr")
    report = verify_store(store)
    source = DataSource(out / "manifest.csv", (out / "store.zarr",))
    results = []
    for k, head in enumerate(("protonet", "trx")):
        run = out / "runs" / head
        stage(4 + k, f"{'scoring' if head == 'protonet' else 'training and scoring'} {head} in {run}")
        train(config_for(head, {**DEMO_SETTINGS, **DEMO_HEAD_ARGS.get(head, {})}), source, run)
        results.append(evaluate(run))
    stages.info("demo done in %.0f s", time.perf_counter() - t0)
    return DemoResult(manifest, store, summary, report, results, time.perf_counter() - t0)
