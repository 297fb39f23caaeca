"""Every head trains and evaluates from the CLI on a store written by ``fsv extract`` and on one
written by ``fsv store import`` (real ResNet-50 grids, 2048 x 7 x 7; tiny episodes to stay fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.demo import make_videos
from fsv.pipeline.store import FeatureStore

FSV = [sys.executable, "-m", "fsv"]
TINY = [
    "--way",
    "2",
    "--shot",
    "1",
    "--device",
    "cpu",
    "--set",
    "query=1",
    "--set",
    "train_episodes=2",
    "--set",
    "episodes_per_update=1",
    "--set",
    "val_every=2",
    "--set",
    "val_episodes=2",
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("heads-cli")
    make_videos(out / "videos", per_class=2)
    env = {**os.environ, "FSV_EPISODES": str(out / "episodes")}

    def run(*args: str) -> None:
        proc = subprocess.run([*FSV, *args], capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    run("manifest", "build", "folder", "--root", str(out / "videos"), "--out", str(out / "m.csv"))
    run(
        "extract",
        "--backbone",
        "resnet50",
        "--manifest",
        str(out / "m.csv"),
        "--root",
        str(out / "videos"),
        "--store",
        str(out / "extracted"),
        "--weights",
        "random",
    )
    run("store", "export", str(out / "extracted"), "--h5", str(out / "features.h5"))
    run(
        "store",
        "import",
        str(out / "features.h5"),
        "--store",
        str(out / "imported"),
        "--manifest",
        str(out / "m.csv"),
        "--spec",
        "resnet50-imagenet-tsn8",
    )
    return out, out / "extracted", out / "imported", env


@pytest.mark.parametrize("head", ["protonet", "trx", "strm", "ta2n"])
def test_head_trains_and_evaluates_on_extracted_and_imported_stores(
    stores: tuple[Path, Path, Path, dict[str, str]], head: str
) -> None:
    out, extracted, imported, env = stores
    vid = FeatureStore.open(extracted).video_ids()[0]
    np.testing.assert_array_equal(FeatureStore.open(extracted).get(vid), FeatureStore.open(imported).get(vid))
    results = []
    for store in (extracted, imported):
        run = out / f"run-{head}-{store.name}"
        args = [
            *FSV,
            "train-head",
            head,
            "--store",
            str(store),
            "--manifest",
            str(out / "m.csv"),
            "--out",
            str(run),
            *TINY,
        ]
        if head == "protonet":
            args += ["--set", "head_args.projection_dim=8"]
        train = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
        assert train.returncode == 0, train.stdout + train.stderr
        ev = subprocess.run(
            [*FSV, "eval", str(run), "--episodes", "4", "--json", "--device", "cpu"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert ev.returncode == 0, ev.stderr
        results.append(json.loads(ev.stdout))
    assert (
        results[0]["accuracy"] == results[1]["accuracy"] and results[0]["episodes"] == 4
    )  # same features, same episodes
