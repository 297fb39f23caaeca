"""The shortest path: ``fsv extract --dataset D --backbone B``, ``fsv train-head H``, ``fsv eval H``,
on a dataset configured under a name of the user's own; default run folders (resumed, ``--new``
beside them) and the dataset a head reads when none is named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FSV = [sys.executable, "-m", "fsv"]


def fsv(*args: str | Path, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FSV, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment with its own datasets file, runs root and episode folder."""
    return {
        **os.environ,
        "FSV_CONFIG": str(tmp_path / "config.toml"),
        "FSV_RUNS": str(tmp_path / "runs"),
        "FSV_EPISODES": str(tmp_path / "episodes"),
        "FSV_STORES": str(tmp_path / "stores"),
    }


def test_extract_train_eval_by_dataset_and_head_name_alone(tmp_path: Path, home: dict[str, str]) -> None:
    pytest.importorskip("av")
    from fsv.demo import make_videos

    make_videos(tmp_path / "videos", per_class=3)
    fsv("manifest", "build", "folder", "--root", tmp_path / "videos", "--out", tmp_path / "mini.csv", env=home)
    fsv("datasets", "set", "my-clips", "--root", tmp_path / "videos", "--manifest", tmp_path / "mini.csv", env=home)
    fsv(
        "extract", "--dataset", "my-clips", "--backbone", "resnet50", "--weights", "random", "--segments", "2", env=home
    )  # 2 frames a video: the run paths are the point
    train = [
        "train-head",
        "protonet",
        "--way",
        "3",
        "--shot",
        "1",
        "--set",
        "query=2",
        "--set",
        "head_args.projection_dim=8",
        "--set",
        "train_episodes=20",
        "--set",
        "val_every=10",
        "--set",
        "val_episodes=5",
        "--set",
        "test_episodes=20",
        "--device",
        "cpu",
    ]
    first = fsv(*train, env=home)
    run = tmp_path / "runs" / "protonet-my-clips-1shot"
    assert "dataset: my-clips (the one configured dataset with a store protonet reads)" in first.stderr
    assert f"run folder: {run} (new)" in first.stderr and (run / "best.pt").is_file()
    again = fsv(*train, env=home)
    assert f"run folder: {run} (resumed)" in again.stderr
    fresh = fsv(*train, "--new", env=home)
    assert (
        f"run folder: {run}-2 (new, beside {run})" in fresh.stderr
        and (run.with_name(run.name + "-2") / "best.pt").is_file()
    )
    latest = fsv("eval", "protonet", "--json", "--device", "cpu", env=home)
    assert f"run: {run}-2 (the most recent protonet run)" in latest.stderr
    assert json.loads(latest.stdout) == json.loads(
        fsv("eval", f"{run}-2", "--json", "--device", "cpu", env=home).stdout
    )
    page = fsv(
        "report", "protonet", "--out", tmp_path / "page.html", "--device", "cpu", env=home
    )  # fsv predict takes a head name the same way
    assert f"run: {run}-2 (the most recent protonet run)" in page.stderr and (tmp_path / "page.html").is_file()

    # a second dataset with a store protonet reads: ambiguous until one is marked --default
    fsv("datasets", "set", "more-clips", "--root", tmp_path / "videos", "--manifest", tmp_path / "mini.csv", env=home)
    shutil.copytree(
        tmp_path / "stores" / "my-clips", tmp_path / "stores" / "more-clips"
    )  # as fsv extract --dataset more-clips would write it
    proc = fsv(*train, env=home, code=2)
    assert (
        "2 configured datasets have a store protonet reads (more-clips, my-clips)" in proc.stderr
        and "fsv datasets set NAME --default" in proc.stderr
    )
    fsv("datasets", "set", "more-clips", "--default", env=home)
    assert "dataset: more-clips (marked --default" in fsv(*train, "--print-config", env=home).stderr


def test_a_head_reads_its_preferred_dataset_and_a_missing_one_says_what_to_do(
    tmp_path: Path, home: dict[str, str]
) -> None:
    from fsv.pipeline.manifests import Manifest, Segment, VideoRecord
    from fsv.pipeline.spec_presets import get_spec
    from fsv.pipeline.store import FeatureStore

    spec = get_spec("c3d-sports1m-fc6-16")
    anet = Manifest(
        "activitynet13",
        [VideoRecord("abc", "v_abc.mp4", "x", "training", segments=(Segment(0.0, 1.0, "x"),))],
        ["x"],
        "localization",
    )
    for name, manifest in (("thumos14", []), ("activitynet13", ["--manifest", anet.write(tmp_path / "anet13.csv")])):
        FeatureStore.create(
            tmp_path / "stores" / name / f"{spec.name}-{spec.key}.zarr", spec
        )  # the C3D stores CDC-CA's paper used
        fsv("datasets", "set", name, "--root", tmp_path, *manifest, env=home)
    cdcca = fsv("train-head", "cdcca", "--print-config", env=home)
    assert "dataset: activitynet13 (cdcca's preferred dataset among those configured)" in cdcca.stderr
    assert f"run folder: {tmp_path / 'runs' / 'cdcca-activitynet13-5shot'} (new)" in cdcca.stderr
    assert json.loads(cdcca.stdout)["dataset"] == "activitynet13"
    vqk = fsv("train-head", "vqknet", "--print-config", env=home)
    assert (
        "dataset: thumos14" in vqk.stderr and f"run folder: {tmp_path / 'runs' / 'vqknet-thumos14'} (new)" in vqk.stderr
    )
    proc = fsv("train-head", "trx", env=home, code=2)  # TRX reads pooled vectors: both fit, and it prefers neither
    assert (
        "2 configured datasets have a store trx reads (activitynet13, thumos14)" in proc.stderr
        and "fsv datasets set NAME --default" in proc.stderr
    )
    proc = fsv("train-head", "strm", env=home, code=2)  # STRM reads ResNet-50 patch grids: neither store fits
    assert (
        "no configured dataset has a store strm reads" in proc.stderr
        and "activitynet13 (stores in" in proc.stderr
        and "fsv extract --dataset NAME" in proc.stderr
    )
    assert "no trx run under" in fsv("eval", "trx", env=home, code=2).stderr
    given = fsv(
        "train-head",
        "protonet",
        "--store",
        tmp_path / "stores" / "thumos14" / f"{spec.name}-{spec.key}.zarr",
        "--manifest",
        tmp_path / "anet13.csv",
        "--print-config",
        env=home,
    )  # --store and --manifest without --out: the folder is named for the manifest's dataset
    assert (
        f"run folder: {tmp_path / 'runs' / 'protonet-activitynet13-5shot'} (new)" in given.stderr
        and "dataset:" not in given.stderr
    )
    fsv("datasets", "set", "thumos14", "--default", env=home)
    fsv("datasets", "set", "activitynet13", "--default", env=home)  # one default: the mark moves
    assert "dataset: activitynet13 (marked --default" in fsv("train-head", "vqknet", "--print-config", env=home).stderr
    assert "default" not in (tmp_path / "config.toml").read_text().split("[datasets.thumos14]")[1]
