"""Write the legacy run folders (``tests/data/legacy_runs``) with fsv as of this commit: one run of
each kind stopped part-way (``<kind>/``, stores and manifests beside them in ``data/``) and what
resuming then evaluating it gives (``expected.json``). tests/test_legacy_runs.py checks that a later
fsv resumes and evaluates these folders to the same numbers."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

from fsv.data.synthetic import SyntheticConfig, write_synthetic
from fsv.data.synthetic_loc import LocSyntheticConfig, write_synthetic_localization
from fsv.evaluation import evaluate_folder
from fsv.localization.trainer import config_for, train_localization
from fsv.runs import DataSource
from fsv.train import TrainConfig, train

RUNS = {
    "recognition": (
        "protonet",
        {
            "train_episodes": 24,
            "val_every": 8,
            "val_episodes": 10,
            "checkpoint_every": 4,
            "test_episodes": 30,
            "shot": 1,
            "query": 3,
            "head_args": {"projection_dim": 8},
        },
    ),
    "wtal": ("vqknet", {"train_steps": 6, "val_every": 2, "num_segments": 16, "head_args.attention_dim": 16}),
    "common": (
        "cdcca",
        {
            "shot": 1,
            "train_steps": 6,
            "val_every": 2,
            "val_episodes": 3,
            "test_episodes": 6,
            "frame_fps": 2.0,
            "num_pseudo_classes": 4,
            "head_args.d": 16,
            "head_args.proposal_hidden": 16,
        },
    ),
}


def digest(path: Path) -> str:
    state = torch.load(path, weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].float().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    shutil.rmtree(out / "data", ignore_errors=True)
    write_synthetic(out / "data" / "rec", SyntheticConfig(dim=8, frames=4, classes=(6, 5, 5), videos_per_class=5))
    write_synthetic_localization(out / "data" / "loc", LocSyntheticConfig(dim=8, classes=10, videos=(24, 6, 6)))
    expected = {}
    for kind, (head, settings) in RUNS.items():
        data = out / "data" / ("rec" if kind == "recognition" else "loc")
        source = DataSource(data / "manifest.jsonl", (data / "store.zarr",))
        run = out / kind
        shutil.rmtree(run, ignore_errors=True)
        if kind == "recognition":
            cfg = TrainConfig.for_head(head, settings)
            train(cfg, source, run, device="cpu", stop_after=10)
        else:
            cfg = config_for(head, "synthetic-loc", settings)
            train_localization(cfg, source, run, device="cpu", stop_after=3)
        done = out / "tmp" / kind
        shutil.rmtree(done, ignore_errors=True)
        shutil.copytree(run, done)
        (train if kind == "recognition" else train_localization)(cfg, source, done, device="cpu")
        result = evaluate_folder(done, device="cpu")
        result.pop("episode_file", None)
        expected[kind] = {
            "eval": result,
            "metrics": (done / "metrics.csv").read_text(),
            "last": digest(done / "last.pt"),
            "best": digest(done / "best.pt"),
        }
    shutil.rmtree(out / "tmp")
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
