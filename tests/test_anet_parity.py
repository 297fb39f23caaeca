"""``fsv score detections`` against results of the official ActivityNet evaluation on the same files.

``tests/data/anet_eval_golden.json`` holds small generated cases (classes without predictions, videos
without ground truth, predictions outside the subset, duplicates, tIoU exactly on a threshold,
zero-length segments, tied scores) with the per-threshold mAPs and per-class APs that
``ANETdetection`` (github.com/activitynet/ActivityNet, ``Evaluation/eval_detection.py``) gave; regenerate
it with ``bench/verify_anet_eval.py --official DIR --write-golden tests/data/anet_eval_golden.json``.

Tied values rank by ``np.argsort(...)[::-1]`` in both codes, whose tie order depends on the numpy build
and the CPU; a case whose recorded tie orders this machine does not reproduce is skipped (on such a
machine the official code would give other numbers too, and fsv would still agree with it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.detections import parse_tiou, score_files

GOLDEN = json.loads((Path(__file__).parent / "data" / "anet_eval_golden.json").read_text())
TOL = 1e-6


def _write(case: dict, folder: Path) -> tuple[Path, Path]:
    gt, pred = folder / "gt.json", folder / "pred.json"
    gt.write_text(json.dumps({"version": "x", "taxonomy": [], "database": case["gt"]}))
    pred.write_text(json.dumps({"version": "x", "external_data": {}, "results": case["pred"]}))
    return gt, pred


def _skip_unless_same_tie_order(case: dict) -> None:
    for probe in case["tie_probes"]:
        if np.argsort(np.asarray(probe["values"], dtype=np.float64))[::-1].tolist() != probe["order"]:
            pytest.skip(
                "this numpy/CPU orders tied values differently from the machine that recorded the official results"
            )


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_score_files_matches_official(case: dict, tmp_path: Path) -> None:
    _skip_unless_same_tie_order(case)
    gt, pred = _write(case, tmp_path)
    r = score_files(gt, pred, parse_tiou(case["tiou"]), case["subset"])
    expected = case["expected"]
    assert list(r["map"].values()) == pytest.approx(expected["map"], abs=TOL, rel=0)
    assert r["average_map"] == pytest.approx(expected["average_map"], abs=TOL, rel=0)
    assert set(r["ap"]) == set(expected["ap"])
    for label, ap in expected["ap"].items():
        assert r["ap"][label] == pytest.approx(ap, abs=TOL, rel=0), label


def test_cli_matches_official(tmp_path: Path) -> None:
    case = next(c for c in GOLDEN["cases"] if c["name"].startswith("outside-subset"))
    _skip_unless_same_tie_order(case)
    gt, pred = _write(case, tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "score",
            "detections",
            "--gt",
            str(gt),
            "--pred",
            str(pred),
            "--subset",
            case["subset"],
            "--tiou",
            case["tiou"],
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert list(r["map"].values()) == pytest.approx(case["expected"]["map"], abs=TOL, rel=0)
    assert r["average_map"] == pytest.approx(case["expected"]["average_map"], abs=TOL, rel=0)


def test_golden_covers_the_official_edge_cases() -> None:
    """The fixture exercises what distinguishes the official code (so a regression cannot hide)."""
    names = {c["name"].split("/")[0] for c in GOLDEN["cases"]}
    assert {"ties", "no-gt-videos", "outside-subset", "empty-class", "duplicates", "grid", "degenerate"} <= names
    outside = next(c for c in GOLDEN["cases"] if c["name"].startswith("outside-subset"))
    assert any(outside["gt"][v]["subset"] != outside["subset"] for v in outside["pred"] if v in outside["gt"])
    # at least one tie that the official order breaks otherwise than a stable descending sort (file order) would
    assert any(
        p["order"] != np.argsort(-np.asarray(p["values"]), kind="stable").tolist()
        for c in GOLDEN["cases"]
        for p in c["tie_probes"]
    )


def test_default_thresholds_are_the_official_ones() -> None:
    """``--tiou 0.5:0.95:0.05`` is ``np.linspace(0.5, 0.95, 10)`` bit for bit (0.8999999999999999, not 0.9)."""
    assert np.array_equal(parse_tiou("0.5:0.95:0.05"), np.linspace(0.5, 0.95, 10))
    assert np.array_equal(parse_tiou("0.1:0.7:0.1"), np.linspace(0.1, 0.7, 7))
    assert parse_tiou("0.3,0.5,0.7").tolist() == [0.3, 0.5, 0.7]
