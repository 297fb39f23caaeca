"""Evaluation metrics: few-shot accuracy with its 95% confidence interval (localization mAP joins later)."""

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


def soft_nms(segments: np.ndarray, scores: np.ndarray, *, sigma: float = 0.5, threshold: float = 0.0, max_keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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


def class_average_precision(ground_truth: dict[str, np.ndarray], predictions: list[tuple[str, float, float, float]], tious: np.ndarray) -> np.ndarray:
    """AP of one class at each tIoU threshold. ``ground_truth``: video -> ``(n, 2)`` segments;
    ``predictions``: ``(video, start, end, score)``. Predictions are matched greedily by descending
    score, each to the unmatched ground truth of highest tIoU (at least the threshold); a ground
    truth is matched at most once; predictions on videos without ground truth are false positives."""
    npos = sum(len(v) for v in ground_truth.values())
    ap = np.zeros(len(tious))
    if npos == 0 or not predictions:
        return ap
    order = np.argsort(-np.array([p[3] for p in predictions]), kind="stable")
    tp = np.zeros((len(tious), len(order)))
    fp = np.zeros((len(tious), len(order)))
    used = {v: np.zeros((len(tious), len(g)), dtype=bool) for v, g in ground_truth.items()}
    for rank, i in enumerate(order):
        video, start, end, _ = predictions[i]
        gt = ground_truth.get(video)
        if gt is None or not len(gt):
            fp[:, rank] = 1
            continue
        ious = temporal_iou(np.array([start, end]), gt)
        by_iou = np.argsort(-ious, kind="stable")
        for t, thr in enumerate(tious):
            for j in by_iou:
                if ious[j] < thr:
                    fp[t, rank] = 1
                    break
                if not used[video][t, j]:
                    tp[t, rank] = 1
                    used[video][t, j] = True
                    break
            else:
                fp[t, rank] = 1
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    for t in range(len(tious)):
        ap[t] = interpolated_ap(tp_c[t] / (tp_c[t] + fp_c[t]), tp_c[t] / npos)
    return ap


def detection_map(ground_truth: dict[str, list[tuple[float, float, str]]], predictions: dict[str, list[tuple[float, float, float, str]]], tious: np.ndarray) -> dict[str, object]:
    """mAP over the classes present in ``ground_truth`` at each threshold of ``tious``.

    ``ground_truth``: video -> ``[(start, end, label)]``; ``predictions``: video -> ``[(start, end,
    score, label)]``. Returns ``{"map": {thr: mAP}, "average_map": mean, "ap": {label: [AP per thr]}}``.
    """
    tious = np.asarray(tious, dtype=np.float64)
    labels = sorted({g[2] for segs in ground_truth.values() for g in segs})
    per_class: dict[str, np.ndarray] = {}
    for label in labels:
        gt = {v: np.array([[s, e] for s, e, lab in segs if lab == label]).reshape(-1, 2) for v, segs in ground_truth.items()}
        preds = [(v, s, e, sc) for v, segs in predictions.items() for s, e, sc, lab in segs if lab == label]
        per_class[label] = class_average_precision(gt, preds, tious)
    table = np.stack(list(per_class.values())) if per_class else np.zeros((1, len(tious)))
    maps = table.mean(axis=0)
    return {"map": {f"{t:.2f}".rstrip("0").rstrip("."): float(m) for t, m in zip(tious, maps, strict=True)},
            "average_map": float(maps.mean()), "ap": {k: v.tolist() for k, v in per_class.items()}}
