"""The synthetic order benchmark: classes differ only in the order of shared sub-actions, with random
offsets, durations and positions. An order-blind head (ProtoNet) must stay near chance; the
temporal heads must beat it by a wide margin. Everything runs through the CLI: store, trainer, eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic

FSV = [sys.executable, "-m", "fsv"]
CHANCE = 0.2  # 5-way
# small widths, 3 queries per class and Adam so that a few hundred CPU episodes suffice (each head
# in under a minute on a quiet 2-core machine; TA2N reaches 0.85 after 120 episodes, 0.86 after 300);
# the architecture is the paper's
FAST = [
    "--set",
    "optimizer=adam",
    "--set",
    "lr=0.001",
    "--set",
    "episodes_per_update=1",
    "--set",
    "val_every=150",
    "--set",
    "val_episodes=100",
    "--set",
    "query=3",
]
HEADS = {
    "trx": ["--set", "head_args.out_dim=64", "--set", "train_episodes=300"],
    "strm": ["--set", "head_args.out_dim=64", "--set", "train_episodes=300"],
    "ta2n": [
        "--set",
        "head_args.sc_channels=32",
        "--set",
        "head_args.ttm_channels=[16,32]",
        "--set",
        "train_episodes=120",
        "--set",
        "val_every=60",
    ],
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("order-benchmark")
    write_synthetic(out, SyntheticConfig(dim=64))
    env = {**os.environ, "FSV_EPISODES": str(out / "episodes")}
    return out, env


def run_head(bench: tuple[Path, dict[str, str]], head: str, extra: list[str]) -> float:
    out, env = bench
    data = ["--store", str(out / "store.zarr"), "--manifest", str(out / "manifest.jsonl")]
    run = out / f"run-{head}"
    train = subprocess.run(
        [*FSV, "train-head", head, *data, "--out", str(run), "--shot", "1", "--device", "cpu", *FAST, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    ev = subprocess.run(
        [*FSV, "eval", str(run), "--episodes", "200", "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert ev.returncode == 0, ev.stderr
    return json.loads(ev.stdout)["accuracy"]


@pytest.fixture(scope="module")
def protonet_accuracy(bench: tuple[Path, dict[str, str]]) -> float:
    return run_head(bench, "protonet", [])


def test_protonet_stays_near_chance(protonet_accuracy: float) -> None:
    assert abs(protonet_accuracy - CHANCE) < 0.1, protonet_accuracy


@pytest.mark.parametrize("head", sorted(HEADS))
def test_temporal_heads_clearly_beat_protonet(
    bench: tuple[Path, dict[str, str]], protonet_accuracy: float, head: str
) -> None:
    accuracy = run_head(bench, head, HEADS[head])
    assert accuracy > protonet_accuracy + 0.4, (head, accuracy, protonet_accuracy)
