"""The localization trainer resumes a stopped run to the identical result (weights, best validation
mAP, metrics) and refuses to continue a run folder under another configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fsv.heads.data.synthetic_loc import LocSyntheticConfig, write_synthetic_localization
from fsv.errors import FsvInputError
from fsv.heads.tasks import config_for, train
from fsv.heads.engine.run_folder import DataSource

SMALL = LocSyntheticConfig(videos=(40, 10, 10))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> DataSource:
    out = tmp_path_factory.mktemp("loc-train")
    write_synthetic_localization(out, SMALL)
    return DataSource(out / "manifest.jsonl", (out / "store.zarr",))


@pytest.mark.parametrize(
    "head,settings",
    [
        ("vqknet", {"train_steps": 4, "val_every": 2, "num_segments": 16, "head_args.attention_dim": 32}),
        (
            "cdcca",
            {
                "shot": 1,
                "train_steps": 4,
                "val_every": 2,
                "val_episodes": 3,
                "frame_fps": 2.0,
                "num_pseudo_classes": 4,
                "head_args.d": 32,
                "head_args.proposal_hidden": 32,
            },
        ),
    ],
)
def test_resumed_run_ends_identical_to_an_uninterrupted_one(
    source: DataSource, tmp_path: Path, head: str, settings: dict
) -> None:
    cfg = config_for(head, dataset="synthetic-loc", overrides=settings)
    straight = train(cfg, source, tmp_path / "straight", device="cpu")
    first = train(cfg, source, tmp_path / "resumed", device="cpu", stop_after=3)
    assert first.steps == 3 and (tmp_path / "resumed" / "metrics.csv").read_text().count("\n") == 2
    resumed = train(cfg, source, tmp_path / "resumed", device="cpu")
    assert straight.steps == resumed.steps == 4 and straight.best_val == resumed.best_val
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "metrics.csv").read_text() == (tmp_path / "resumed" / "metrics.csv").read_text()
    with pytest.raises(FsvInputError, match="another configuration"):
        train(
            config_for(head, dataset="synthetic-loc", overrides={**settings, "lr": 0.5}),
            source,
            tmp_path / "straight",
            device="cpu",
        )


def test_predict_refuses_runs_it_cannot_serve(source: DataSource, tmp_path: Path) -> None:
    from fsv.heads.tasks import load_run

    def predict_run(run: Path, **kw: object) -> str:
        return load_run(run)[0].write_predictions(run, tmp_path / "out.json", **kw)

    cfg = config_for(
        "vqknet",
        dataset="synthetic-loc",
        overrides={"train_steps": 1, "val_every": 1, "num_segments": 8, "head_args.attention_dim": 16},
    )
    train(cfg, source, tmp_path / "vqk", device="cpu")
    with pytest.raises(FsvInputError, match="applies to few-shot common localization"):
        predict_run(tmp_path / "vqk", benchmark="yang2020", device="cpu")
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "config.json").write_text(
        '{"config": {"head": "trx"}, "data": {"manifest": "m", "stores": []}}'
    )
    with pytest.raises(FsvInputError, match="recognition run"):
        predict_run(tmp_path / "rec", device="cpu")
    with pytest.raises(FsvInputError, match="not a training run"):
        predict_run(tmp_path / "nothing", device="cpu")
