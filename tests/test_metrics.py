"""Detection mAP, tIoU and NMS against hand-computed cases, and ``fsv score detections``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.metrics import (
    accuracy_ci,
    detection_map,
    interpolated_ap,
    nms,
    soft_nms,
    temporal_iou,
)

GT = {"v1": [(0.0, 10.0, "jump"), (20.0, 30.0, "jump")], "v2": [(5.0, 15.0, "run")]}


def test_temporal_iou() -> None:
    np.testing.assert_allclose(temporal_iou(np.array([0, 10]), np.array([[0, 10], [5, 15], [10, 20], [2, 12]])), [1, 1 / 3, 0, 8 / 12])


@pytest.mark.parametrize(
    ("preds", "expected"),
    [
        ({"v1": [(0, 10, 0.9, "jump"), (20, 30, 0.8, "jump")], "v2": [(5, 15, 0.7, "run")]}, {"jump": 1.0, "run": 1.0}),  # perfect
        ({"v1": [(0, 10, 0.9, "jump"), (0, 10, 0.8, "jump")]}, {"jump": 0.5, "run": 0.0}),  # duplicate: TP then FP; run missed
        ({"v1": [(50, 60, 0.9, "jump"), (0, 10, 0.5, "jump")]}, {"jump": 0.25, "run": 0.0}),  # FP ranked first: P=1/2 at R=1/2
        ({"v1": [(2, 12, 0.9, "jump"), (20, 30, 0.8, "jump")]}, {"jump": 1.0, "run": 0.0}),  # shifted, tIoU 0.67 >= 0.5
        ({"v2": [(5, 15, 0.9, "jump")], "v1": [(20, 30, 0.1, "jump")]}, {"jump": 0.25, "run": 0.0}),  # wrong video is a false positive
    ],
)
def test_map_hand_computed(preds: dict, expected: dict[str, float]) -> None:
    r = detection_map(GT, preds, np.array([0.5]))
    assert r["ap"] == {k: [pytest.approx(v)] for k, v in expected.items()}
    assert r["map"]["0.5"] == pytest.approx(np.mean(list(expected.values())))


def test_map_thresholds_and_envelope() -> None:
    r = detection_map(GT, {"v1": [(2, 12, 0.9, "jump")]}, np.array([0.5, 0.7]))
    assert r["ap"]["jump"] == [pytest.approx(0.5), 0.0] and r["average_map"] == pytest.approx((0.25 + 0.0) / 2)
    # precision 1, 0.5, 2/3 at recall 1/3, 1/3, 2/3: the envelope lifts the middle point
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3])) == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)


def test_nms_and_soft_nms() -> None:
    segs = np.array([[0, 10], [1, 11], [20, 30], [0, 9]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert nms(segs, scores, 0.5).tolist() == [0, 2]
    assert nms(segs, scores, 0.95).tolist() == [0, 1, 2, 3]
    keep, decayed = soft_nms(segs, scores, sigma=0.5)
    assert keep.tolist()[:2] == [0, 2] and decayed[0] == pytest.approx(0.9) and decayed[1] == pytest.approx(0.7)
    assert sorted(keep.tolist()) == [0, 1, 2, 3] and (np.diff(decayed) <= 0).all()


def test_accuracy_ci() -> None:
    mean, ci = accuracy_ci(np.array([1.0, 0.0, 1.0, 0.0]))
    assert mean == 0.5 and ci == pytest.approx(1.96 * 0.5 / 2)


def test_score_detections_cli(tmp_path: Path) -> None:
    gt = {"database": {v: {"subset": "test", "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs]} for v, segs in GT.items()}}
    gt["database"]["other"] = {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "jump"}]}
    pred = {"results": {"v1": [{"segment": [2, 12], "score": 0.9, "label": "jump"}, {"segment": [20, 30], "score": 0.8, "label": "jump"}],
                        "v2": [{"segment": [5, 15], "score": 0.5, "label": "run"}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    proc = subprocess.run([sys.executable, "-m", "fsv", "score", "detections", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                           "--subset", "test", "--tiou", "0.5:0.7:0.1", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["map"] == {"0.5": pytest.approx(1.0), "0.6": pytest.approx(1.0), "0.7": pytest.approx((0.25 + 1.0) / 2)}
    (tmp_path / "bad.json").write_text('{"results": {"v1": [{"segment": [1]}]}}')
    bad = subprocess.run([sys.executable, "-m", "fsv", "score", "detections", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "bad.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "bad.json" in bad.stderr
