"""R-C3D's proposal subnet on cached snippet features: the support-agnostic part of the few-shot
common localization heads (CDC-CA, prototype matching).

R-C3D (Xu, Das, Saenko, ICCV 2017; values from its public config ``lib/tdcnn/config.py`` and
``experiments/activitynet/td_cnn_end2end.yml``), as Yang et al. (ECCV 2020) and CDC-CA (ICCV 2023)
use it. No code was copied.

Everything is in *steps* (one cached snippet feature = one step); a segment ``[s, e)`` is float and
end exclusive.

* Subnet: conv1d(D -> hidden, k = 3) + ReLU, then per step and anchor scale an actionness logit and
  ``(dc, dl)`` offsets.
* Anchors: ``K = len(anchor_scales)`` per step, centred on the step's middle ``t + 0.5``, lengths in
  steps, laid out step-major (index ``t * K + k``). Offsets are R-C3D's twin parameterisation
  ``dc = (c* - c_a) / l_a``, ``dl = log(l* / l_a)``.
* Anchor labels (binary cross-entropy): positive if tIoU >= ``pos_iou`` (0.7) with an action
  instance or the best anchor of one, negative if tIoU < ``neg_iou`` (0.3) with all; ``batch`` = 64
  sampled anchors (R-C3D's ActivityNet config), at most ``fg_fraction`` = half positive
  (``RPN_FG_FRACTION``). Boundary regression: smooth-L1 (beta 1) summed over the two offsets and
  averaged over the positive sampled anchors.
* Proposals: the decoded anchors clipped to ``[0, T]``, top ``pre_nms_top`` (6000) by actionness, NMS
  ``nms_iou`` (0.7), then the top ``top`` (the caller's: 2000 in training, 300 per window at test).
* Pooling: the mean or the maximum of the snippet features over the steps a segment overlaps
  (:func:`mean_over_steps`, :func:`max_over_steps`), for the heads' proposal features.
* Windows (inference, Yang et al. 2020 Sec. 4.1 / CDC-CA Sec. 4.1): a query longer than the largest
  window is covered by windows of each size with 75 % overlap (the last one flush with the end);
  each window's proposals are mapped to query coordinates and all go through NMS ``nms_iou`` again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fsv.errors import FsvInputError
from fsv.metrics import nms

FRAME_RATES: dict[str, dict[str, object]] = {
    "thumos14": {"frame_fps": 25.0},
    "activitynet": {"frame_fps": 3.0},
}
"""The common-localization heads' per-dataset presets: the frame rate in which the papers count
frames (the 768-frame query limit and the 512/768-frame windows), R-C3D's 25 fps for THUMOS14 and
3 fps for ActivityNet (the rate of the Yang et al. 2020 benchmark frames)."""

#: Largest ``dl`` applied when decoding (as in Detectron's ``log(1000 / 16)``), against overflow.
MAX_DL = math.log(1000.0 / 16.0)


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """tIoU of every segment of ``a [N, 2]`` with every one of ``b [M, 2]`` -> ``[N, M]``."""
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return inter / union.clamp(min=1e-9)


def encode_offsets(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """R-C3D twin offsets of ``targets [N, 2]`` from ``boxes [N, 2]`` -> ``[N, 2]`` = (dc, dl)."""
    length = (boxes[:, 1] - boxes[:, 0]).clamp(min=1e-6)
    t_length = (targets[:, 1] - targets[:, 0]).clamp(min=1e-6)
    dc = ((targets[:, 0] + targets[:, 1]) - (boxes[:, 0] + boxes[:, 1])) / (2 * length)
    return torch.stack([dc, torch.log(t_length / length)], dim=1)


def decode_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_offsets`: ``boxes [N, 2]`` moved by ``offsets [N, 2]`` -> ``[N, 2]``."""
    length = boxes[:, 1] - boxes[:, 0]
    centre = (boxes[:, 0] + boxes[:, 1]) / 2 + offsets[:, 0] * length
    half = length * torch.exp(offsets[:, 1].clamp(max=MAX_DL)) / 2
    return torch.stack([centre - half, centre + half], dim=1)


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Starts of windows of ``window`` steps over ``length`` steps with ``overlap`` (0.75 = stride of a
    quarter window); the last window ends at ``length``."""
    stride = max(1, round(window * (1 - overlap)))
    starts = list(range(0, max(length - window, 0) + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def max_over_steps(features: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
    """Max of ``features [T, D]`` over the steps that each ``[a, b)`` of ``bounds [P, 2]`` overlaps
    (step ``t`` covers ``[t, t + 1)``) -> ``[P, D]``; zeros where a range lies outside the sequence.

    Range maxima come from a sparse table (level ``k`` holds the maxima of every run of ``2^k``
    steps; a range is the max of two overlapping runs), built only up to the longest range asked
    for: one gather per level instead of one reduction per range."""
    t, d = features.shape
    starts = np.clip(np.floor(bounds[:, 0]), 0, t).astype(np.int64)
    ends = np.clip(np.ceil(bounds[:, 1]), 0, t).astype(np.int64)
    filled = np.flatnonzero(ends > starts)
    out = features.new_zeros(len(bounds), d)
    if not len(filled):
        return out
    levels = np.floor(np.log2(ends[filled] - starts[filled])).astype(np.int64)
    table = [features]
    for k in range(1, int(levels.max()) + 1):
        half = 1 << (k - 1)
        table.append(torch.maximum(table[-1][:-half], table[-1][half:]))
    for k in np.unique(levels).tolist():
        rows = filled[levels == k]
        first = torch.as_tensor(starts[rows], device=features.device)
        last = torch.as_tensor(ends[rows] - (1 << k), device=features.device)
        out = out.index_put(
            (torch.as_tensor(rows, device=features.device),), torch.maximum(table[k][first], table[k][last])
        )
    return out


def mean_over_steps(features: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
    """Mean of ``features [T, D]`` over the steps that each ``[a, b)`` of ``bounds [P, 2]`` overlaps
    (step ``t`` covers ``[t, t + 1)``) -> ``[P, D]``; zeros where a range lies outside the sequence.
    One prefix sum, in float64 (a float32 sum over a long query would lose the digits of its means)."""
    t, d = features.shape
    starts = torch.as_tensor(np.clip(np.floor(bounds[:, 0]), 0, t).astype(np.int64), device=features.device)
    ends = torch.as_tensor(np.clip(np.ceil(bounds[:, 1]), 0, t).astype(np.int64), device=features.device)
    prefix = torch.cat([features.new_zeros(1, d, dtype=torch.float64), features.double().cumsum(0)])
    count = (ends - starts).clamp(min=0)
    mean = (prefix[ends] - prefix[starts]) / count.clamp(min=1).unsqueeze(1)
    return (mean * (count > 0).unsqueeze(1)).to(features.dtype)


def inside_bounds(segments: torch.Tensor, length: int) -> np.ndarray:
    """``segments [P, 2]`` (steps) as the step ranges they pool over, ``[P, 2]`` float64: at least the
    step where each starts, inside a ``length``-step sequence."""
    s, e = segments.detach().double().cpu().numpy().T
    return np.stack([np.minimum(s, length - 1), np.maximum(e, np.floor(s) + 1)], axis=1)


class ProposalSubnet(nn.Module):
    """R-C3D proposal subnet on a feature sequence: ``[T, D]`` -> actionness ``[T*K]``, offsets
    ``[T*K, 2]``, with its anchors, labels, losses and proposals (module docstring)."""

    def __init__(
        self,
        feature_dim: int,
        hidden: int,
        anchor_scales: Sequence[float],
        *,
        pos_iou: float = 0.7,
        neg_iou: float = 0.3,
        batch: int = 64,
        fg_fraction: float = 0.5,
        pre_nms_top: int = 6000,
        nms_iou: float = 0.7,
    ) -> None:
        super().__init__()
        self.num_anchors = len(anchor_scales)
        self.pos_iou, self.neg_iou, self.batch, self.fg_fraction = pos_iou, neg_iou, batch, fg_fraction
        self.pre_nms_top, self.nms_iou = pre_nms_top, nms_iou
        self.register_buffer("anchor_scales", torch.tensor([float(s) for s in anchor_scales]), persistent=False)
        self.conv = nn.Conv1d(feature_dim, hidden, kernel_size=3, padding=1)
        self.actionness = nn.Conv1d(hidden, self.num_anchors, kernel_size=1)
        self.offsets = nn.Conv1d(hidden, 2 * self.num_anchors, kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[T, D]`` -> ``[T*K]``, ``[T*K, 2]``; or a batch of equal-length windows ``[B, T, D]`` ->
        ``[B, T*K]``, ``[B, T*K, 2]``."""
        batch = features if features.dim() == 3 else features.unsqueeze(0)
        h = F.relu(self.conv(batch.transpose(1, 2)))  # [B, hidden, T]
        logits = self.actionness(h).transpose(1, 2).reshape(len(batch), -1)  # [B, T*K]
        offsets = self.offsets(h).transpose(1, 2).reshape(len(batch), -1, 2)  # [B, T*K, 2]
        return (logits, offsets) if features.dim() == 3 else (logits[0], offsets[0])

    def anchors(self, length: int) -> torch.Tensor:
        """Anchors of a ``length``-step sequence: ``[length * K, 2]``, centred on ``t + 0.5``."""
        centres = torch.arange(length, device=self.anchor_scales.device, dtype=self.anchor_scales.dtype) + 0.5
        half = self.anchor_scales / 2
        return torch.stack([centres[:, None] - half, centres[:, None] + half], dim=-1).reshape(-1, 2)

    def propose(
        self, anchors: torch.Tensor, logits: torch.Tensor, offsets: torch.Tensor, length: int, top: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded ``anchors [A, 2]`` clipped to ``[0, length]``, top ``pre_nms_top`` by actionness
        ``logits [A]``, NMS ``nms_iou``, top ``top`` -> (segments ``[P, 2]``, actionness probabilities
        ``[P]``), detached."""
        boxes = decode_offsets(anchors, offsets.detach()).clamp(0, length)
        scores = logits.detach().sigmoid()
        valid = torch.nonzero(boxes[:, 1] > boxes[:, 0]).squeeze(1)
        valid = valid[scores[valid].argsort(descending=True)[: self.pre_nms_top]]
        keep = nms(boxes[valid].cpu().numpy(), scores[valid].cpu().numpy(), self.nms_iou)[:top]
        keep_t = valid[torch.as_tensor(keep, device=boxes.device)]
        return boxes[keep_t], scores[keep_t]

    def sample_anchors(self, anchors: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R-C3D anchor labels against ``actions [G, 2]`` and a sample of ``batch`` -> (indices ``[S]``,
        0/1 labels ``[S]``)."""
        label = torch.full((len(anchors),), -1, dtype=torch.long, device=anchors.device)
        if len(actions):
            iou = segment_iou(anchors, actions)  # [A, G]
            best = iou.max(dim=1).values
            label[best < self.neg_iou] = 0
            label[best >= self.pos_iou] = 1
            gt_best = iou.max(dim=0).values  # [G]: each action's best anchor is positive too
            label[((iou == gt_best[None]) & (gt_best[None] > 0)).any(dim=1)] = 1
        else:
            label[:] = 0
        pos = torch.nonzero(label == 1).squeeze(1)
        neg = torch.nonzero(label == 0).squeeze(1)
        pos = pos[torch.randperm(len(pos), device=pos.device)[: int(self.batch * self.fg_fraction)]]
        neg = neg[torch.randperm(len(neg), device=neg.device)[: self.batch - len(pos)]]
        index = torch.cat([pos, neg])
        return index, (label[index] == 1).float()

    def loss(
        self,
        anchors: torch.Tensor,
        logits: torch.Tensor,
        offsets: torch.Tensor,
        index: torch.Tensor,
        label: torch.Tensor,
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The support-agnostic terms (CDC-CA Sec. 3.4, "any activity") on the sampled anchors
        ``index [S]`` with ``label [S]``: binary cross-entropy of the actionness ``logits [A]`` and the
        smooth-L1 of the positives' ``offsets [A, 2]`` to their best-matching ``actions [G, 2]`` ->
        (``L_cls^ag``, ``L_reg^ag``)."""
        cls = F.binary_cross_entropy_with_logits(logits[index], label) if len(index) else logits.sum() * 0
        pos = index[label > 0.5]
        reg = offsets.sum() * 0
        if len(pos):
            match = segment_iou(anchors[pos], actions).argmax(dim=1)
            target = encode_offsets(anchors[pos], actions[match])
            reg = F.smooth_l1_loss(offsets[pos], target, reduction="sum") / len(pos)
        return cls, reg

    @torch.no_grad()
    def windowed(
        self, query: torch.Tensor, top: int, windows: Sequence[int] = (), overlap: float = 0.75
    ) -> torch.Tensor:
        """Test-time proposals of ``query [T, D]`` -> ``[P, 2]`` (steps): the top ``top`` of the whole
        query, or of each window when ``T`` exceeds the largest of ``windows`` (one subnet pass per
        window size), mapped to query coordinates and NMS'd again."""
        length = query.shape[0]
        spans = [(0, length)]
        if windows and length > max(windows):
            spans = [(s, s + w) for w in windows for s in window_starts(length, w, overlap)]
        boxes, scores = [], []
        for size in sorted({end - start for start, end in spans}):
            starts = [start for start, end in spans if end - start == size]
            logits, offsets = self(torch.stack([query[start : start + size] for start in starts]))
            anchors = self.anchors(size)
            for k, start in enumerate(starts):
                b, s = self.propose(anchors, logits[k], offsets[k], size, top)
                boxes.append(b + start)
                scores.append(s)
        proposals = torch.cat(boxes)
        if len(spans) > 1:
            keep = nms(proposals.cpu().numpy(), torch.cat(scores).cpu().numpy(), self.nms_iou)
            proposals = proposals[torch.as_tensor(keep, device=proposals.device)]
        return proposals

    @torch.no_grad()
    def step_actionness(self, query: torch.Tensor) -> torch.Tensor:
        """The support-agnostic actionness of each step of ``query [T, D]``: the probability of
        "any action" of the best anchor centred on that step, ``[T]`` (what proposals are drawn from)."""
        logits, _ = self(query)
        return logits.view(query.shape[0], -1).sigmoid().max(dim=1).values


def check_episode(query: torch.Tensor, supports: torch.Tensor, feature_dim: int, num_snippets: int) -> None:
    """A common-localization episode's shapes, ``query [T, D]`` and ``supports [L, N_S, D]``, or an
    input error naming the one that is not."""
    if query.dim() != 2 or query.shape[1] != feature_dim or query.shape[0] < 1:
        raise FsvInputError(f"query has shape {tuple(query.shape)}; expected [T, {feature_dim}]")
    if supports.dim() != 3 or supports.shape[1:] != (num_snippets, feature_dim):
        raise FsvInputError(f"supports have shape {tuple(supports.shape)}; expected [L, {num_snippets}, {feature_dim}]")
