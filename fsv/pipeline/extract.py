"""Stage one's job: decode, sample, run a backbone, write the store — resumable, failures recorded.

This is the frame-grid path (ResNet-50 on TSN-sampled frames, ``8 x 2048 x 7 x 7`` float16 per
video). Videos already committed are skipped; recorded failures are skipped too unless
``retry_failed``; a video that cannot be decoded is recorded as a failure with its reason and the
run goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import create_backbone
from fsv.pipeline.decode.probe import probe_video
from fsv.pipeline.decode.reader import read_frames
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.sampling import tsn_indices
from fsv.pipeline.spec import FeatureSpec, get_spec, step_spans
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.transforms import normalize, resize_short_center_crop
from fsv.pipeline.weights import WeightsRef
from fsv.progress import make_progress

log = logging.getLogger(__name__)

PRESETS = {"resnet50": "resnet50-imagenet-tsn8"}


def feature_spec(backbone: str, weights: WeightsRef) -> FeatureSpec:
    """The backbone's preset spec with the identity of the weights actually used."""
    if backbone not in PRESETS:
        raise FsvInputError(f"unknown backbone {backbone!r}; choose one of {', '.join(PRESETS)}")
    return replace(get_spec(PRESETS[backbone]), weights=weights.to_spec())


@dataclass
class ExtractSummary:
    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def extract(
    manifest: Manifest,
    root: Path,
    store_path: Path,
    *,
    backbone: str,
    weights: WeightsRef,
    device: str = "cpu",
    retry_failed: bool = False,
) -> ExtractSummary:
    """Extract every video of ``manifest`` (paths under ``root``) into the store at ``store_path``."""
    spec = feature_spec(backbone, weights)
    store = FeatureStore.create(store_path, spec, manifest_sha256=manifest.sha256, dataset=manifest.dataset)
    done = set(store.index)
    failed = set(store.failures)
    todo = [r for r in manifest.records if r.video_id not in done and (retry_failed or r.video_id not in failed)]
    summary = ExtractSummary(skipped=len(manifest.records) - len(todo))
    if not todo:
        return summary
    model = create_backbone(backbone, weights).to(device)
    pre = spec.preprocess
    segments = int(spec.sampling["num_segments"])
    t0 = time.perf_counter()
    with make_progress() as progress, store.writer(manifest_sha256=manifest.sha256) as writer, torch.inference_mode():
        task = progress.add_task(f"extract {backbone}", total=len(todo), unit="videos")
        for r in todo:
            path = root / r.path
            try:
                info = probe_video(path)
                idx = tsn_indices(info.num_frames, segments, mode=spec.sampling.get("mode", "center"))
                frames = read_frames(path, idx)
            except FsvInputError as e:
                writer.fail(r.video_id, str(e), path=r.path)
                summary.failed[r.video_id] = str(e)
                log.warning("%s", e)
                progress.advance(task)
                continue
            x = normalize(resize_short_center_crop(frames, pre["resize_short"], pre["crop"]), pre["mean"], pre["std"]).to(device)
            grid = model(x).float().cpu().numpy()
            writer.write(
                r.video_id,
                grid,
                spans=step_spans(spec.sampling, segments, info.duration),
                fps=info.fps,
                num_frames=info.num_frames,
                duration=info.duration,
                meta={"frame_indices": idx.tolist()},
            )
            summary.written += 1
            summary.frames += len(idx)
            progress.advance(task)
    summary.seconds = time.perf_counter() - t0
    return summary
