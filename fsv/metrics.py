"""Evaluation metrics: few-shot accuracy with its 95% confidence interval; temporal localization mAP
(ActivityNet protocol, with THUMOS14 ambiguous segments)."""

from __future__ import annotations

import numpy as np


def accuracy_ci(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean of per-episode accuracies and the half-width of its 95% confidence interval,
    ``1.96 * std / sqrt(n)`` (population std, as the few-shot literature reports it)."""
    a = np.asarray(accuracies, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no episodes to average")
    return float(a.mean()), float(1.96 * a.std() / np.sqrt(a.size))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over runs (seeds); std is 0 for a single run."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def temporal_iou(segment: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """tIoU of one ``[start, end]`` against ``segments`` ``(n, 2)`` (seconds) -> ``(n,)``."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(segment[1], segments[:, 1]) - np.maximum(segment[0], segments[:, 0]), 0, None)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(segments: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by 1-D non-maximum suppression (highest score first; a segment is dropped when
    its tIoU with a kept one exceeds ``threshold``), in descending score order."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[temporal_iou(segments[i], segments[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def soft_nms(
    segments: np.ndarray, scores: np.ndarray, *, sigma: float = 0.5, threshold: float = 0.0, max_keep: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS (Bodla et al. 2017) in 1-D: repeatedly keep the best segment and decay the
    others' scores by ``exp(-tIoU^2 / sigma)``. Returns (indices, decayed scores) in the order kept,
    dropping scores at or below ``threshold``."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).copy()
    alive = list(range(len(s)))
    keep, kept_scores = [], []
    while alive and (max_keep is None or len(keep) < max_keep):
        best = max(alive, key=lambda k: (s[k], -k))
        if s[best] <= threshold:
            break
        keep.append(best)
        kept_scores.append(s[best])
        alive.remove(best)
        if alive:
            idx = np.asarray(alive)
            s[idx] *= np.exp(-(temporal_iou(segments[best], segments[idx]) ** 2) / sigma)
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the interpolated precision envelope, as the ActivityNet evaluation computes it."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


AMBIGUOUS_RULES = ("thumos14", "wtalc")


def _anet_tiou(start: float, end: float, segments: np.ndarray) -> np.ndarray:
    """tIoU of ``[start, end]`` against ``segments`` ``(n, 2)`` with the ActivityNet evaluation's
    arithmetic, operation for operation: ``0/0`` (two zero-length segments) stays NaN, as it does there
    (:func:`temporal_iou` maps it to 0 instead)."""
    inter = (np.minimum(end, segments[:, 1]) - np.maximum(start, segments[:, 0])).clip(0)
    union = (segments[:, 1] - segments[:, 0]) + (end - start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _overlaps(start: float, end: float, segments: np.ndarray | None) -> bool:
    """Whether ``[start, end]`` shares a positive length of time with any of ``segments`` (touching
    end points do not count)."""
    if segments is None or not len(segments):
        return False
    return bool(np.any(np.minimum(end, segments[:, 1]) - np.maximum(start, segments[:, 0]) > 0))


def _check_rule(ambiguous_rule: str) -> None:
    if ambiguous_rule not in AMBIGUOUS_RULES:
        raise ValueError(f"ambiguous_rule {ambiguous_rule!r}: expected one of {', '.join(AMBIGUOUS_RULES)}")


def class_average_precision(
    ground_truth: dict[str, np.ndarray],
    predictions: list[tuple[str, float, float, float]],
    tious: np.ndarray,
    *,
    ambiguous: dict[str, np.ndarray] | None = None,
    ambiguous_rule: str = "thumos14",
) -> np.ndarray:
    """AP of one class at each tIoU threshold, as ActivityNet's ``compute_average_precision_detection``
    computes it (github.com/activitynet/ActivityNet, ``Evaluation/eval_detection.py``).

    ``ground_truth``: video -> ``(n, 2)`` segments of this class; ``predictions``: ``(video, start,
    end, score)`` in file order. Predictions are ranked by ``np.argsort(scores)[::-1]``, exactly the
    official call, so tied scores come out in the same order as there (numpy's default sort is not
    stable and its tie order depends on the numpy build and the CPU's SIMD level; on a given machine
    it is the official one). Each prediction, at each threshold, takes the first not yet matched ground
    truth of its video in ``np.argsort(tiou)[::-1]`` order; it is a false positive once that order
    reaches a tIoU ``< threshold`` (a tIoU equal to the threshold matches), when all candidates are
    taken, or when its video has no ground truth of the class (whatever subset that video is in).
    AP is the area under the interpolated precision envelope (:func:`interpolated_ap`) with recall
    over all ground truths of the class; a class without predictions scores 0.

    ``ambiguous``: video -> ``(m, 2)`` segments that THUMOS14 marks "Ambiguous" (any class). A
    detection *overlaps* one when their intersection is longer than 0 s. With
    ``ambiguous_rule="thumos14"`` (the THUMOS14 toolkit, ``TH14evalDet.m`` / ``TH14eventdetpr``:
    "overlapping detections will be removed from the FP list") a detection that is a false positive at
    a threshold and overlaps an ambiguous segment of its video is left out of the ranking at that
    threshold (neither TP nor FP); true positives stay. With ``ambiguous_rule="wtalc"`` (W-TALC's
    ``detectionMAP.filter_segments``, kept by CO2-Net's ``proposal_methods.filter_segments``) every
    overlapping detection is removed before matching, true positives included (they test the overlap
    on the 16-frame feature grid, 25/16 units per second; fsv tests it in seconds).
    """
    _check_rule(ambiguous_rule)
    tious = np.asarray(tious, dtype=np.float64).reshape(-1)
    ap = np.zeros(len(tious))
    ambiguous = {v: np.asarray(a, dtype=np.float64).reshape(-1, 2) for v, a in ambiguous.items()} if ambiguous else None
    if ambiguous and ambiguous_rule == "wtalc":
        predictions = [p for p in predictions if not _overlaps(p[1], p[2], ambiguous.get(p[0]))]
    ground_truth = {v: np.asarray(g, dtype=np.float64).reshape(-1, 2) for v, g in ground_truth.items()}
    npos = sum(len(g) for g in ground_truth.values())
    if not predictions or npos == 0:
        return ap
    order = np.argsort(np.array([p[3] for p in predictions], dtype=np.float64))[::-1]
    tp = np.zeros((len(tious), len(order)))
    fp = np.zeros((len(tious), len(order)))
    ignorable = np.zeros(len(order), dtype=bool)
    matched: dict[str, np.ndarray] = {}
    for rank, i in enumerate(order):
        video, start, end, _ = predictions[i]
        if ambiguous and ambiguous_rule == "thumos14":
            ignorable[rank] = _overlaps(start, end, ambiguous.get(video))
        gt = ground_truth.get(video)
        if gt is None or not len(gt):
            fp[:, rank] = 1
            continue
        ious = _anet_tiou(float(start), float(end), gt)
        candidates = np.argsort(ious)[::-1]
        taken = matched.setdefault(video, np.zeros((len(tious), len(gt)), dtype=bool))
        for t, thr in enumerate(tious):
            for j in candidates:
                if ious[j] < thr:
                    break
                if not taken[t, j]:
                    taken[t, j] = True
                    tp[t, rank] = 1
                    break
            fp[t, rank] = 1 - tp[t, rank]
    for t in range(len(tious)):
        keep = ~(ignorable & (fp[t] > 0))
        tp_c, fp_c = np.cumsum(tp[t, keep]), np.cumsum(fp[t, keep])
        if tp_c.size:
            ap[t] = interpolated_ap(tp_c / (tp_c + fp_c), tp_c / float(npos))
    return ap


def detection_map(
    ground_truth: dict[str, list[tuple[float, float, str]]],
    predictions: dict[str, list[tuple[float, float, float, str]]],
    tious: np.ndarray,
    *,
    ambiguous: dict[str, np.ndarray] | None = None,
    ambiguous_rule: str = "thumos14",
) -> dict[str, object]:
    """mAP over the classes of ``ground_truth`` at each threshold of ``tious``, as ActivityNet's
    ``ANETdetection.evaluate`` computes it (see :func:`class_average_precision` for the matching).

    ``ground_truth``: video -> ``[(start, end, label)]``, the scored videos only; ``predictions``: video
    -> ``[(start, end, score, label)]`` in file order, every video kept (a prediction on a video
    without ground truth of its class, including a video outside the scored subset, is a false
    positive, as in the official code). Classes are the labels of ``ground_truth`` in order of first
    appearance (the official ``activity_index``); predictions of other labels are ignored (the official
    code raises ``KeyError`` on them). mAP is the plain mean of the per-class APs, so a class without
    predictions counts as 0. ``ambiguous`` / ``ambiguous_rule``: THUMOS14 ambiguous segments, see
    :func:`class_average_precision`; None scores as ActivityNet does.

    Returns ``{"map": {thr: mAP}, "average_map": mean over thresholds, "ap": {label: [AP per thr]}}``.
    """
    _check_rule(ambiguous_rule)
    tious = np.asarray(tious, dtype=np.float64).reshape(-1)
    gt_by_label: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for video, segs in ground_truth.items():
        for start, end, label in segs:
            gt_by_label.setdefault(label, {}).setdefault(video, []).append((start, end))
    preds_by_label: dict[str, list[tuple[str, float, float, float]]] = {label: [] for label in gt_by_label}
    for video, dets in predictions.items():
        for start, end, score, label in dets:
            if label in preds_by_label:
                preds_by_label[label].append((video, start, end, score))
    # (thresholds, classes), class columns in activity_index order, averaged along that axis as the official code does
    table = np.zeros((len(tious), len(gt_by_label)))
    for c, (label, gt) in enumerate(gt_by_label.items()):
        table[:, c] = class_average_precision(
            gt, preds_by_label[label], tious, ambiguous=ambiguous, ambiguous_rule=ambiguous_rule
        )
    maps = table.mean(axis=1) if gt_by_label else np.zeros(len(tious))
    return {
        "map": {f"{t:.2f}".rstrip("0").rstrip("."): float(m) for t, m in zip(tious, maps, strict=True)},
        "average_map": float(maps.mean()),
        "ap": {label: table[:, c].tolist() for c, label in enumerate(gt_by_label)},
    }
