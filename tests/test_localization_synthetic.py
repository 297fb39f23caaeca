"""Synthetic localization benchmark: planted action instances (class patterns plus a pattern shared
by all actions, in background noise; ``fsv.data.synthetic_loc``). Trained and scored through the
CLI, both heads must localize the instances far above the random-proposal baseline that
``fsv eval`` reports beside them (random segments carrying the true labels)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fsv.data.synthetic_loc import write_synthetic_localization

FSV = [sys.executable, "-m", "fsv"]
SETTINGS = {
    "vqknet": ["--set", "train_steps=150", "--set", "val_every=150", "--set", "num_segments=64", "--set", "lr=5e-4"],
    "cdcca": ["--set", "train_steps=600", "--set", "val_every=600", "--set", "lr=1e-3", "--set", "frame_fps=2", "--set", "num_pseudo_classes=16",
              "--set", "val_episodes=50", "--set", "test_episodes=200", "--set", "head_args.d=128", "--set", "head_args.proposal_hidden=128"],
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic-loc")
    write_synthetic_localization(out)
    return out


@pytest.mark.parametrize("head", ["vqknet", "cdcca"])
def test_head_localizes_planted_instances_far_above_random_proposals(synthetic: Path, head: str) -> None:
    run = synthetic / f"run-{head}"
    common = ["--device", "cpu"]
    train = subprocess.run([*FSV, "train-head", head, "--store", str(synthetic / "store.zarr"), "--manifest", str(synthetic / "manifest.jsonl"),
                            "--out", str(run), *SETTINGS[head], *common], capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stdout + train.stderr
    ev = subprocess.run([*FSV, "eval", str(run), "--json", *common], capture_output=True, text=True, timeout=900)
    assert ev.returncode == 0, ev.stderr
    table = json.loads(ev.stdout)
    chance = table["random_proposals"]["average_map"]
    assert chance < 0.35
    assert table["average_map"] > chance + 0.4, table
    assert table["map"]["0.5"] > 0.7, table
