"""Stage two plumbing: episodes, fixed episode files, feature banks, the trainer's resume, eval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.heads.data.episodes import EpisodeConfig, EpisodeSampler, fixed_episodes, read_episodes
from fsv.heads.data.features import FeatureBank, derive_view, episode_tensors
from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic
from fsv.errors import FsvInputError
from fsv.heads.engine.run_folder import DataSource
from fsv.heads.tasks import config_for, train
from fsv.heads.tasks.recognition import RecognitionConfig, evaluate

FSV = [sys.executable, "-m", "fsv"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, SyntheticConfig(dim=32, videos_per_class=12))
    return out


@pytest.fixture(autouse=True)
def episodes_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSV_EPISODES", str(tmp_path / "episodes"))


def test_sampler_is_seeded_and_episodes_are_well_formed() -> None:
    classes = {f"c{c}": [f"c{c}_{k}" for k in range(12)] for c in range(8)}
    classes["tiny"] = ["t0", "t1"]
    s = EpisodeSampler(classes, EpisodeConfig("train", way=5, shot=3, query=4, seed=7))
    assert "tiny" not in s.names  # fewer than shot + query videos
    a, b = s.episode(11), EpisodeSampler(classes, EpisodeConfig("train", 5, 3, 4, seed=7)).episode(11)
    assert a == b and a != s.episode(12)
    assert len(set(a.classes)) == 5 and len(a.support) == 15 and len(a.query) == 20
    assert not set(a.support) & set(a.query)
    for c, name in enumerate(a.classes):
        assert all(v.startswith(name + "_") for v in a.support[c * 3 : (c + 1) * 3] + a.query[c * 4 : (c + 1) * 4])
    with pytest.raises(FsvInputError, match="needs 5"):
        EpisodeSampler({"a": ["x"] * 9}, EpisodeConfig("test"))


def test_fixed_episode_files_are_written_once_and_reused(synthetic: Path, tmp_path: Path) -> None:
    from fsv.pipeline.manifests import Manifest

    m = Manifest.read(synthetic / "manifest.jsonl")
    cfg = EpisodeConfig("test", 5, 1, 3, seed=0)
    path, eps = fixed_episodes(m, cfg, 40)
    assert path.is_file() and len(eps) == 40
    header, again = read_episodes(path)
    assert header["manifest_sha256"] == m.sha256 and again == eps
    path.write_text(path.read_text().replace(eps[0].support[0], "someone-else", 1))  # the file wins over the sampler
    assert fixed_episodes(m, cfg, 40)[1][0].support[0] == "someone-else"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["{not json"] + lines[4:]) + "\n")
    with pytest.raises(FsvInputError, match=rf"{path.name}:4: malformed"):
        fixed_episodes(m, cfg, 40)


def test_views_and_temporal_jitter() -> None:
    grid = torch.rand(8, 6, 7, 7)
    torch.testing.assert_close(derive_view(grid, "pooled"), grid.mean(dim=(2, 3)))
    patches = derive_view(grid, "patches")
    assert patches.shape == (8, 16, 6)
    torch.testing.assert_close(
        patches[:, 0], grid[:, :, :2, :2].amax(dim=(2, 3))
    )  # 4x4 adaptive bins of 7: [0,2) first
    with pytest.raises(FsvInputError, match="spatial grids"):
        derive_view(torch.rand(8, 6), "patches")
    data = np.arange(3 * 16 * 2, dtype=np.float16).reshape(3, 16, 2)
    bank = FeatureBank(data, {"a": 0, "b": 1, "c": 2}, "pooled", 8)
    centre = bank.gather(["b"]).numpy()
    np.testing.assert_array_equal(centre[0, :, 0], data[1, 1::2, 0])  # TSN centres of 16 steps in 8 segments
    jit = bank.gather(["a", "c"] * 20, train=True, rng=np.random.default_rng(0)).numpy()
    steps = (jit[:, :, 0] - np.array([0, 64] * 20)[:, None]) / 2
    assert ((steps >= np.arange(8) * 2) & (steps < np.arange(8) * 2 + 2)).all() and len(np.unique(steps, axis=0)) > 1


def test_episode_tensors_have_the_episode_labels(synthetic: Path) -> None:
    from fsv.pipeline.manifests import Manifest
    from fsv.pipeline.store import FeatureStore

    m = Manifest.read(synthetic / "manifest.jsonl")
    store = FeatureStore.open(synthetic / "store.zarr")
    ids = [r.video_id for r in m.select("test")]
    bank = FeatureBank.load([store], ids, "patches", 8)
    assert bank.feature_shape == (16, 32)
    ep = EpisodeSampler(
        {c: [v for v in ids if v.startswith(c)] for c in {r.label for r in m.select("test")}},
        EpisodeConfig("test", 5, 2, 3),
    ).episode(0)
    t = episode_tensors(bank, ep)
    assert t.support.shape == (10, 8, 16, 32) and t.query.shape == (15, 8, 16, 32)
    assert t.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and t.query_labels.tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        2,
        3,
        3,
        3,
        4,
        4,
        4,
    ]
    grid = torch.from_numpy(store.get(ep.support[2]).astype(np.float32))
    torch.testing.assert_close(t.support[2].float(), derive_view(grid, "patches").half().float())


def _config(**kw: object) -> RecognitionConfig:
    base = {
        "train_episodes": 40,
        "episodes_per_update": 4,
        "val_every": 20,
        "val_episodes": 20,
        "checkpoint_every": 8,
        "test_episodes": 50,
        "shot": 1,
        "query": 3,
        "head_args": {"projection_dim": 16},
    }
    return config_for("protonet", {**base, **kw})


def test_stopped_run_resumes_to_the_identical_model(synthetic: Path, tmp_path: Path) -> None:
    source = DataSource(synthetic / "manifest.jsonl", (synthetic / "store.zarr",))
    full = train(_config(), source, tmp_path / "full", device="cpu")
    part = train(_config(), source, tmp_path / "part", device="cpu", stop_after=13)
    assert part.steps == 13
    rest = train(_config(), source, tmp_path / "part", device="cpu")
    assert rest.steps == 40 and rest.best_step == full.best_step
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True)["model"] for r in ("full", "part"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "part" / "metrics.csv").read_text()
    with pytest.raises(FsvInputError, match="another configuration"):
        train(_config(lr=0.5), source, tmp_path / "full", device="cpu")


def test_a_recognition_checkpoint_from_before_the_one_trainer_resumes(synthetic: Path, tmp_path: Path) -> None:
    """last.pt of recognition runs counted ``episodes`` and kept bare losses; such a run resumes
    to the model an uninterrupted run gives."""
    source = DataSource(synthetic / "manifest.jsonl", (synthetic / "store.zarr",))
    full = train(_config(), source, tmp_path / "full", device="cpu")
    train(_config(), source, tmp_path / "old", device="cpu", stop_after=13)
    ck = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    assert ck["loss_names"] == ["loss"] and 0 < ck["steps"] < 13
    old = {k: v for k, v in ck.items() if k not in ("steps", "best_step", "loss_names", "losses")}
    torch.save(
        {**old, "episodes": ck["steps"], "best_episode": ck["best_step"], "losses": [row[0] for row in ck["losses"]]},
        tmp_path / "old" / "last.pt",
    )
    rest = train(_config(), source, tmp_path / "old", device="cpu")
    assert rest.steps == 40 and rest.best_step == full.best_step
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True)["model"] for r in ("full", "old"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_killed_cli_run_resumes_identically_and_eval_prints_json(synthetic: Path, tmp_path: Path) -> None:
    sets = [
        "--set",
        "train_episodes=400",
        "--set",
        "episodes_per_update=2",
        "--set",
        "checkpoint_every=2",
        "--set",
        "val_every=100",
        "--set",
        "val_episodes=20",
        "--set",
        "head_args.projection_dim=16",
    ]
    base = [
        *FSV,
        "train-head",
        "protonet",
        "--store",
        str(synthetic / "store.zarr"),
        "--manifest",
        str(synthetic / "manifest.jsonl"),
        "--way",
        "5",
        "--shot",
        "1",
        "--device",
        "cpu",
        *sets,
    ]
    env = {**os.environ, "FSV_EPISODES": str(tmp_path / "episodes")}
    assert (
        subprocess.run([*base, "--out", str(tmp_path / "full")], capture_output=True, env=env, timeout=600).returncode
        == 0
    )
    proc = subprocess.Popen(
        [*base, "--out", str(tmp_path / "killed")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (tmp_path / "killed" / "metrics.csv").is_file():
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["steps"]
    assert 0 < done < 400, "the kill should land mid-run"
    assert (
        subprocess.run([*base, "--out", str(tmp_path / "killed")], capture_output=True, env=env, timeout=600).returncode
        == 0
    )
    a, b = (torch.load(tmp_path / r / "best.pt", weights_only=True) for r in ("full", "killed"))
    assert a["steps"] == b["steps"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    out = subprocess.run(
        [*FSV, "eval", str(tmp_path / "killed"), "--episodes", "60", "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"head", "dataset", "way", "shot", "episodes", "accuracy", "ci95"} <= set(result)
    assert (
        result["head"] == "protonet"
        and result["episodes"] == 60
        and result["shot"] == 1
        and 0 <= result["accuracy"] <= 1
    )
    direct = evaluate(tmp_path / "killed", episodes=60, device="cpu")
    assert direct.accuracy == pytest.approx(result["accuracy"]) and direct.ci95 == pytest.approx(result["ci95"])


@pytest.mark.slow
def test_seed_sweep_on_local_executor_and_mean_std(synthetic: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FSV_EPISODES": str(tmp_path / "episodes")}
    sweep = tmp_path / "sweep"
    args = [
        *FSV,
        "submit",
        "train-head",
        "protonet",
        "--store",
        str(synthetic / "store.zarr"),
        "--manifest",
        str(synthetic / "manifest.jsonl"),
        "--out",
        str(sweep),
        "--seeds",
        "2",
        "--executor",
        "local",
        "--folder",
        str(tmp_path / "jobs"),
        "--shot",
        "1",
        "--device",
        "cpu",
        "--set",
        "train_episodes=20",
        "--set",
        "val_every=10",
        "--set",
        "val_episodes=10",
        "--set",
        "head_args.projection_dim=8",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in sweep.iterdir()} == {"seed0", "seed1"}
    assert json.loads((sweep / "seed1" / "config.json").read_text())["config"]["seed"] == 1
    out = subprocess.run(
        [*FSV, "eval", str(sweep), "--episodes", "30", "--json", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    accs = [r["accuracy"] for r in result["runs"]]
    assert (
        result["seeds"] == 2
        and result["accuracy"] == pytest.approx(np.mean(accs))
        and result["std"] == pytest.approx(np.std(accs, ddof=1))
    )
