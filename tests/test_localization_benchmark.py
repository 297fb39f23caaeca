"""The fixed ActivityNet 1.3 common single-instance test episodes of Yang et al. 2020 run end to end:
a CDC-CA run whose class split takes its test classes from the benchmark is scored from the CLI on
the imported episodes, with and without the episodes that take a support from the query video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.errors import FsvInputError

from fsv.heads.data.benchmark import benchmark_path
from fsv.pipeline.manifests import Manifest, Segment, VideoRecord
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore

FSV = [sys.executable, "-m", "fsv"]
EPISODES = 12
DIM = 16


def _secs(frames: list[int]) -> tuple[float, float]:
    return (frames[0] - 1) / 3, frames[1] / 3


def _write(tmp: Path) -> tuple[Path, Path, list[dict]]:
    raw = json.loads(benchmark_path("yang2020").read_text())["episodes"][:EPISODES]
    segments: dict[str, list[Segment]] = {}
    ends: dict[str, float] = {}
    for k, ep in enumerate(raw):
        label = f"bench_{k % 3}"
        q = ep["query"]["video"].split("/")[1]
        for g in ep["query"]["gt_frames"]:
            segments.setdefault(q, []).append(Segment(*_secs(g), label))
        ends[q] = max(ends.get(q, 0), _secs(ep["query"]["window_frames"])[1])
        for s in ep["supports"]:
            v = s["video"].split("/")[1]
            seg = Segment(*_secs(s["segment_frames"]), label)
            if seg not in segments.setdefault(v, []):
                segments[v].append(seg)
            ends[v] = max(ends.get(v, 0), seg.end)
    for c in range(10):  # training classes
        for j in range(3):
            v = f"train_{c}_{j}"
            segments[v] = [Segment(10.0 + 5 * j, 30.0 + 5 * j, f"other_{c}")]
            ends[v] = 60.0
    records = [
        VideoRecord(
            v,
            f"{v}.mp4",
            "|".join(sorted({s.label for s in segs})),
            "validation" if not v.startswith("train_") else "training",
            duration=ends[v] + 5.0,
            segments=tuple(sorted(segs, key=lambda s: s.start)),
        )
        for v, segs in segments.items()
    ]
    manifest = Manifest(
        "activitynet13", records, sorted({s.label for segs in segments.values() for s in segs}), "localization"
    )
    manifest.write(tmp / "m.jsonl")
    spec = FeatureSpec(
        name="test-snippets",
        backbone="synthetic",
        weights={"name": "none"},
        sampling={"kind": "snippets"},
        fields={"features": FieldSpec((DIM,), "float16")},
    )
    store = FeatureStore.create(tmp / "s.zarr", spec, manifest_sha256=manifest.sha256, dataset="activitynet13")
    rng = np.random.default_rng(0)
    with store.writer(manifest_sha256=manifest.sha256) as w:
        for r in records:
            t = int(np.ceil(r.duration))
            x = rng.normal(0, 1, (t, DIM)).astype(np.float32)
            for s in r.segments:
                x[int(s.start) : int(np.ceil(s.end))] += 2.0
            w.write(
                r.video_id, x, spans=np.stack([np.arange(t), np.arange(1, t + 1)], 1).astype(float), duration=float(t)
            )
    return tmp / "m.jsonl", tmp / "s.zarr", raw


def run(*args: str) -> str:
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_yang2020_episodes_are_scored_with_and_without_query_supports(tmp_path: Path) -> None:
    manifest, store, raw = _write(tmp_path)
    rundir = tmp_path / "run"
    run(
        "train-head",
        "cdcca",
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--out",
        str(rundir),
        "--shot",
        "1",
        "--device",
        "cpu",
        "--set",
        "class_split=yang2020",
        "--set",
        "train_steps=2",
        "--set",
        "val_every=2",
        "--set",
        "val_episodes=2",
        "--set",
        "num_pseudo_classes=4",
        "--set",
        "head_args.d=32",
        "--set",
        "head_args.proposal_hidden=32",
    )
    config = json.loads((rundir / "config.json").read_text())["config"]
    assert config["class_split"] == "yang2020" and config["frame_fps"] == 3.0
    table = json.loads(run("eval", str(rundir), "--benchmark", "yang2020", "--json", "--device", "cpu"))
    videos = {r.video_id for r in Manifest.read(manifest)}
    usable = [
        ep
        for ep in json.loads(benchmark_path("yang2020").read_text())["episodes"]
        if {ep["query"]["video"].split("/")[1], ep["supports"][0]["video"].split("/")[1]} <= videos
    ]
    leaks = sum(any(k < 1 for k in ep["supports_from_query_video"]) for ep in usable)
    assert len(usable) >= EPISODES and 0 < leaks < len(usable)
    assert table["split"] == "yang2020" and table["episodes"] == len(usable) and table["shots"] == 1
    assert table["without_query_supports"]["episodes"] == len(usable) - leaks
    assert set(table["map"]) == {"0.5"} and set(table["without_query_supports"]["map"]) == {"0.5"}
    out = tmp_path / "preds.json"
    run("predict", str(rundir), "--benchmark", "yang2020", "--out", str(out), "--device", "cpu")
    gt = json.loads((tmp_path / "preds.gt.json").read_text())["database"]
    assert len(gt) == len(usable) and len(json.loads(out.read_text())["results"]) == len(usable)
    first = gt["yang202000000"]["annotations"][0]["segment"]
    assert first == list(_secs(raw[0]["query"]["gt_frames"][0]))
    scored = json.loads(
        run(
            "score",
            "detections",
            "--gt",
            str(tmp_path / "preds.gt.json"),
            "--pred",
            str(out),
            "--tiou",
            "0.5",
            "--json",
        )
    )
    assert abs(scored["map"]["0.5"] - table["map"]["0.5"]) < 1e-3


def test_custom_episode_files_load_and_round_trip(tmp_path: Path) -> None:
    """The README's example file (any custom episodes) loads in seconds with its labels, and
    ``write_benchmark`` writes the same layout back."""
    from fsv.heads.data.benchmark import load_benchmark, write_benchmark

    example = Path(__file__).resolve().parents[1] / "examples" / "common-episodes.json"
    ids = ["video_test_0000004", "video_validation_0000051", "video_validation_0000052", "video_validation_0000053"]
    manifest = Manifest(
        "m", [VideoRecord(v, f"{v}.mp4", "x", "test", duration=40.0) for v in ids], ["x"], "localization"
    )
    episodes, skipped = load_benchmark(str(example), manifest, 2, set(ids))
    assert skipped == 0 and [e.key for e in episodes] == ["common-episodes00000", "common-episodes00001"]
    first = episodes[0]
    assert first.label == "CricketBowling" and first.window == (0.0, 30.0) and first.gt == ((1.0, 3.0), (12.0, 14.4))
    assert first.supports == (("video_validation_0000051", 4.0, 6.4), ("video_validation_0000052", 0.0, 1.8))
    with pytest.raises(FsvInputError, match="shot must be 1..2"):
        load_benchmark(str(example), manifest, 3, set(ids))
    again = tmp_path / "again.json"
    write_benchmark(again, episodes, 25.0, "round trip")
    assert [e.to_json() | {"key": ""} for e in load_benchmark(str(again), manifest, 2, set(ids))[0]] == [
        e.to_json() | {"key": ""} for e in episodes
    ]
