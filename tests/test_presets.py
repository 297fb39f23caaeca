"""Presets resolve in one place (fsv.heads.engine.config): paper preset, dataset preset, --config, --set and named options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fsv.errors import FsvInputError
from fsv.heads.models import HEADS, head_cards
from fsv.heads.tasks import TASKS
from fsv.heads.engine.config import Layer, dataset_family, user_layers
from fsv.heads.tasks import task_of


def print_config(tmp_path: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "fsv", "train-head", *args, "--out", str(tmp_path / "run"), "--print-config"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "run").exists()  # prints and exits: no run folder
    return json.loads(done.stdout)


def test_ta2n_ssv2_gets_the_papers_ssv2_schedule_through_print_config(tmp_path: Path) -> None:
    d = print_config(tmp_path, "ta2n", "--dataset", "ssv2_otam")
    cfg = d["config"]
    assert (d["dataset"], d["dataset_preset"]) == ("ssv2_otam", "ssv2")
    # supplementary: x0.8 every 30 epochs (6,000 episodes) for 600 epochs (120,000 episodes)
    assert cfg["train_episodes"] == 120_000 and cfg["lr_gamma"] == 0.8
    assert cfg["lr_milestones"] == list(range(6000, 120_000, 6000))
    assert d["sources"]["train_episodes"] == d["sources"]["lr_milestones"] == "ta2n ssv2 preset"
    assert d["sources"]["way"] == "default"


def test_ta2n_kinetics_preset_has_no_momentum_and_user_layers_win_in_order(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"lr": 0.5, "val_every": 7, "head_args": {"gamma": 2.0}}))
    d = print_config(
        tmp_path, "ta2n", "--dataset", "kinetics100", "--config", str(config), "--set", "lr=0.01", "--shot", "1"
    )
    cfg, src = d["config"], d["sources"]
    assert (d["dataset"], d["dataset_preset"]) == ("kinetics_cmn", "kinetics100")
    assert cfg["momentum"] == 0.0 and src["momentum"] == "ta2n kinetics100 preset"  # "without momentum"
    assert cfg["lr_milestones"][:2] == [4000, 8000] and cfg["lr_gamma"] == 0.9
    assert (cfg["lr"], src["lr"]) == (0.01, "--set")  # --set over --config
    assert (cfg["val_every"], src["val_every"]) == (7, f"--config {config}")
    assert (cfg["head_args"]["gamma"], src["head_args.gamma"]) == (2.0, f"--config {config}")
    assert (cfg["shot"], src["shot"]) == (1, "--shot")


def test_localization_heads_take_their_dataset_presets_and_unknown_settings_are_refused(tmp_path: Path) -> None:
    d = print_config(tmp_path, "vqknet", "--dataset", "thumos14", "--steps", "12")
    assert d["dataset_preset"] == "thumos14" and d["config"]["head_args"]["topk_m"] == 7
    assert (d["config"]["train_steps"], d["sources"]["train_steps"]) == (12, "--steps")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "train-head",
            "ta2n",
            "--dataset",
            "ucf101",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "bogus=1",
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown setting 'bogus'" in bad.stderr


@pytest.mark.parametrize(
    "head, option, says",
    [
        ("vqknet", "--episodes", "vqknet trains in optimiser steps, not episodes: use --steps N"),
        ("trx", "--steps", "trx trains on episodes: use --episodes N"),
    ],
)
def test_training_length_has_one_word_per_kind_of_head(tmp_path: Path, head: str, option: str, says: str) -> None:
    dataset = "thumos14" if head == "vqknet" else "ucf101"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "train-head",
            head,
            "--dataset",
            dataset,
            option,
            "5",
            "--out",
            str(tmp_path / "r"),
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and says in bad.stderr, bad.stderr


@pytest.mark.parametrize(
    "dataset, family",
    [
        ("ssv2_otam", "ssv2"),
        ("ssv2_cmn", "ssv2"),
        ("kinetics_cmn", "kinetics100"),
        ("ucf101_arn", "ucf101"),
        ("hmdb51_arn", "hmdb51"),
        ("thumos14", "thumos14"),
        ("activitynet13", "activitynet"),
        ("mine", "mine"),
    ],
)
def test_dataset_family(dataset: str, family: str) -> None:
    assert dataset_family(dataset) == family


@pytest.mark.parametrize("head", sorted(head_cards()))
def test_every_head_card_resolves_its_presets(head: str) -> None:
    """Contract over the registry: a card's paper preset and each of its dataset presets resolve
    into its run configuration, every dataset-preset value arriving from that preset."""
    card = HEADS[head]
    assert card.task in TASKS and card.description
    cfg, resolved = run_config(head, None, [])
    assert cfg.head == head and resolved.dataset_preset is None
    for key, preset in card.dataset_presets.items():
        cfg, resolved = run_config(head, key, [])
        assert resolved.dataset_preset == key
        for name in preset:
            field = (
                {"train_iterations": "train_steps", "train_episodes": "train_steps"}.get(name, name)
                if card.task != "recognition"
                else name
            )
            where = field if hasattr(cfg, field) else f"head_args.{name}"
            assert resolved.sources[where] == f"{head} {key} preset", (head, key, name)
    with pytest.raises(FsvInputError, match="unknown setting"):
        run_config(head, None, user_layers(sets=["no_such_setting=1"]))
    assert run_config(head, None, [Layer("test", {"seed": 3})])[0].seed == 3


def run_config(head: str, dataset: str | None, layers: list[Layer]) -> tuple:
    """The configuration of ``head`` on ``dataset`` with ``layers`` (as ``fsv train-head`` resolves it)."""
    return task_of(head).resolve(head, dataset, layers)
