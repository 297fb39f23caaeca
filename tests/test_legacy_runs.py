"""Run folders written by an earlier fsv (``tests/data/legacy_runs``, made by ``make.py`` at the
commit its README names) resume and evaluate to the numbers that fsv gave: configuration keys that
were renamed since are migrated when the folder is read."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from fsv.heads.engine.run_folder import REPEATED_COLUMNS
from fsv.heads.evaluation import evaluate_folder
from fsv.heads.tasks import load_run, train

LEGACY = Path(__file__).parent / "data" / "legacy_runs"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


def digest(path: Path) -> str:
    state = torch.load(path, weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].float().numpy().tobytes())
    return h.hexdigest()


def without_repeated_columns(text: str) -> str:
    """metrics.csv ``text`` without the columns the run folder migration drops
    (:data:`fsv.heads.engine.run_folder.REPEATED_COLUMNS`), rows otherwise as they were."""
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [n for n in rows[0] if n not in REPEATED_COLUMNS]
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    w.writeheader()
    w.writerows({k: row[k] for k in names} for row in rows)
    return out.getvalue()


def legacy_run(kind: str, tmp_path: Path) -> Path:
    """A copy of the legacy run ``kind`` whose data paths point at the copied stores."""
    shutil.copytree(LEGACY / "data", tmp_path / "data")
    run = tmp_path / kind
    shutil.copytree(LEGACY / kind, run)
    record = json.loads((run / "config.json").read_text())
    data = tmp_path / "data" / ("rec" if kind == "recognition" else "loc")
    record["data"] = {"manifest": str(run / "manifest.jsonl"), "stores": [str(data / "store.zarr")]}
    (run / "config.json").write_text(json.dumps(record, indent=2))
    return run


@pytest.mark.parametrize("kind", ["recognition", "wtal", "common"])
def test_a_legacy_run_resumes_and_evaluates_the_same(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSV_EPISODES", str(tmp_path / "episodes"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the folders were written: float sums depend on the thread count
    try:
        check_legacy_run(kind, tmp_path)
    finally:
        torch.set_num_threads(threads)


def check_legacy_run(kind: str, tmp_path: Path) -> None:
    run = legacy_run(kind, tmp_path)
    _, cfg, source = load_run(run)
    train(cfg, source, run, device="cpu")
    expected = EXPECTED[kind]
    assert (run / "metrics.csv").read_text() == without_repeated_columns(expected["metrics"])
    assert digest(run / "last.pt") == expected["last"] and digest(run / "best.pt") == expected["best"]
    result = evaluate_folder(run, device="cpu")
    result.pop("episode_file", None)
    assert result == expected["eval"]
