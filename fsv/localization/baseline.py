"""The random-proposal baseline: what mAP looks like when segments carry no information.

Each scored item (video or episode) gets ``count`` segments with uniform random centres inside its
window, uniform random lengths up to half the window and uniform random scores, labelled with the
item's true classes (an oracle on labels, so the baseline isolates localization). Localization
heads are expected to be far above it.
"""

from __future__ import annotations

import numpy as np

from fsv.localization.tasks import Scored


def random_proposals(scored: Scored, *, count: int = 20, seed: int = 0) -> Scored:
    """``scored`` with its predictions replaced by random proposals."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, (lo, hi) in scored.windows.items():
        labels = sorted({lab for _, _, lab in scored.ground_truth.get(key, [])})
        dets = []
        for label in labels:
            centre = rng.uniform(lo, hi, count)
            half = rng.uniform(0, (hi - lo) / 4, count)
            for c, h, p in zip(centre, half, rng.random(count), strict=True):
                dets.append((float(max(lo, c - h)), float(min(hi, c + h)), float(p), label))
        preds[key] = dets
    return Scored(preds, scored.ground_truth, scored.ambiguous, scored.windows, scored.items, scored.extra)
