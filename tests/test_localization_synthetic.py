"""Synthetic localization benchmarks: planted action instances (class patterns plus a pattern shared
by all actions, in background noise; ``fsv.heads.data.synthetic_loc``), trained and scored through the CLI.

* VQK-Net must localize the instances far above the random-proposal baseline that ``fsv eval``
  reports beside them (random segments carrying the true labels).
* CDC-CA must follow its supports: on queries that hold instances of two unseen classes of a hard
  cell of the support-control family, scored with ``fsv eval --benchmark`` on episode files that
  differ only in their supports, its own supports must score far above the other class's in the
  query (the distractor) and an absent class's, and far above random proposals; the
  prototype-matching baseline on the same episodes too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fsv.heads.data.synthetic_loc import CONTROLS, SUPPORT_GRID, write_support_control, write_synthetic_localization

FSV = [sys.executable, "-m", "fsv"]
HARD_CELL = SUPPORT_GRID["a0.5-phased-white-large"]
CPU = ["--device", "cpu"]


def fsv(*args: str) -> str:
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_vqknet_localizes_planted_instances_far_above_random_proposals(tmp_path: Path) -> None:
    write_synthetic_localization(tmp_path)
    run = tmp_path / "run"
    fsv(
        "train-head",
        "vqknet",
        "--store",
        str(tmp_path / "store.zarr"),
        "--manifest",
        str(tmp_path / "manifest.jsonl"),
        "--out",
        str(run),
        "--set",
        "train_steps=150",
        "--set",
        "val_every=150",
        "--set",
        "num_segments=64",
        "--set",
        "lr=5e-4",
        *CPU,
    )
    table = json.loads(fsv("eval", str(run), "--json", *CPU))
    chance = table["random_proposals"]["average_map"]
    assert chance < 0.35
    assert table["average_map"] > chance + 0.4, table
    assert table["map"]["0.5"] > 0.7, table


def test_cdcca_follows_its_supports_on_a_hard_cell(tmp_path: Path) -> None:
    """A hard cell of the support-control family (class amplitude half the shared actionness, class
    patterns that change over an instance): trained through the CLI as the README's grid is, CDC-CA
    scores far higher with its own supports than with the other class's in the query or an absent
    class's, and so does the prototype-matching baseline, which reads nothing else."""
    manifest, _ = write_synthetic_localization(tmp_path / "data", HARD_CELL)
    files = write_support_control(tmp_path / "episodes", manifest)
    data = [
        "--store",
        str(tmp_path / "data" / "store.zarr"),
        "--manifest",
        str(tmp_path / "data" / "manifest.jsonl"),
        "--shot",
        "5",
        "--set",
        f"class_split={files['own']}",
        "--set",
        "mode=multi",
        "--set",
        "frame_fps=2",
        "--set",
        "lr=1e-3",
        "--set",
        "train_steps=1500",
        "--set",
        "val_every=500",
        "--set",
        "val_episodes=40",
        "--set",
        "head_args.proposal_hidden=128",
        *CPU,
    ]
    fsv(
        "train-head",
        "cdcca",
        "--out",
        str(tmp_path / "cdcca"),
        *data,
        "--set",
        "num_pseudo_classes=16",
        "--set",
        "head_args.d=128",
    )
    fsv("train-head", "protomatch", "--out", str(tmp_path / "protomatch"), *data)
    for head in ("cdcca", "protomatch"):
        tables = {
            c: json.loads(fsv("eval", str(tmp_path / head), "--benchmark", str(files[c]), "--json", *CPU))
            for c in CONTROLS
        }
        own, distractor, absent = (tables[c]["map"]["0.5"] for c in CONTROLS)
        assert tables["own"]["episodes"] == 120 and tables["own"]["split"] == str(files["own"])
        assert own > tables["own"]["random_proposals"]["map"]["0.5"] + 0.4, (head, tables["own"])
        assert own > distractor + 0.3 and own > absent + 0.2, (head, own, distractor, absent)
