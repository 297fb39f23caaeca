"""The figures of a report, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

matplotlib because it is the plotting library the field's code already uses (every paper's
figures, TensorBoard-free training scripts) and it renders to a PNG in-process without a
browser, a server or a JavaScript bundle: a report page stays one self-contained file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def training_curves(columns: dict[str, np.ndarray], x: str) -> bytes:
    """One panel per column of ``metrics.csv`` but ``x`` (loss, validation metric, learning rate...),
    each against ``x`` (episodes or steps); NaN rows (a column not logged at that row) are skipped."""
    plt = _pyplot()
    names = [k for k in columns if k != x] or [x]
    cols = 3 if len(names) > 2 else len(names)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        y = columns[name]
        keep = np.isfinite(y)
        ax.plot(columns[x][keep], y[keep], marker="." if keep.sum() < 30 else None, lw=1.4)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x, fontsize=9)
        if name.startswith("lr") and np.all(y[keep] > 0):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str]) -> bytes:
    """Row-normalised confusion matrix ``[C, C]`` (rows: true class, columns: predicted)."""
    plt = _pyplot()
    n = len(classes)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = min(max(4.0, 0.32 * n + 2.0), 16.0)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    fontsize = 8 if n <= 30 else 5
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class's queries")
    fig.tight_layout()
    return _png(fig)


def class_bars(
    values: dict[str, float], title: str, xlabel: str, reference: float | None = None, reference_label: str = ""
) -> bytes:
    """Horizontal bars, one per class in the given order, with an optional reference line (chance)."""
    plt = _pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(7.5, max(2.0, 0.24 * len(names) + 1.0)))
    y = np.arange(len(names))
    ax.barh(y, [values[k] for k in names], color="#4C72B0")
    ax.set_yticks(y, names, fontsize=8 if len(names) <= 40 else 5)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    if reference is not None:
        ax.axvline(reference, color="#C44E52", ls="--", lw=1.2, label=reference_label)
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def detection_timeline(
    title: str,
    window: tuple[float, float],
    truth: Sequence[tuple[float, float, str]],
    detections: Sequence[tuple[float, float, float, str]],
    curve: tuple[np.ndarray, np.ndarray] | None,
    curve_label: str,
) -> bytes:
    """Ground truth (top row) against the top detections (one row each, shaded by score), and the
    head's per-step curve (``(centres_s [T], values [T])``) under them, on one time axis."""
    plt = _pyplot()
    rows = 2 if curve is not None else 1
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 1.6 + 0.22 * (len(detections) + 1) + (1.6 if curve is not None else 0)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [max(1.0, 0.25 * (len(detections) + 1)), 1.0][:rows]},
    )
    ax = axes[0, 0]
    for s, e, label in truth:
        ax.add_patch(plt.Rectangle((s, 0.1), e - s, 0.8, color="#55A868"))
        ax.text(e, 0.5, f" {label}", va="center", fontsize=7)
    for k, (s, e, score, label) in enumerate(detections, start=1):
        ax.add_patch(
            plt.Rectangle((s, k + 0.1), e - s, 0.8, color="#4C72B0", alpha=0.35 + 0.65 * float(np.clip(score, 0, 1)))
        )
        ax.text(e, k + 0.5, f" {label} {score:.2f}", va="center", fontsize=7)
    ax.set_ylim(len(detections) + 1, 0)
    ax.set_yticks(
        [0.5, *[k + 0.5 for k in range(1, len(detections) + 1)]],
        ["ground truth", *[f"#{k}" for k in range(1, len(detections) + 1)]],
        fontsize=7,
    )
    ax.set_xlim(*window)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if curve is not None:
        cx = axes[1, 0]
        cx.plot(curve[0], curve[1], color="#DD8452", lw=1.2)
        for s, e, _ in truth:
            cx.axvspan(s, e, color="#55A868", alpha=0.15)
        cx.set_ylabel(curve_label, fontsize=8)
        cx.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return _png(fig)


def histogram(values: np.ndarray, title: str, xlabel: str) -> bytes:
    """A histogram of ``values`` (e.g. feature steps per video)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.hist(values, bins=min(40, max(5, len(values) // 2)), color="#4C72B0")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("videos")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
