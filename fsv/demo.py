"""``fsv demo``: the whole pipeline that exists, end to end, on a generated few-shot video set.

Writes ``OUT/videos/{train,test}/<class>/<class>_<k>.mp4`` (a textured square moving along a
class-specific path over a noisy background), builds and probes the manifest, checks it, extracts
ResNet-50 frame grids into ``OUT/store.zarr`` (weights from the cache when present, else random
weights, recorded as such in the spec) and verifies the store.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.pipeline.extract import ExtractSummary, RunOptions, extract
from fsv.pipeline.manifests import (
    Manifest,
    build_manifest,
    check_manifest,
    probe_manifest,
)
from fsv.pipeline.plan import make_config
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.store.verify import VerifyReport, verify_store
from fsv.pipeline.weights import resolve_weights

log = logging.getLogger(__name__)

# class -> its motion: phases of (dx, dy) per frame, played one after another over the clip. Train,
# val and test classes are disjoint (few-shot); several classes differ only in the order of phases.
CLASSES: dict[str, dict[str, list[tuple[int, int]]]] = {
    "train": {
        "slide_right": [(3, 0)], "slide_left": [(-3, 0)], "rise": [(0, -3)], "fall": [(0, 3)],
        "right_then_left": [(3, 0), (-3, 0)], "rise_then_fall": [(0, -3), (0, 3)],
    },
    "val": {"diagonal_down": [(3, 3)], "left_then_right": [(-3, 0), (3, 0)], "fall_then_rise": [(0, 3), (0, -3)]},
    "test": {"diagonal_up": [(3, -3)], "down_then_right": [(0, 3), (3, 0)], "right_then_down": [(3, 0), (0, 3)]},
}


def write_video(path: Path, motion: list[tuple[int, int]], seed: int, *, frames: int = 40, fps: int = 25, size: tuple[int, int] = (160, 120)) -> None:
    """An H.264 (or MPEG-4 Part 2 when libx264 is absent) clip of a square moving through the
    phases of ``motion`` (equal shares of the clip), after a random delay of up to 8 frames."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    background = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    colour = rng.integers(120, 256, 3, dtype=np.uint8)
    x, y = float(rng.integers(30, w - 30)), float(rng.integers(30, h - 30))
    delay = int(rng.integers(0, 9))
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except (av.error.FFmpegError, ValueError):
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            if t >= delay:
                dx, dy = motion[min(len(motion) - 1, (t - delay) * len(motion) // max(1, frames - delay))]
                x, y = (x + dx) % w, (y + dy) % h
            img = background.copy()
            cx, cy = int(x), int(y)
            img[max(0, cy - 12):cy + 12, max(0, cx - 12):cx + 12] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(root: Path, per_class: int = 3) -> int:
    """Write the demo set under ``root``; returns the number of videos."""
    n = 0
    for split, classes in CLASSES.items():
        for label, motion in classes.items():
            for k in range(per_class):
                write_video(root / split / label / f"{label}_{k}.mp4", motion, seed=zlib.crc32(f"{split}/{label}/{k}".encode()))
                n += 1
    return n


@dataclass
class DemoResult:
    manifest: Manifest
    store: FeatureStore
    extract: ExtractSummary
    verify: VerifyReport
    seconds: float


def run_demo(out: Path, *, per_class: int = 3, weights: str | None = None) -> DemoResult:
    """Generate, build, check, extract and verify (see module docstring)."""
    t0 = time.perf_counter()
    root = out / "videos"
    if not root.is_dir():
        make_videos(root, per_class)
    manifest = build_manifest("folder", root=root)
    manifest, problems = probe_manifest(manifest, root)
    manifest.write(out / "manifest.csv")
    problems.extend(check_manifest(manifest, root))
    problems.raise_if_any(f"demo manifest {out / 'manifest.csv'}")
    ref = resolve_weights("resnet50", weights, allow_random_fallback=True)
    if ref.path is None:
        log.warning("no ResNet-50 weights in the cache: the demo uses random weights (recorded in the store's spec)")
    summary = extract(manifest, root, out / "store.zarr", make_config("resnet50", weights={"rgb": ref}), RunOptions(workers=1))
    store = FeatureStore.open(out / "store.zarr")
    return DemoResult(manifest, store, summary, verify_store(store), time.perf_counter() - t0)
