"""Imported fixed test episodes of few-shot common action localization.

``yang2020``: the 1000 ActivityNet 1.3 common single-instance test episodes of Yang et al., ECCV
2020 (the protocol CDC-CA reports on), shipped as ``fsv/pipeline/manifests/shipped/benchmarks/
anet13_common_single_test_yang2020.json``. Frames there are 1-based at 3 fps: frame ``f`` covers
``[(f - 1) / fps, f / fps]`` seconds. Each episode lists 5 supports (the first ``L`` are used in
L-shot); 104 of them take a support from the query video itself, a leak of the source protocol,
so scores are reported with and without those episodes.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from fsv.files import write_text_atomic
from fsv.errors import FsvInputError
from fsv.heads.data.common_episodes import CommonEpisode
from fsv.metrics import temporal_iou
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.manifests.resources import SHIPPED

log = logging.getLogger(__name__)

BENCHMARKS = {"yang2020": "anet13_common_single_test_yang2020.json"}


def benchmark_path(name: str) -> Path:
    """The shipped file of benchmark ``name`` (or ``name`` itself when it is a file)."""
    if Path(name).is_file():
        return Path(name)
    if name not in BENCHMARKS:
        raise FsvInputError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} or give a file")
    return Path(str(resources.files(SHIPPED) / "benchmarks" / BENCHMARKS[name]))


def _video_id(name: str, known: set[str]) -> str | None:
    base = name.split("/")[-1]
    for cand in (base, base[2:] if base.startswith("v_") else f"v_{base}"):
        if cand in known:
            return cand
    return None


def load_benchmark(name: str, manifest: Manifest, shot: int, available: set[str]) -> tuple[list[CommonEpisode], int]:
    """The benchmark's episodes whose videos are in ``manifest`` and have features (``available``),
    as :class:`CommonEpisode` in seconds with the first ``shot`` supports; also how many episodes
    were skipped for missing videos."""
    path = benchmark_path(name)
    try:
        data = json.loads(path.read_text())
        fps = float(data["fps"])
        raw = data["episodes"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise FsvInputError(f"{path}: not a common-localization benchmark file ({e})") from e
    carried = min((len(ep.get("supports", [])) for ep in raw if isinstance(ep, dict)), default=0)
    if not 1 <= shot <= carried:
        raise FsvInputError(
            f"{path}: its episodes carry {carried} supports or more; shot must be 1..{carried}, got {shot}"
        )
    prefix = path.stem if Path(name).is_file() else name
    records = manifest.by_id()
    known = set(records) & available

    def secs(frames: list[int]) -> tuple[float, float]:
        return ((frames[0] - 1) / fps, frames[1] / fps)

    out, skipped = [], 0
    for n, ep in enumerate(raw):
        try:
            q = ep["query"]
            video = _video_id(q["video"], known)
            sups = [(_video_id(s["video"], known), *secs(s["segment_frames"])) for s in ep["supports"][:shot]]
            window = secs(q["window_frames"])
            gt = tuple(secs(g) for g in q["gt_frames"])
            leak = any(k < shot for k in ep.get("supports_from_query_video", []))
        except (KeyError, TypeError, IndexError) as e:
            raise FsvInputError(f"{path}: episode {n} is malformed ({e})") from e
        if video is None or any(s[0] is None for s in sups):
            skipped += 1
            continue
        segs = records[video].segments
        label = str(q.get("label", "unknown"))
        if segs and label == "unknown":
            ious = temporal_iou(np.asarray(gt[0]), np.array([[s.start, s.end] for s in segs]))
            label = segs[int(ious.argmax())].label
        out.append(
            CommonEpisode(f"{prefix}{int(ep.get('episode', n)):05d}", label, video, window, gt, tuple(sups), leak)
        )
    if skipped:
        log.warning(
            "%d of %d %s episodes skipped: their videos are not in the manifest or have no features",
            skipped,
            len(raw),
            name,
        )
    if not out:
        raise FsvInputError(
            f"none of the {len(raw)} {name} episodes has its videos in {manifest.path or manifest.dataset} with features"
        )
    return out, skipped


def write_benchmark(path: Path, episodes: list[CommonEpisode], fps: float, description: str) -> None:
    """``episodes`` as a benchmark file in the layout :func:`load_benchmark` reads (Yang et al. 2020's:
    1-based frames at ``fps``, frame ``f`` covering ``[(f - 1) / fps, f / fps]``; times are rounded
    to frames). Every episode should carry at least as many supports as the runs scored on it use."""

    def frames(start: float, end: float) -> list[int]:
        return [int(round(start * fps)) + 1, max(int(round(start * fps)) + 1, int(round(end * fps)))]

    raw = [
        {
            "episode": n,
            "query": {
                "video": ep.video,
                "label": ep.label,
                "window_frames": frames(*ep.window),
                "gt_frames": [frames(*g) for g in ep.gt],
            },
            "supports": [{"video": v, "segment_frames": frames(s, e)} for v, s, e in ep.supports],
            "supports_from_query_video": [k for k, (v, _, _) in enumerate(ep.supports) if v == ep.video],
        }
        for n, ep in enumerate(episodes)
    ]
    write_text_atomic(path, json.dumps({"description": description, "fps": fps, "episodes": raw}, indent=1) + "\n")


def benchmark_classes(name: str, manifest: Manifest) -> list[str]:
    """The classes of the benchmark's queries (its test classes), by the manifest's annotations."""
    episodes, _ = load_benchmark(name, manifest, 1, {r.video_id for r in manifest})
    return sorted({e.label for e in episodes} - {"unknown"})
