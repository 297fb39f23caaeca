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
