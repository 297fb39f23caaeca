"""The recognition heads train and evaluate on a CLIP store written by ``fsv extract --grid``: the
pooled view reads the projected embeddings, the patches and grid views the patch-token grid
(7 x 7 for ViT-B/32), and ``--dataset`` alone finds the store (random weights, tiny episodes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FSV, *[str(a) for a in args]], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def clip_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("clip-cli")
    make_videos(out / "videos", per_class=2)
    env = {
        **os.environ,
        "FSV_CONFIG": str(out / "config.toml"),
        "FSV_RUNS": str(out / "runs"),
        "FSV_EPISODES": str(out / "episodes"),
        "FSV_STORES": str(out / "stores"),
    }
    run("manifest", "build", "folder", "--root", out / "videos", "--out", out / "m.csv", env=env)
    run("datasets", "set", "clips", "--root", out / "videos", "--manifest", out / "m.csv", env=env)
    run(
        "extract",
        "--dataset",
        "clips",
        "--backbone",
        "clip-vit-b32",
        "--grid",
        "--weights",
        "random",
        "--workers",
        "0",
        env=env,
    )
    return out, env


def test_the_clip_store_holds_embeddings_and_the_token_grid(clip_dataset):
    out, _ = clip_dataset
    (store_path,) = (out / "stores" / "clips").glob("*.zarr")
    store = FeatureStore.open(store_path)
    assert store_path.name.startswith("clip-vit-b32-rgb-tsn8-grid-")
    assert {k: v.shape for k, v in store.spec.fields.items()} == {"features": (512,), "grid": (768, 7, 7)}
    vid = store.video_ids()[0]
    assert store.get(vid, "features").shape == (8, 512) and store.get(vid, "grid").shape == (8, 768, 7, 7)


@pytest.mark.parametrize(
    ("head", "view"), [("protonet", "pooled"), ("trx", "pooled"), ("strm", "patches"), ("ta2n", "grid")]
)
def test_head_trains_on_the_clip_store_through_dataset_alone(clip_dataset, head, view):
    out, env = clip_dataset
    run_dir = out / f"run-{head}"
    args = ["train-head", head, "--dataset", "clips", "--out", run_dir, *TINY]
    if head == "protonet":
        args += ["--set", "head_args.projection_dim=8"]
    run(*args, env=env)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["view"] == view and config["data"]["stores"][0].split("/")[-1].startswith("clip-vit-b32")
    ev = run("eval", run_dir, "--episodes", "4", "--json", "--device", "cpu", env=env)
    assert json.loads(ev.stdout)["episodes"] == 4
