"""fsv.api: its names stay, a built-in head scored through it gets exactly `fsv eval`'s numbers,
its training episodes are the trainer's, and the own-loop example runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fsv.api
from fsv.api import Episodes, evaluate_logits, load_head, localization_videos, score_detections, split_features
from fsv.detections import load_results
from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic
from fsv.heads.data.synthetic_loc import LocSyntheticConfig, write_synthetic_localization
from fsv.heads.engine.run_folder import DataSource
from fsv.heads.tasks import config_for, train
from fsv.heads.tasks.recognition import RecognitionObjective
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"way": 3, "shot": 1, "query": 2}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api")
    write_synthetic(out, SyntheticConfig(dim=32, videos_per_class=10))
    return out


@pytest.fixture(autouse=True)
def episodes_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSV_EPISODES", str(tmp_path / "episodes"))


def test_the_public_names_stay() -> None:
    assert sorted(fsv.api.__all__) == [
        "EpisodeTensors",
        "Episodes",
        "EvalResult",
        "Video",
        "evaluate_logits",
        "load_head",
        "localization_videos",
        "score_detections",
        "split_features",
    ]
    assert all(hasattr(fsv.api, name) for name in fsv.api.__all__)


def test_a_built_in_head_scores_through_the_api_as_fsv_eval_reports(synthetic: Path, tmp_path: Path) -> None:
    settings = {
        **SIZES,
        "train_episodes": 20,
        "val_every": 10,
        "val_episodes": 10,
        "test_episodes": 60,
        "head_args": {"projection_dim": 16},
    }
    run = tmp_path / "run"
    source = DataSource(synthetic / "manifest.jsonl", (synthetic / "store.zarr",))
    train(config_for("protonet", settings), source, run, device="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "fsv", "eval", str(run), "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout)
    mine = evaluate_logits(
        load_head(run, "cpu"),
        run / "manifest.jsonl",
        [synthetic / "store.zarr"],
        episodes=60,
        name="protonet",
        device="cpu",
        **SIZES,
    )
    assert mine.to_dict() == reported
    # a plain callable scores the same (the head's logits, not the head)
    head = load_head(run, "cpu")
    plain = evaluate_logits(
        lambda s, sl, q, way: head(s, sl, q, way).logits,
        run / "manifest.jsonl",
        [synthetic / "store.zarr"],
        episodes=60,
        name="protonet",
        device="cpu",
        **SIZES,
    )
    assert plain == mine


def test_training_episodes_are_the_trainers_and_fixed_ones_are_evals(synthetic: Path) -> None:
    manifest, store = Manifest.read(synthetic / "manifest.jsonl"), FeatureStore.open(synthetic / "store.zarr")
    cfg = config_for("protonet", {**SIZES, "seed": 3})
    objective = RecognitionObjective(cfg, manifest, [store])
    episodes = Episodes(manifest, [store], "train", seed=3, count=5, **SIZES)
    for i in (0, 4):
        mine, theirs = episodes[i], objective.train_episode(i)
        assert torch.equal(mine.support, theirs.support) and torch.equal(mine.query, theirs.query)
        assert torch.equal(mine.query_labels, theirs.query_labels) and mine.way == 3
    assert not torch.equal(episodes[0].support, episodes[4].support)
    test = Episodes(manifest, [store], "test", count=7, **SIZES)
    assert len(test) == 7 and test.episode_file is not None and test.episode_file.is_file()
    assert test[6].support.shape[0] == 3 and test[6].query.shape[0] == 6
    with pytest.raises(IndexError):
        test[7]
    features = split_features(manifest, [store], "test")
    assert set(features) == {r.video_id for r in manifest if r.split == "test"}
    assert next(iter(features.values())).shape == (8, 32)


def test_the_own_loop_example_trains_and_reports(synthetic: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "own_loop.py"),
            "--manifest",
            str(synthetic / "manifest.jsonl"),
            "--store",
            str(synthetic / "store.zarr"),
            "--way",
            "3",
            "--episodes",
            "150",
            "--test-episodes",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FSV_EPISODES": str(tmp_path / "episodes")},
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[0]
    accuracy = float(line.split(": ")[1].split(" ±")[0])
    assert line.startswith("ordered-prototypes:") and "on 100 test episodes" in line
    assert accuracy > 50.0  # 3-way: chance is 33.3 %, where order-blind heads stay on this benchmark


def test_localization_detections_score_through_the_api_as_fsv_eval_reports(tmp_path: Path) -> None:
    data = tmp_path / "loc"
    write_synthetic_localization(data, LocSyntheticConfig(videos=(40, 10, 10)))
    source = DataSource(data / "manifest.jsonl", (data / "store.zarr",))
    settings = {"train_steps": 4, "val_every": 2, "num_segments": 16, "head_args.attention_dim": 16}
    run = tmp_path / "vqk"
    train(config_for("vqknet", settings, dataset="synthetic-loc"), source, run, device="cpu")
    fsv_ = [sys.executable, "-m", "fsv"]
    proc = subprocess.run([*fsv_, "eval", str(run), "--json", "--device", "cpu"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout)
    out = tmp_path / "dets.json"
    proc = subprocess.run(
        [*fsv_, "predict", str(run), "--out", str(out), "--device", "cpu"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    table = score_detections(load_results(out), data / "manifest.jsonl", [data / "store.zarr"])
    assert table == {k: reported[k] for k in ("map", "average_map", "averages")}
    videos = list(localization_videos(data / "manifest.jsonl", [data / "store.zarr"], "test"))
    assert len(videos) == reported["videos"] == 10
    v = videos[0]
    assert v.features.shape == (len(v.spans), 64) and v.features.dtype == torch.float32 and v.record.segments
