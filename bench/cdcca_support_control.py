"""Does a trained CDC-CA run use its supports? Scores the run's fixed test episodes twice: with their
own supports and with the supports of another test class (the next class in sorted order). A model
that localizes the *common* action loses mAP with wrong-class supports; one that only finds "any
action" (support-agnostic actionness) scores the same.

    .venv/bin/python bench/cdcca_support_control.py RUN [--episodes 200]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from fsv.localization.tasks import CommonTask
from fsv.localization.config import LocConfig
from fsv.localization.trainer import _load_best, score
from fsv.runs import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    cfg, source = load_run(args.run)
    if not isinstance(cfg, LocConfig) or cfg.task != "common":
        raise SystemExit(f"{args.run} is not a cdcca run")
    dev = torch.device(args.device)
    task, head, dataset = _load_best(args.run, cfg, source, dev)
    assert isinstance(task, CommonTask)
    episodes = task.fixed_episodes("test")
    first = {}
    for ep in episodes:
        first.setdefault(ep.label, ep.supports)
    labels = sorted(first)
    if len(labels) < 2:
        raise SystemExit("the test episodes hold one class; nothing to swap")
    right = score(task.score_split(head, "test", dev), "common", dataset)["map"]["0.5"]
    swapped = [replace(ep, supports=first[labels[(labels.index(ep.label) + 1) % len(labels)]]) for ep in episodes]
    task.fixed_episodes = lambda split, benchmark=None: swapped  # type: ignore[method-assign]
    wrong = score(task.score_split(head, "test", dev), "common", dataset)["map"]["0.5"]
    print(f"{args.run}: {len(episodes)} test episodes of {len(labels)} classes, {cfg.shot}-shot {cfg.mode}-instance")
    print(f"mAP@0.5 with own supports {right * 100:.1f}, with another class's supports {wrong * 100:.1f}")


if __name__ == "__main__":
    main()
