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
    np.testing.assert_allclose(
        temporal_iou(np.array([0, 10]), np.array([[0, 10], [5, 15], [10, 20], [2, 12]])), [1, 1 / 3, 0, 8 / 12]
    )


@pytest.mark.parametrize(
    ("preds", "expected"),
    [
        (
            {"v1": [(0, 10, 0.9, "jump"), (20, 30, 0.8, "jump")], "v2": [(5, 15, 0.7, "run")]},
            {"jump": 1.0, "run": 1.0},
        ),  # perfect
        (
            {"v1": [(0, 10, 0.9, "jump"), (0, 10, 0.8, "jump")]},
            {"jump": 0.5, "run": 0.0},
        ),  # duplicate: TP then FP; run missed
        (
            {"v1": [(50, 60, 0.9, "jump"), (0, 10, 0.5, "jump")]},
            {"jump": 0.25, "run": 0.0},
        ),  # FP ranked first: P=1/2 at R=1/2
        ({"v1": [(2, 12, 0.9, "jump"), (20, 30, 0.8, "jump")]}, {"jump": 1.0, "run": 0.0}),  # shifted, tIoU 0.67 >= 0.5
        (
            {"v2": [(5, 15, 0.9, "jump")], "v1": [(20, 30, 0.1, "jump")]},
            {"jump": 0.25, "run": 0.0},
        ),  # wrong video is a false positive
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
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3])) == pytest.approx(
        1 / 3 + 1 / 3 * 2 / 3
    )


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
    gt = {
        "database": {
            v: {"subset": "test", "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs]}
            for v, segs in GT.items()
        }
    }
    gt["database"]["other"] = {"subset": "validation", "annotations": [{"segment": [0, 1], "label": "jump"}]}
    pred = {
        "results": {
            "v1": [
                {"segment": [2, 12], "score": 0.9, "label": "jump"},
                {"segment": [20, 30], "score": 0.8, "label": "jump"},
            ],
            "v2": [{"segment": [5, 15], "score": 0.5, "label": "run"}],
        }
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "score",
            "detections",
            "--gt",
            str(tmp_path / "gt.json"),
            "--pred",
            str(tmp_path / "pred.json"),
            "--subset",
            "test",
            "--tiou",
            "0.5:0.7:0.1",
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["map"] == {"0.5": pytest.approx(1.0), "0.6": pytest.approx(1.0), "0.7": pytest.approx((0.25 + 1.0) / 2)}
    (tmp_path / "bad.json").write_text('{"results": {"v1": [{"segment": [1]}]}}')
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "score",
            "detections",
            "--gt",
            str(tmp_path / "gt.json"),
            "--pred",
            str(tmp_path / "bad.json"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "bad.json" in bad.stderr


# ---- official ActivityNet semantics (see tests/test_anet_parity.py for the comparison with its code)


def test_ties_rank_as_the_official_reversed_argsort() -> None:
    """Tied scores rank as ``np.argsort(scores)[::-1]`` ranks them (not in file order)."""
    gt = {"v1": [(0.0, 10.0, "jump")]}
    preds = {"v1": [(50, 60, 0.5, "jump"), (0, 10, 0.5, "jump")]}  # FP then TP, same score
    first = int(np.argsort(np.array([0.5, 0.5]))[::-1][0])
    assert detection_map(gt, preds, np.array([0.5]))["ap"]["jump"] == [1.0 if first == 1 else 0.5]


def test_zero_length_segments_match_as_in_the_official_code() -> None:
    """Two identical zero-length segments have tIoU 0/0 = NaN there, which is not ``< threshold``: a TP."""
    r = detection_map({"v1": [(5.0, 5.0, "jump")]}, {"v1": [(5.0, 5.0, 0.9, "jump")]}, np.array([0.5, 0.9]))
    assert r["ap"]["jump"] == [1.0, 1.0]


def test_predictions_outside_the_subset_are_false_positives(tmp_path: Path) -> None:
    from fsv.detections import score_files

    gt = {
        "database": {
            "v1": {"subset": "test", "annotations": [{"segment": [0, 10], "label": "jump"}]},
            "val1": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "jump"}]},
        }
    }
    pred = {
        "results": {
            "val1": [{"segment": [0, 10], "score": 0.9, "label": "jump"}],
            "v1": [{"segment": [0, 10], "score": 0.5, "label": "jump"}],
            "nowhere": [{"segment": [0, 10], "score": 0.1, "label": "jump"}],
        }
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    # FP (validation video), TP, FP (video absent from the database): P = 0, 1/2, 1/3 at R = 0, 1, 1
    assert score_files(tmp_path / "gt.json", tmp_path / "pred.json", np.array([0.5]), "test")["ap"]["jump"] == [
        pytest.approx(0.5)
    ]
    assert score_files(tmp_path / "gt.json", tmp_path / "pred.json", np.array([0.5]), "test", blocked={"val1"})["ap"][
        "jump"
    ] == [1.0]


# ---- THUMOS14 ambiguous segments

AMB_PREDS = {"v1": [(42, 48, 0.9, "jump"), (0, 10, 0.8, "jump"), (20, 30, 0.7, "jump")], "v2": [(5, 15, 0.6, "run")]}


@pytest.mark.parametrize("rule", ["thumos14", "wtalc"])
def test_ambiguous_false_positive_is_removed(rule: str) -> None:
    # without: jump ranks FP, TP, TP -> P = 0, 1/2, 2/3 at R = 0, 1/2, 1 -> AP = 2/3; run AP = 1
    plain = detection_map(GT, AMB_PREDS, np.array([0.5]))
    assert plain["ap"]["jump"] == [pytest.approx(2 / 3)] and plain["map"]["0.5"] == pytest.approx(5 / 6)
    # [42, 48] lies inside the ambiguous [40, 50] of v1: ignored -> TP, TP -> AP 1
    r = detection_map(GT, AMB_PREDS, np.array([0.5]), ambiguous={"v1": np.array([[40.0, 50.0]])}, ambiguous_rule=rule)
    assert r["ap"]["jump"] == [1.0] and r["map"]["0.5"] == 1.0
    # an ambiguous segment elsewhere, or one that only touches the detection ([48, 50]), changes nothing
    for amb in ({"v1": np.array([[60.0, 70.0]])}, {"v2": np.array([[40.0, 50.0]])}, {"v1": np.array([[48.0, 50.0]])}):
        assert detection_map(GT, AMB_PREDS, np.array([0.5]), ambiguous=amb, ambiguous_rule=rule) == plain


def test_ambiguous_on_a_video_without_ground_truth() -> None:
    preds = {"v3": [(1, 4, 0.95, "run")], "v2": [(5, 15, 0.6, "run")]}
    assert detection_map(GT, preds, np.array([0.5]))["ap"]["run"] == [pytest.approx(0.5)]  # FP then TP
    assert detection_map(GT, preds, np.array([0.5]), ambiguous={"v3": [[0, 5]]})["ap"]["run"] == [1.0]


def test_ambiguous_rules_differ_on_true_positives() -> None:
    """THUMOS14's toolkit keeps a true positive that overlaps an ambiguous segment; W-TALC drops it."""
    preds = {"v1": [(0, 10, 0.9, "jump"), (20, 30, 0.8, "jump")]}
    amb = {"v1": np.array([[8.0, 12.0]])}
    assert detection_map(GT, preds, np.array([0.5]), ambiguous=amb, ambiguous_rule="thumos14")["ap"]["jump"] == [1.0]
    # W-TALC: only (20, 30) is scored -> P = 1 at R = 1/2 -> AP 1/2
    assert detection_map(GT, preds, np.array([0.5]), ambiguous=amb, ambiguous_rule="wtalc")["ap"]["jump"] == [0.5]
    with pytest.raises(ValueError, match="ambiguous_rule"):
        detection_map(GT, preds, np.array([0.5]), ambiguous=amb, ambiguous_rule="other")


def test_ambiguous_thumos14_rule_is_per_threshold() -> None:
    """(2, 12) has tIoU 2/3 with (0, 10): a TP at 0.5 (kept although it overlaps [11, 14]), a FP at 0.7 (ignored)."""
    preds = {"v1": [(2, 12, 0.9, "jump"), (20, 30, 0.8, "jump")]}
    assert detection_map(GT, preds, np.array([0.5, 0.7]))["ap"]["jump"] == [1.0, pytest.approx(0.25)]  # at 0.7: FP, TP
    r = detection_map(GT, preds, np.array([0.5, 0.7]), ambiguous={"v1": np.array([[11.0, 14.0]])})
    assert r["ap"]["jump"] == [1.0, 0.5]  # at 0.7 only the TP is ranked: P = 1 at R = 1/2


def test_score_files_reads_ambiguous_segments(tmp_path: Path) -> None:
    from fsv.detections import score_files

    db = {
        v: {"subset": "test", "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs]}
        for v, segs in GT.items()
    }
    db["v1"]["ambiguous"] = [[40, 50]]
    (tmp_path / "gt.json").write_text(json.dumps({"database": db}))
    pred = {
        v: [{"segment": [s, e], "score": sc, "label": lab} for s, e, sc, lab in dets] for v, dets in AMB_PREDS.items()
    }
    (tmp_path / "pred.json").write_text(json.dumps({"results": pred}))
    args = (tmp_path / "gt.json", tmp_path / "pred.json", np.array([0.5]), "test")
    assert score_files(*args)["map"]["0.5"] == 1.0  # on by default when the file has them
    assert score_files(*args, ambiguous=False)["map"]["0.5"] == pytest.approx(5 / 6)


def test_thumos14_annotations_carry_ambiguous_segments() -> None:
    from fsv.detections import load_ambiguous
    from fsv.pipeline.manifests.resources import resource_path

    path = resource_path("annotations", "thumos14.json")
    amb = load_ambiguous(path, "test")
    assert (
        len(amb) == 36 and sum(len(a) for a in amb.values()) == 96
    )  # THUMOS14 test: 96 "Ambiguous" instances in 36 videos
    assert amb["video_test_0000278"].tolist() == [[0.0, 1.4], [95.7, 97.2]]
    assert load_ambiguous(path, "validation") == {}
