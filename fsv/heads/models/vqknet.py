"""VQK-Net: video-specific query-key attention for weakly-supervised temporal action localization
(Wang & Katsaggelos; paper ``shared/papers/vqknet_weakly_supervised_tal.md``).

The authors' code is not public. Where the paper is silent we follow the lineage it builds on:
CO2-Net (Hong et al., MM 2021; Section IV's THUMOS14 settings are those of CO2-Net's released
script), HAM-Net (Islam et al., AAAI 2021) and W-TALC (Paul et al., ECCV 2018). This module was
written from the papers. CO2-Net's released code was read only to confirm the conventions cited
below, and none of it was copied.

Pipeline for a batch ``x`` ``[B, T, D]`` (I3D RGB features, then flow; ``D = 2048``)::

    X_rgb, X_f = x[..., :D/2], x[..., D/2:]                                 (Sec. III-B)
    s_rgb, s_f = sigmoid(conv-LReLU-conv-LReLU-conv(X_*))   [B, T]           (Sec. III-C)
    s = (s_rgb + s_f) / 2                                   [B, T]
    X_hat = conv(LReLU(conv(X)))                            [B, T, D]        (Sec. III-C)
    Q_1 = LN(Q_init + f_h(Q_init, Q_init, Q_init))          [C+1, D]         (Eqs. 1-3, Fig. 3a)
    Q_hat = LN(Q_1 + f_h(Q_1, X_hat, X_hat))                [B, C+1, D]
    K_hat = conv(X_hat)                                     [B, T, D]
    A = psi(Q_hat, K_hat) = Q_hat K_hat^T / sqrt(D)         [B, T, C+1]      (Eqs. 6-7; stored
                                                                              time-major, the last
                                                                              column = background)
    A_hat = s (x) A                                         [B, T, C+1]      (Sec. III-F)

Training objective (Eq. 14), ``L = L_VCLS + alpha L_QS + L_ML + beta L_G + L_CAS + gamma L_SP``:

* ``L_VCLS = L^A + L^A_hat``: top-k MIL (Eqs. 8-10), ``k = max(1, T // m)``. The normalised target is
  ``[y, 1]`` on ``A`` (background always present) and ``[y, 0]`` on ``A_hat`` (background suppressed).
* ``L_QS``: query similarity (Eqs. 4-5), cosine distance of the queries of one class between videos
  that share it.
* ``L_ML``: mutual learning (Eq. 11, CO2-Net), each stream's attention the detached target of the other.
* ``L_G``: guide loss (Eq. 13, HAM-Net), ``1 - a - s_*`` with ``a`` the background column of
  ``softmax_classes(A)``.
* ``L_CAS``: co-activity similarity (W-TALC) on ``X_hat`` and ``A_hat``.
* ``L_SP``: sparsity (Eq. 12, STPN) of ``s_rgb``, ``s_f`` and ``s``.

Inference (Sec. III-G, :meth:`VQKNet.detect`): classes whose video score (Eqs. 8-9 on ``A_hat``) is at
least 0.2; proposals are the runs of ``s > theta`` for ``theta`` in 0.1, 0.18, ..., 0.9; each is
scored per class by the outer-inner contrast (AutoLoc) on ``A_hat``; then soft-NMS per class.

Choices where the paper is silent
---------------------------------
1. **Layer sizes.** The per-stream attention is CO2-Net's attention branch: convolutions of kernel
   3, 3 and 1 (widths 512, 512, 1), LeakyReLU(0.2), dropout 0.5 after the first activation. CO2-Net
   also drops out the final logit before the sigmoid; we do not. CO2-Net's cross-modal consensus
   module is left out because VQK-Net does not describe one. The fusion
   convolutions have kernels 1 then 3, and the key convolution has kernel 1. These are the kernels of
   CO2-Net's fusion and classifier layers, which VQK-Net's fusion and key/query-key attention
   replace. Dropout 0.7 (CO2-Net's ``dropout_ratio``) acts after the fusion activation and before
   the key convolution.
2. **Query learner.** Eqs. 1-3 define one head with ``D x D`` matrices and no bias, scaled by
   ``1/sqrt(D)``. Each attention is followed by a residual connection and LayerNorm (Fig. 3a, the
   Transformer decoder). There is no feed-forward sub-layer, because the paper lists none.
   ``Q_init ~ N(0, 1)``.
3. **Norms are taken per segment.** The L1 and squared-L2 norms of Eqs. 11-13 are divided by ``T``
   (a mean over segments), and every loss is a mean over the videos of the batch. This is what
   CO2-Net does, and the paper reuses CO2-Net's weights (``beta = gamma = 0.8``, weight 1 on
   ``L_ML`` and ``L_CAS``), which were tuned for these means. Raw sums over ``T = 500`` would be
   500 times larger.
4. **L_QS over the mini-batch.** Eq. 4 defines ``V_k`` over the training set, which no batch can
   hold. As with W-TALC's pair losses, ``V_k`` is taken within the batch, and the sampler guarantees
   ``min_pairs`` pairs sharing a class. ``k`` runs over all ``C + 1`` classes, the background
   included (every video contains it, Eq. 10). Pairs are unordered, matching ``binom(|V_k|, 2)``.
   A class with fewer than two videos adds 0, but still counts in the ``1 / (C+1)`` average.
5. **L_CAS over every pair sharing a class.** W-TALC's loss is used as published, with margin 0.5,
   attention ``softmax_T`` of the class column of ``A_hat``, and low-attention features weighted by
   ``(1 - attention) / (T - 1)``. W-TALC and CO2-Net apply it only to the first three consecutive
   pairs of the batch, relying on the sampler's ordering. Here every pair ``i < j`` of the batch is
   used for every class the two videos share, averaged over those (pair, class) terms, so the loss
   does not depend on the batch order. It is 0 when no pair shares a class.
6. **A_hat = s (x) A** exactly as in the paper. CO2-Net subtracts the per-step minimum over classes
   before multiplying by ``s``.
7. **Video scores** (:meth:`VQKNet.video_scores`): Eqs. 8-9 on ``A_hat`` with the training ``k``,
   softmax over ``C + 1`` classes, background dropped. CO2-Net's test code uses ``k = T // 10``.
8. **Proposals.** Every threshold ``0.1 + 0.08 i`` (``i = 0..10``) is used, as the paper states. CO2-Net
   uses ``linspace(0.1, 0.9, 10)``. A segment is kept when ``s > theta``. A segment found at several
   thresholds enters the pool once. The lineage keeps every copy, and soft-NMS then decays the
   copies to at most 3.6% of their score. The outer-inner score of a proposal ``[t_s, t_e)`` of length
   ``L`` is ``mean(A_hat[t_s:t_e, c]) - mean(A_hat[outer, c]) + 0.2 * p_c``. The outer region is
   ``ceil(0.25 L)`` steps on each side, clipped to the video, and its mean is 0 when it is empty.
   0.25 is AutoLoc's inflation. The ``0.2 * p_c`` term is HAM-Net's and CO2-Net's ``gamma_oic``,
   with ``p_c`` the video score.
9. **Soft-NMS "with an IoU threshold of 0.7".** The lineage calls ``soft_nms(proposals, 0.7,
   sigma=0.3)``, whose default rule is Gaussian, so the 0.7 is never read. The paper's numbers come
   from that Gaussian rule, so we apply Gaussian soft-NMS with ``sigma = 0.3`` to each class's
   proposals (:func:`fsv.metrics.soft_nms`), keeping every proposal, as the lineage does. Negative
   outer-inner scores are therefore decayed towards 0, again as in the lineage.
10. **No class fallback.** When no class reaches the threshold the video has no detections. The
    lineage would keep the top class, but the paper discards every class under the threshold.
11. CO2-Net's temporal average pooling for ActivityNet is not used, because the paper does not
    mention it.

Training preset and sources
---------------------------
:data:`PRESET` holds the THUMOS14 values; :data:`DATASET_PRESETS` holds the per-dataset overrides.

* ``optimizer="adam"``, ``lr=5e-5``, ``weight_decay=1e-3`` (THUMOS14); ``lr=3e-5``,
  ``weight_decay=5e-4`` (ActivityNet): Sec. IV-A.
* ``batch_videos=10`` with ``min_pairs=3`` pairs sharing a class, and ``num_segments`` ``T = 500``
  (THUMOS14) or ``60`` (ActivityNet): Sec. IV-A.
* ``alpha=5`` (THUMOS14) or ``10`` (ActivityNet), ``beta=0.8``, ``gamma=0.8``, and ``topk_m`` ``m = 7``
  (THUMOS14), ``4`` (ActivityNet1.2) or ``6`` (ActivityNet1.3): Sec. IV-A.
* ``train_iterations=5000`` (THUMOS14) and ``22000`` (ActivityNet), and ``val_every=200``: the
  paper is silent. These come from CO2-Net's released training scripts (``--max-iter``, and the
  ``--interval`` default). Its THUMOS14 script has exactly the paper's lr, weight decay, ``k = 7``
  and ``T = 500``. Its ActivityNet1.2 script has the paper's lr, weight decay (the default) and
  ``T = 60``.
* ``dropout=0.7``, ``attention_dropout=0.5``, ``co_activity_margin=0.5``: CO2-Net and W-TALC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import WtalHead
from fsv.heads.models.registry import register_head
from fsv.metrics import soft_nms

PRESET: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 5e-5,
    "weight_decay": 1e-3,
    "batch_videos": 10,
    "min_pairs": 3,
    "train_iterations": 5000,
    "num_segments": 500,
    "val_every": 200,
    "alpha": 5.0,
    "beta": 0.8,
    "gamma": 0.8,
    "topk_m": 7,
    "dropout": 0.7,
    "attention_dropout": 0.5,
    "co_activity_margin": 0.5,
}
"""THUMOS14 training values (Sec. IV-A; the module docstring lists each value's source)."""

_ACTIVITYNET: dict[str, Any] = {
    "lr": 3e-5,
    "weight_decay": 5e-4,
    "num_segments": 60,
    "train_iterations": 22000,
    "alpha": 10.0,
}

DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "thumos14": {
        "lr": 5e-5,
        "weight_decay": 1e-3,
        "num_segments": 500,
        "train_iterations": 5000,
        "alpha": 5.0,
        "topk_m": 7,
    },
    "activitynet12": {**_ACTIVITYNET, "topk_m": 4},
    "activitynet13": {**_ACTIVITYNET, "topk_m": 6},
    "activitynet": {**_ACTIVITYNET, "topk_m": 6},
}
"""Per-dataset overrides of :data:`PRESET` (Sec. IV-A). ActivityNet1.2 and 1.3 differ only in ``m``.
The family key ``activitynet`` carries the ActivityNet1.3 value ``m = 6``; ActivityNet1.2 needs
``activitynet12`` (``m = 4``)."""

ATTENTION_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 + 0.08 * i, 2) for i in range(11))
"""Thresholds on ``s`` for proposals: 0.1 to 0.9 in steps of 0.08 (Sec. IV-A)."""


@dataclass
class VQKOutput:
    """What :meth:`VQKNet.forward` returns for ``x`` ``[B, T, D]`` (``S`` streams, ``C`` classes).

    * ``cas`` ``[B, T, C+1]``: the T-CAM ``A`` of Eq. 7 (logits, before any softmax). The last
      column is the background.
    * ``suppressed_cas`` ``[B, T, C+1]``: ``A_hat = s (x) A`` (Sec. III-F).
    * ``attention`` ``[B, T]``: the foreground probability ``s`` in (0, 1), the mean over streams.
    * ``stream_attention`` ``[B, S, T]``: ``s_rgb`` and ``s_f`` (one row when ``S = 1``).
    * ``queries`` ``[B, C+1, D]``: the video-specific class queries ``Q_hat`` (Sec. III-D).
    * ``keys`` ``[B, T, D]``: the video key ``K_hat``.
    * ``features`` ``[B, T, D]``: the fused features ``X_hat``.
    """

    cas: torch.Tensor
    suppressed_cas: torch.Tensor
    attention: torch.Tensor
    stream_attention: torch.Tensor
    queries: torch.Tensor
    keys: torch.Tensor
    features: torch.Tensor


def topk_count(num_steps: int, m: int) -> int:
    """``k = max(1, floor(T / m))`` of Eq. 8."""
    return max(1, num_steps // m)


def video_logits(cas: torch.Tensor, m: int) -> torch.Tensor:
    """Eq. 8: the mean of the ``k = max(1, T // m)`` largest values over time of each class,
    ``[B, T, C+1] -> [B, C+1]``."""
    return cas.topk(topk_count(cas.shape[1], m), dim=1).values.mean(dim=1)


def topk_mil_loss(cas: torch.Tensor, target: torch.Tensor, m: int) -> torch.Tensor:
    """Eqs. 8-10: the cross-entropy between the normalised target ``[B, C+1]`` and the softmax over
    classes of the top-k video logits of ``cas`` ``[B, T, C+1]``, averaged over the batch. A video
    whose target is all zero adds 0."""
    target = target / target.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(target.dtype).eps)
    return -(target * F.log_softmax(video_logits(cas, m), dim=-1)).sum(dim=-1).mean()


def query_similarity_loss(queries: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eqs. 4-5: ``queries`` ``[B, C+1, D]``, ``labels`` ``[B, C+1]`` multi-hot (background
    included). This is the mean over the ``C + 1`` classes of the mean cosine distance between the
    class's queries of every unordered pair of videos holding it. A class held by fewer than two
    videos adds 0."""
    q = F.normalize(queries, dim=-1)
    distance = 1.0 - torch.einsum("icd,jcd->cij", q, q)  # [C+1, B, B]
    member = labels.t() > 0  # [C+1, B]
    upper = torch.ones(q.shape[0], q.shape[0], dtype=torch.bool, device=q.device).triu(diagonal=1)
    pairs = member[:, :, None] & member[:, None, :] & upper  # [C+1, B, B], i < j
    per_class = (distance * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)
    return per_class.mean()


def co_activity_loss(features: torch.Tensor, cas: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """W-TALC's co-activity similarity loss over every pair of videos ``i < j`` sharing a class.

    ``features`` ``[B, T, D]``, ``cas`` ``[B, T, C]`` (the action columns of ``A_hat``), ``labels``
    ``[B, C]``. With ``a = softmax_T(cas)``, the high- and low-attention features are
    ``H = X^T a`` and ``L = X^T (1 - a) / (T - 1)``, both ``[B, C, D]``. For a shared class ``c``
    the term is ``0.5 [d(H_i, H_j) - d(H_i, L_j) + margin]_+ + 0.5 [d(H_i, H_j) - d(L_i, H_j) +
    margin]_+``, with ``d`` the cosine distance. The loss is the mean over the (pair, class) terms,
    or 0 when no pair shares a class.
    """
    steps = features.shape[1]
    a = F.softmax(cas, dim=1)
    high = F.normalize(torch.einsum("btd,btc->bcd", features, a), dim=-1)
    low = F.normalize(torch.einsum("btd,btc->bcd", features, (1.0 - a) / max(steps - 1, 1)), dim=-1)
    d_hh = 1.0 - torch.einsum("icd,jcd->ijc", high, high)  # [B, B, C]
    d_hl = 1.0 - torch.einsum("icd,jcd->ijc", high, low)  # d(H_i, L_j)
    hinge = 0.5 * (F.relu(d_hh - d_hl + margin) + F.relu(d_hh - d_hl.transpose(0, 1) + margin))
    upper = torch.ones(labels.shape[0], labels.shape[0], device=labels.device).triu(diagonal=1)
    shared = (labels > 0).float()
    weight = shared[:, None, :] * shared[None, :, :] * upper[:, :, None]  # [B, B, C]
    return (hinge * weight).sum() / weight.sum().clamp_min(1.0)


class HeadAttention(nn.Module):
    """Eqs. 1-3: ``f_h(Q, K, V) = softmax_rows((Q W_Q)(K W_K)^T / sqrt(D)) (V W_V) W_O`` with
    ``W_* in R^{D x D}``; ``[..., N_q, D]``, ``[..., N_k, D]`` -> ``[..., N_q, D]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim, bias=False)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.w_q(q) @ self.w_k(k).transpose(-1, -2) * self.scale, dim=-1)
        return self.w_o(weights @ self.w_v(v))


class QueryLearner(nn.Module):
    """Sec. III-D, Fig. 3a: ``C + 1`` learnable queries ``Q_init`` ``[C+1, D]``, self-attention
    with residual connection and LayerNorm (``Q_1``), then cross-attention on the video features with
    residual connection and LayerNorm. ``X_hat`` ``[B, T, D]`` -> ``Q_hat`` ``[B, C+1, D]``."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.initial = nn.Parameter(torch.randn(num_queries, dim))
        self.self_attention = HeadAttention(dim)
        self.self_norm = nn.LayerNorm(dim)
        self.cross_attention = HeadAttention(dim)
        self.cross_norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        q0 = self.initial
        q1 = self.self_norm(q0 + self.self_attention(q0, q0, q0))
        q1 = q1.expand(features.shape[0], -1, -1)
        return self.cross_norm(q1 + self.cross_attention(q1, features, features))


def stream_attention_branch(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """Sec. III-C: three temporal convolutions with LeakyReLU in between and a sigmoid,
    ``[B, in_dim, T] -> [B, 1, T]`` in (0, 1) (layer sizes: CO2-Net, see the module docstring)."""
    return nn.Sequential(
        nn.Conv1d(in_dim, hidden, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Dropout(dropout),
        nn.Conv1d(hidden, hidden, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv1d(hidden, 1, 1),
        nn.Sigmoid(),
    )


@register_head(
    "vqknet",
    preset=PRESET,
    description="VQK-Net: video-specific class queries (self + cross attention) against a video key; T-CAM, top-k MIL, query similarity",
    task="wtal",
    dataset_presets=DATASET_PRESETS,
    preferred_spec="i3d-rgb+flow",
    preferred_datasets=("thumos14",),
)
class VQKNet(WtalHead):
    """VQK-Net on snippet features ``x`` ``[B, T, feature_dim]`` with ``num_classes`` actions.

    ``streams`` is 2 for RGB and flow concatenated in that order (each stream gets its own attention
    branch) or 1 for a single-stream store. ``alpha``, ``beta`` and ``gamma`` are the weights of
    Eq. 14. ``topk_m`` is ``m`` of Eq. 8. ``dropout`` acts on the fused features,
    ``attention_dropout`` inside the attention branches. ``co_activity_margin`` is W-TALC's margin.
    ``attention_dim`` is the width of the attention branches.
    """

    def __init__(
        self,
        feature_dim: int = 2048,
        num_classes: int = 20,
        *,
        streams: int = 2,
        alpha: float = 5.0,
        beta: float = 0.8,
        gamma: float = 0.8,
        topk_m: int = 7,
        dropout: float = 0.7,
        attention_dropout: float = 0.5,
        co_activity_margin: float = 0.5,
        attention_dim: int = 512,
    ) -> None:
        super().__init__()
        if streams not in (1, 2) or feature_dim % streams:
            raise FsvInputError(f"vqknet: streams must be 1 or 2 and divide feature_dim={feature_dim}, got {streams}")
        if topk_m < 1:
            raise FsvInputError(f"vqknet: topk_m must be at least 1, got {topk_m}")
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.streams = streams
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.topk_m = topk_m
        self.co_activity_margin = co_activity_margin
        self.stream_attention = nn.ModuleList(
            stream_attention_branch(feature_dim // streams, attention_dim, attention_dropout) for _ in range(streams)
        )
        self.fusion = nn.Sequential(
            nn.Conv1d(feature_dim, feature_dim, 1),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Conv1d(feature_dim, feature_dim, 3, padding=1),
        )
        self.query_learner = QueryLearner(num_classes + 1, feature_dim)
        self.key = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(feature_dim, feature_dim, 1))

    def forward(self, x: torch.Tensor) -> VQKOutput:
        """``x`` ``[B, T, feature_dim]`` -> :class:`VQKOutput` (Sec. III-C to III-E)."""
        if x.ndim != 3 or x.shape[-1] != self.feature_dim or x.shape[1] < 1:
            raise FsvInputError(f"vqknet: x must be [B, T, {self.feature_dim}] with T >= 1, got {tuple(x.shape)}")
        channels = x.transpose(1, 2)  # [B, D, T]
        parts = channels.chunk(self.streams, dim=1)  # RGB first, then flow
        stream_attention = torch.cat(
            [branch(p) for branch, p in zip(self.stream_attention, parts, strict=True)], dim=1
        )  # [B, S, T]
        s = stream_attention.mean(dim=1)  # [B, T]
        features = self.fusion(channels)  # [B, D, T]
        keys = self.key(features).transpose(1, 2)  # [B, T, D]
        features = features.transpose(1, 2)  # [B, T, D]
        queries = self.query_learner(features)  # [B, C+1, D]
        cas = keys @ queries.transpose(1, 2) / math.sqrt(self.feature_dim)  # Eqs. 6-7, [B, T, C+1]
        return VQKOutput(
            cas=cas,
            suppressed_cas=s.unsqueeze(-1) * cas,
            attention=s,
            stream_attention=stream_attention,
            queries=queries,
            keys=keys,
            features=features,
        )

    def loss(self, out: VQKOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 14 for ``labels`` ``[B, C]`` multi-hot. Returns the total (``loss``) and each term by name:
        ``vcls`` (``= vcls_cas + vcls_suppressed``), ``query_similarity``, ``mutual``, ``guide``,
        ``co_activity`` and ``sparsity``. The terms are unweighted. ``mutual`` is 0 with
        one stream."""
        batch, _, classes_bg = out.cas.shape
        if labels.shape != (batch, classes_bg - 1):
            raise FsvInputError(f"vqknet: labels must be [{batch}, {classes_bg - 1}], got {tuple(labels.shape)}")
        y = labels.to(out.cas.dtype)
        with_background = torch.cat([y, y.new_ones(batch, 1)], dim=1)
        without_background = torch.cat([y, y.new_zeros(batch, 1)], dim=1)
        vcls_cas = topk_mil_loss(out.cas, with_background, self.topk_m)  # Eq. 10 on A
        vcls_suppressed = topk_mil_loss(out.suppressed_cas, without_background, self.topk_m)  # on A_hat
        query_similarity = query_similarity_loss(out.queries, with_background)  # Eq. 4
        if self.streams == 2:  # Eq. 11
            s_rgb, s_f = out.stream_attention.unbind(dim=1)
            mutual = 0.5 * (F.mse_loss(s_rgb, s_f.detach()) + F.mse_loss(s_f, s_rgb.detach()))
        else:
            mutual = out.cas.new_zeros(())
        attentions = [*out.stream_attention.unbind(dim=1), out.attention]  # s_rgb, s_f, s
        background = torch.softmax(out.cas, dim=-1)[..., -1]  # a of Eq. 13, [B, T]
        guide = torch.stack([(1.0 - background - s).abs().mean() for s in attentions]).mean()  # Eq. 13
        sparsity = torch.stack([s.abs().mean() for s in attentions]).mean()  # Eq. 12
        co_activity = co_activity_loss(out.features, out.suppressed_cas[..., :-1], y, self.co_activity_margin)
        vcls = vcls_cas + vcls_suppressed
        total = vcls + self.alpha * query_similarity + mutual + self.beta * guide + co_activity + self.gamma * sparsity
        return {
            "loss": total,
            "vcls": vcls,
            "vcls_cas": vcls_cas,
            "vcls_suppressed": vcls_suppressed,
            "query_similarity": query_similarity,
            "mutual": mutual,
            "guide": guide,
            "co_activity": co_activity,
            "sparsity": sparsity,
        }

    def video_scores(self, out: VQKOutput) -> torch.Tensor:
        """Video-level class probabilities ``[B, C]`` for the class threshold (Sec. III-G): Eqs. 8-9
        on ``A_hat``, softmax over the ``C + 1`` classes, background column dropped."""
        return torch.softmax(video_logits(out.suppressed_cas, self.topk_m), dim=-1)[:, :-1]

    @torch.no_grad()
    def detect(
        self,
        out: VQKOutput,
        *,
        class_threshold: float = 0.2,
        attention_thresholds: Sequence[float] = ATTENTION_THRESHOLDS,
        oic_inflation: float = 0.25,
        oic_gamma: float = 0.2,
        nms_sigma: float = 0.3,
    ) -> list[tuple[int, int, float, int]]:
        """Detections of ONE video (``B == 1``): ``(start_step, end_step_exclusive, score, class)``
        with ``class`` in ``0..C-1``, sorted by descending score.

        Sec. III-G: the classes whose :meth:`VQKNet.video_scores` ``p_c`` is at least
        ``class_threshold`` are kept. The runs of ``s`` above each of ``attention_thresholds`` form the
        proposals. Proposal ``[t_s, t_e)`` scores ``outer_inner(A_hat[:, c]) + oic_gamma * p_c`` for class
        ``c``. Each class's proposals then go through Gaussian soft-NMS (``nms_sigma``). See the module
        docstring, items 7-10.
        """
        if out.cas.shape[0] != 1:
            raise FsvInputError(f"vqknet detect takes one video, got a batch of {out.cas.shape[0]}")
        probabilities = self.video_scores(out)[0].float().cpu().numpy()  # [C]
        classes = np.flatnonzero(probabilities >= class_threshold)
        proposals = attention_proposals(out.attention[0].float().cpu().numpy(), attention_thresholds)
        if not len(classes) or not proposals:
            return []
        cas = out.suppressed_cas[0, :, :-1].float().cpu().numpy()  # [T, C]
        segments = np.asarray(proposals, dtype=np.float64)
        detections: list[tuple[int, int, float, int]] = []
        for c in classes:
            scores = [
                outer_inner_score(cas[:, c], s, e, oic_inflation) + oic_gamma * float(probabilities[c])
                for s, e in proposals
            ]
            keep, kept_scores = soft_nms(segments, np.asarray(scores), sigma=nms_sigma, threshold=-np.inf)
            detections.extend(
                (proposals[i][0], proposals[i][1], float(v), int(c)) for i, v in zip(keep, kept_scores, strict=True)
            )
        detections.sort(key=lambda d: -d[2])
        return detections


def attention_proposals(attention: np.ndarray, thresholds: Sequence[float]) -> list[tuple[int, int]]:
    """Class-agnostic proposals (Sec. III-G): the maximal runs of ``attention > theta`` ``[T]`` for
    each ``theta``, as ``(start, end_exclusive)``. Each distinct segment appears once, in order of
    threshold, then of start."""
    seen: dict[tuple[int, int], None] = {}
    for theta in thresholds:
        edges = np.diff(np.concatenate([[0], (attention > theta).astype(np.int8), [0]]))
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            seen.setdefault((int(start), int(end)), None)
    return list(seen)


def outer_inner_score(scores: np.ndarray, start: int, end: int, inflation: float) -> float:
    """AutoLoc's outer-inner contrast of ``[start, end)`` on the per-step class scores ``[T]``.
    The result is the inner mean minus the mean of ``ceil(inflation * length)`` steps on each side,
    clipped to the video. The outer mean is 0 when no outer step exists."""
    pad = math.ceil(inflation * (end - start))
    outer = np.concatenate([scores[max(0, start - pad) : start], scores[end : min(len(scores), end + pad)]])
    return float(scores[start:end].mean() - (outer.mean() if outer.size else 0.0))
