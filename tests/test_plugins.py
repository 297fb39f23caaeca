"""Plugins by entry point (fsv.plugins): the example plugin package (examples/fsv-example-plugin,
installed by make setup) adds a head and a backbone that every command takes; a plugin that fails
to import or takes a built-in's name is reported by name, and the rest of fsv works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

FSV = [sys.executable, "-m", "fsv"]
WIDE = {**os.environ, "COLUMNS": "250"}  # rich tables unabridged


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FSV, *map(str, args)], capture_output=True, text=True, env=env or WIDE, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def example_plugin() -> None:
    try:
        distribution("fsv-example-plugin")
    except PackageNotFoundError:
        if os.environ.get("FSV_REQUIRE_REFERENCES"):
            pytest.fail("the example plugin is not installed: make setup installs examples/fsv-example-plugin")
        pytest.skip("the example plugin is not installed (make setup installs examples/fsv-example-plugin)")


def test_the_example_plugins_head_and_backbone_run_through_the_cli(example_plugin: None, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from fsv.demo import make_videos

    listed = run("plugins").stdout
    assert "example-proto" in listed and "example-cnn" in listed and "fsv-example-plugin 0.1.0" in listed
    rows = [line for line in listed.splitlines() if "fsv-example-plugin 0.1.0" in line]
    assert len(rows) == 2 and all(row.rstrip(" │").endswith("loaded") and "not loaded" not in row for row in rows), (
        listed
    )
    make_videos(tmp_path / "videos", per_class=3)
    manifest, store, out = tmp_path / "m.csv", tmp_path / "s.zarr", tmp_path / "run"
    env = {**WIDE, "FSV_EPISODES": str(tmp_path / "episodes")}
    run("manifest", "build", "folder", "--root", tmp_path / "videos", "--out", manifest)
    run(
        "extract",
        "--manifest",
        manifest,
        "--root",
        tmp_path / "videos",
        "--backbone",
        "example-cnn",
        "--weights",
        "random",
        "--store",
        store,
        "--device",
        "cpu",
    )
    info = json.loads(run("store", "info", store, "--json").stdout)
    assert info["spec_name"].startswith("example-cnn") and info["videos"] == 36
    sets = ["query=2", "train_episodes=40", "val_every=20", "val_episodes=10", "test_episodes=30"]
    train = ["train-head", "example-proto", "--store", store, "--manifest", manifest, "--way", "3", "--shot", "1"]
    printed = json.loads(run(*train, "--out", out, "--print-config", env=env).stdout)
    assert printed["head"] == "example-proto"
    assert printed["sources"]["head_args.projection_dim"] == "example-proto paper preset"
    run(*train, *[a for s in sets for a in ("--set", s)], "--out", out, "--device", "cpu", env=env)
    result = json.loads(run("eval", out, "--json", "--device", "cpu", env=env).stdout)
    assert result["head"] == "example-proto" and result["episodes"] == 30 and result["accuracy"] > 1 / 3
    run("report", out, "--out", tmp_path / "page.html", "--device", "cpu", env=env)
    assert "example-proto" in (tmp_path / "page.html").read_text()


def test_a_broken_plugin_and_one_that_takes_a_builtin_name_are_reported_and_fsv_works(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "fake_plugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[fsv.heads]\nbroken = fake_broken\ntrx = fake_clash_head\n[fsv.backbones]\nresnet50 = fake_clash_backbone\n"
        "[fsv.datasets]\nmy-clips = fake_dataset\n"
    )
    (site / "fake_broken.py").write_text('raise ImportError("it needs a library that is not installed")\n')
    (site / "fake_clash_head.py").write_text(
        "from fsv.heads.models import RecognitionHead, register_head\n\n"
        "@register_head('trx', preset={}, description='not the real TRX')\n"
        "class Fake(RecognitionHead):\n    pass\n"
    )
    (site / "fake_clash_backbone.py").write_text(
        "from dataclasses import replace\n"
        "from fsv.pipeline.backbones import BACKBONES, Published, register_backbone\n"
        "register_backbone(replace(BACKBONES['resnet50'], published=Published('not-resnet50', 'none')), {})\n"
    )
    (site / "fake_dataset.py").write_text(  # imported the way a plugin naturally imports fsv
        "from fsv.pipeline.manifests import Manifest, VideoRecord\n"
        "from fsv.pipeline.manifests.builders import register_dataset\n\n"
        "def build(*, root, annotations, splits, task):\n"
        "    rows = [VideoRecord(f'v{i}', f'v{i}.mp4', 'a' if i % 2 else 'b', 'train') for i in range(4)]\n"
        "    return Manifest('my-clips', rows, ['a', 'b'], 'classification')\n\n"
        "register_dataset('My-Clips', build)\n"
    )
    env = {**WIDE, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = run("plugins", env=env)
    assert "not loaded: ImportError: it needs a library that is not installed" in proc.stdout, proc.stdout
    assert "not loaded: ValueError: head 'trx' is registered already" in proc.stdout, proc.stdout
    assert "not loaded: ValueError: backbone 'resnet50' is registered already" in proc.stdout, proc.stdout
    assert "fake-plugins 0.1" in proc.stdout
    my_clips = [line for line in proc.stdout.splitlines() if "my-clips" in line]
    assert len(my_clips) == 1 and "not loaded" not in my_clips[0], proc.stdout
    run("manifest", "build", "my-clips", "--out", tmp_path / "mine.csv", env=env)  # found under its canonical name
    assert [line.split(",")[0] for line in (tmp_path / "mine.csv").read_text().splitlines()[2:]] == [
        "v0",
        "v1",
        "v2",
        "v3",
    ]
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fsv.heads.models import head_cards; from fsv.pipeline.backbones import backbone_cards; "
            "print(head_cards()['trx'].build.__module__, backbone_cards()['resnet50'].published.preset)",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0 and check.stdout.split() == [
        "fsv.heads.models.trx",
        "resnet50-imagenet-tsn8",
    ], check.stdout + check.stderr
    assert "plugin broken" in check.stderr  # the warning names the plugin that was not loaded
