"""CDC-CA: few-shot common action localization (Lee, Jain, Yun, ICCV 2023), on cached snippet features.

Paper: ``shared/papers/cdcca_common_action_localization_iccv2023.md`` (equations restated in
``cdcca_reading_notes_zh.md``, whose numbering is the paper's minus one for Eqs. 2-7). The authors'
code is not public. Where the paper is silent we follow R-C3D (Xu, Das, Saenko, ICCV 2017: the
proposal subnet, anchors, anchor/proposal labelling and sampling, the twin parameterisation and the
smooth-L1 losses; values from its public config ``lib/tdcnn/config.py`` and
``experiments/activitynet/td_cnn_end2end.yml``) and Yang et al., "Localizing the common action among a
few videos", ECCV 2020 (the task, the support-agnostic + support-conditioned losses, the windowed
inference), on which the paper builds. No code was copied.

Everything is in *steps* (one cached snippet feature = one step); a segment ``[s, e)`` is float and
end exclusive. Features are rows here, so the paper's ``d x N`` matrices are our ``N x d``
tensors and ``X^T W Y`` becomes ``X W Y^T``.

Pipeline of one episode (query ``[T, D]``, supports ``[L, N_S, D]``)::

    proposal subnet h (R-C3D): conv1d(D->512, k=3) + ReLU, then per step and anchor scale an
        actionness logit and (dc, dl) offsets                      -> anchors / proposals [P, 2]
    temporal RoI pooling (mean: deviation 7) of the proposal and of its two contexts (deviation 4) -> [P, 3, D]
    one linear layer for the proposals and the support snippets (Sec. 3.2), plus a layer for the
        proposals' contexts that starts at zero; rows l2-normalised: X_Q [P, d], X_S^(l) [N_S, d]
    QtoS Context-CA, each support on its own (Eqs. 2-3):
        Lambda^(l) = X_Q W_QS X_S^(l)^T [P, N_S];  A^(l) = row-softmax(Lambda^(l))
        X~_S^(l) = g (N_S / P) A^(l)^T X_Q + X_S^(l)     (mass: deviation 1; gate g from 0: deviation 8)
    Dynamics-CA (Eqs. 4-6): X~_S'^(l) = conv1d_k(X~_S^(l)) [N_S-k+1, d] (one conv for all l);
        X~_S' = the tuples of ALL L supports [L(N_S-k+1), d]
        Lambda^(l) = X~_S' W_S'S X~_S^(l)^T;  Y~_S^(l) = (N_S / (L(N_S-k+1))) A^(l)^T X~_S' + X~_S^(l)
    StoQ Context-CA, all supports at once (Eq. 7): Y~_S [L N_S, d],
        Lambda = Y~_S W_SQ X_Q^T [L N_S, P];  X~_Q = (P / (L N_S)) A^T Y~_S + X_Q
    action classifier (Sec. 3.3): two parallel linear layers on X~_Q: logits [P, 2]
        (0 = background, 1 = common action, softmax) and offsets [P, 2]
    auxiliary relational module (training only): MLP on [X~_Q_i, mean of Y~_S, pseudo multi-hot]
        -> "similar" logit [P]
    loss, Eq. 9: L_cls^ag + L_reg^ag + L_cls^co + L_reg^co + L_aux + lambda L_rank (Eq. 8); the
        support-agnostic terms on every action instance of the query, of any class (Sec. 3.4), the
        support-conditioned ones on the episode class's instances, other classes' being hard negatives

In every cross-correlation (Eqs. 2, 5, 7) both sides' rows are l2-normalised (the paper says so for
Eq. 2; Eqs. 5 and 7 are "like eq. (2)"). ``W_QS`` and the linear layer are one parameter each, used
for every support (paper, after Eq. 2), and the linear layer also encodes the proposals: Sec. 3.2
encodes "the query proposals Q to X_Q and the support snippets S^(l) to X_S^(l), with a linear
layer". Sharing it is what makes the cross-correlations compare like with like from the start: two
independently initialised layers (an earlier fsv read the sentence so) map an action's features to
unrelated directions, and the correlation of a proposal with supports of its own class starts no
higher than with another class's (measured: the README's "Conditioning"). The ``W`` matrices start as
``attention_scale`` times the identity (deviation 5).

Ablations (the paper's Tables 2 and 3), constructor switches and so ``--set`` values: ``qtos=False``
and ``dynamics=False`` drop a stage (both: C-0), ``stoq=False`` drops Eq. 7 (the classifier then
never sees the supports), ``rank_weight=0`` and ``aux=False`` drop L_rank and the auxiliary
relational module (both: R-0), ``num_pseudo_classes`` is k (Table 6).

Where the paper is silent: R-C3D / Yang et al. conventions
-----------------------------------------------------------
* Anchors: ``K = len(anchor_scales)`` per step, centred on the step's middle ``t + 0.5``, lengths in
  steps. Offsets are R-C3D's twin parameterisation ``dc = (c* - c_a) / l_a``, ``dl = log(l* / l_a)``.
* Anchor labels (L_cls^ag, binary cross-entropy as the paper says): positive if tIoU >= 0.7 with an
  action instance of any class or the best anchor of one, negative if tIoU < 0.3 with all (Sec. 3.4:
  the support-agnostic part "predicts if the proposal contains any activity"); ``anchor_batch``
  = 64 sampled anchors (R-C3D ActivityNet config), at most half positive (``RPN_FG_FRACTION``).
  L_reg^ag: smooth-L1 on the positive sampled anchors.
* Proposals (training): the decoded anchors, clipped to ``[0, T]``, top ``pre_nms_top`` by actionness,
  NMS 0.7, top ``train_post_nms_top`` (2000, R-C3D), plus every action instance; then ``roi_batch`` =
  128 are sampled with at most 25% foreground (tIoU >= 0.5 with the episode class's instances),
  ``roi_hard_fraction`` = 25% hard negatives when the query holds other classes' instances
  (proposals at tIoU >= 0.5 with one of those and < 0.5 with the episode class's: deviation 6), the
  rest background. The batch size is fixed as in R-C3D.pytorch (on which Yang et al.'s code is
  built): a pool too small to fill it is drawn with replacement (R-C3D.pytorch always draws
  background with replacement).
* Proposals (test): top ``pre_nms_top`` (6000), NMS 0.7, top ``post_nms_top`` (300) per window.
* Proposal labels for L_cls^co (cross-entropy over the softmax), L_aux (binary cross-entropy, "similar"
  = foreground) and L_rank: foreground iff tIoU >= 0.5 with a ground truth. L_reg^co: smooth-L1 on
  foreground proposals, targets divided by R-C3D's ``(0.1, 0.2)`` (``TWIN_NORMALIZE_STDS``).
* Smooth-L1 (beta 1) summed over the two offsets and averaged over the positives.
* Proposal paths carry no gradient into the proposal subnet (features are cached, so the subnet and
  the CDC-CA branch share no layer; the subnet learns from the support-agnostic terms only).
* Inference (Sec. 4.1): a query longer than the largest window is covered by windows of each size in
  ``windows`` with 75% overlap (the last one flush with the end); each window's proposals are mapped to
  query coordinates, all of them go through NMS 0.7, and the survivors go together through CDC-CA and
  the action classifier; the regressed segments (clipped to ``[0, T]``) go through NMS 0.3, scored by
  the softmax probability of "common action". At most ``max_detections`` = 100 detections per
  query are kept, best first, as many as ActivityNet's proposal protocol allows per video (AR@100):
  a query holds a few instances, and a detection ranked below the first 100 can only add recall at
  a precision below the curve's, so the cap bounds the work and the results file and can lower mAP
  only by that tail.

Choices where neither gives a value (the paper's supplementary, which we do not have, may)
--------------------------------------------------------------------------------------------
* ``d = 512`` (R-C3D's width), ``num_snippets`` N_S = 8, ``tuple_kernel`` k = 3 (valid convolution, so
  N_S - k + 1 tuples), ``rank_weight`` lambda = 3, ``rank_temperature`` = 2 (softmax of logits / 2 in
  L_rank only), ``anchor_scales`` = 1 ... 96 steps (a 768-frame window is 96 steps of 8 frames).
  lambda = 3 rather than 1: with the final model, the margin between own and distractor supports
  is +45.3 / +62.5 (1- / 5-shot) against +0.0 / +53.9 with lambda = 1 on the hard synthetic
  tuning cell, and +37.1 / +42.9 against +28.7 / +30.7 on a held-out cell (README,
  "Conditioning"); L_rank is the loss that asks a hard negative (tIoU 0 with the episode's
  instances) to score far below a foreground proposal.
* Auxiliary relational module: Linear(2d + C, d) - ReLU - Linear(d, 1), C = ``num_pseudo_classes``
  (paper default 160). The support prototype is the mean of all rows of Y~_S.
* Temporal RoI pooling pools the raw snippet features (R-C3D pools the backbone's conv5b).
* Background proposals: every tIoU < 0.5. R-C3D's config also asks for tIoU >= 0.1, which would never
  sample the background far from the action, i.e. most of a single-instance query.
* Pairs of L_rank: all unordered pairs of sampled proposals with at least one foreground;
  ``Delta IoU`` uses each proposal's best tIoU with the ground truths.

Deviations and corrections
--------------------------
1. **Attention mass (Eqs. 3, 6, 7).** With the paper's row-wise soft-max every source row hands out
   unit mass over the targets, so a target receives N_src / N_tgt on average: in Eq. 3 (proposals
   to snippets) P / N_S, which grows with the number of proposals (128 in training, 300 per window
   and more when windows merge at test); in Eq. 6 L (N_S - k + 1) / N_S, which changes with the shot
   (3.75 at 5-shot, 0.75 at 1-shot); in Eq. 7 (support snippets to proposals) L N_S / P, which
   shrinks as proposals are added (0.31 at P = 128, 0.13 at 300, 0.04 at 1,000 for 5-shot: the
   classifier would be trained on one scale of the support term and tested on another). Every
   attended term is multiplied by N_tgt / N_src (:func:`attend`): the mass a target receives then
   averages one, and a target's term is the sources weighted by how much more than the average
   target each attends to it, at any number of proposals, windows or shots. The row-wise soft-max
   itself is the paper's and is kept: in Eq. 7 it makes the proposals compete for the supports'
   mass, so a proposal like the supports receives more of it than the others, which is what the
   (linear) action classifier reads; a soft-max per proposal would hand every proposal unit mass
   whatever its similarity.
2. **Eq. 5** reads ``X~_S^(l)T W X~_S^(l)``; the text ("between X~_S' and X~_S^(l)") and the shapes of
   Eq. 6 require ``X~_S'^T W_S'S X~_S^(l)``, which we use.
3. **Eq. 4** says ``k < L``; a kernel over the N_S snippets of one support needs ``k <= N_S``, which we
   require (L is the number of supports; with L = 1 the paper's bound would allow no kernel).
4. **Proposal features with context.** R-C3D pools one temporal bin, but from conv5b maps whose
   receptive field reaches past the proposal. Cached snippet features have no such context, so a
   proposal lying inside an action pools to the same vector as the whole action, and neither the
   classifier nor the regressor can tell them apart (our overfit test failed on 2 of 5 seeds that way).
   We therefore pool in SSN's three stages (Zhao et al., ICCV 2017): the starting context
   ``[s - l/2, s)``, the proposal ``[s, e)`` and the ending context ``[e, e + l/2)``. The proposal
   goes through the linear layer the support snippets go through; the two contexts through a second
   linear layer that starts at zero, so a proposal starts encoded exactly as a support snippet of
   the same feature would be, and what its context adds is learned.
5. **Sharp attention from the start.** The rows of Eqs. 2, 5 and 7 are unit vectors, so with ``W = I``
   (a natural start, the paper gives none) the correlations are cosines in [-1, 1] and the soft-max
   is nearly flat (largest / smallest weight about 1.25 with random weights): the support term is
   then almost the same for every proposal, an offset the classifier cannot use, and ``W`` grows
   slowly from there. The ``W`` start as ``attention_scale`` (10) times the identity, a temperature
   of 0.1 on the cosine, still learnable.
6. **Hard negatives.** Sec. 3.4 says what the classifier predicts, not how proposals are sampled;
   R-C3D samples background at random, and in a query holding another class's instances few random
   background proposals cover them, so a classifier that ignores the supports and scores "any
   action" loses little. ``roi_hard_fraction`` of every batch are proposals on the other classes'
   instances, labelled background (and "not similar" for the auxiliary module).
7. **Mean RoI pooling.** R-C3D max-pools its conv5b maps over a proposal; here the proposal is
   compared with support snippets that are means of their steps (Sec. 3.1 splits a support
   "uniformly into N_S snippets"), and an action whose pattern changes over its course (start,
   middle, end) max-pools to a mixture of its phases' extremes that matches none of them, while
   the noise's maxima add an offset that grows with the proposal's length. Every stage is pooled by
   the mean of its steps (``roi_pool="mean"``; ``"max"`` is R-C3D's).
8. **Query context enters the supports through a gate (Eq. 3).** QtoS adds to every support snippet
   the proposals weighted by their relevance; an untrimmed query's proposals are mostly background
   and other actions, so at full weight the supports take on the query's other content, and StoQ
   (Eq. 7) then attends to proposals like the query's rather than like the supports' action: on the
   support-control data every trained model with QtoS at full weight followed its supports less than
   the same model without it (README, "Conditioning"). The attended term of Eq. 3 is multiplied by
   a learnable scalar ``qtos_gate`` that starts at zero (ReZero, Bachlechner et al. 2021): the
   supports start as they are and take in as much query context as training finds useful (trained
   runs settle near 0.15-0.2). ``qtos_gate=False`` is the paper's Eq. 3 (with deviation 1).
9. **Standardized features** (the preset's ``standardize``, applied by the task to queries and
   supports: :class:`fsv.heads.data.common_episodes.Standardizer`). The ActivityNet C3D features the paper's
   benchmark uses are released PCA-reduced, i.e. centred; a store's raw features are not, and what
   every snippet shares then dominates every cosine of Eqs. 2, 5 and 7. Each dimension is
   standardized by the mean and standard deviation of the training classes' videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import CommonHead
from fsv.heads.models.registry import register_head
from fsv.heads.models.proposals import (
    FRAME_RATES,
    ProposalSubnet,
    check_episode,
    decode_offsets,
    encode_offsets,
    inside_bounds,
    max_over_steps,
    mean_over_steps,
    segment_iou,
)
from fsv.metrics import nms

#: R-C3D's ``TWIN_NORMALIZE_STDS``: the classifier's offset targets are divided by these.
REG_STD = (0.1, 0.2)

PRESET: dict[str, object] = {
    "standardize": True,
    "optimizer": "adam",
    "lr": 1e-4,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "train_episodes": 50000,
    "val_every": 2500,
    "shot": 5,
    "num_snippets": 8,
    "d": 512,
    "tuple_kernel": 3,
    "rank_weight": 3.0,
    "rank_temperature": 2.0,
    "anchor_scales": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96],
}
"""Training preset. The paper gives no optimiser (its Sec. 4 defers to the supplementary), so these are
choices: Adam at 1e-4 because every layer here starts from scratch on frozen features (R-C3D's SGD
1e-4 fine-tunes a pretrained backbone); ``weight_decay`` 5e-4 and ``momentum`` 0.9 (read only by SGD)
are R-C3D's solver values; one episode is one query with ``shot`` supports (R-C3D trains on one video
per iteration); 50,000 episodes validated every 2,500. The rest are constructor arguments."""


def temporal_roi_pool(features: torch.Tensor, segments: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Temporal RoI pooling in SSN's three stages (deviation 4 of the module docstring), by the mean
    (deviation 7) or R-C3D's max (``pool="max"``) over the steps of each stage.

    ``features [T, D]``, ``segments [P, 2]`` (steps) -> ``[P, 3, D]``: the starting context
    ``[s - l/2, s)``, the proposal ``[s, e)`` (at least one step) and the ending context
    ``[e, e + l/2)``, ``l = e - s``; a context outside the query pools to zeros.
    """
    s, e = segments.detach().double().cpu().numpy().T
    half = (e - s) / 2
    stages = [
        np.stack([s - half, s], axis=1),
        inside_bounds(segments, features.shape[0]),
        np.stack([e, e + half], axis=1),
    ]
    over = max_over_steps if pool == "max" else mean_over_steps
    return torch.stack([over(features, b) for b in stages], dim=1)


def cross_correlation(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eqs. 2, 5, 7: ``Lambda = source_n W target_n^T`` with l2-normalised rows.

    ``source [N_src, d]``, ``target [N_tgt, d]``, ``weight [d, d]`` -> ``[N_src, N_tgt]``.
    """
    return F.normalize(source, dim=-1) @ weight @ F.normalize(target, dim=-1).transpose(-1, -2)


def attend(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The attended term of Eqs. 3, 6, 7: ``(N_tgt / N_src) A^T source`` with ``A`` the row-wise
    soft-max of the cross-correlation: each source row spreads unit mass over the targets, so a
    target receives ``N_src / N_tgt`` on average, and the factor makes that one (deviation 1 of the
    module docstring). A target's term is then the sources weighted by how much more than the
    average target each one attends to it: independent of how many sources and targets there are.

    ``source [..., N_src, d]``, ``target [..., N_tgt, d]`` -> ``[..., N_tgt, d]``.
    """
    attention = cross_correlation(source, target, weight).softmax(dim=-1)
    return attention.transpose(-1, -2) @ source * (target.shape[-2] / source.shape[-2])


def pairwise_ranking_loss(
    co_logits: torch.Tensor, ious: torch.Tensor, positive: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Eq. 8: mean over pairs (i, j), at least one positive, of ``(dIoU_ij - dp_ij)^2``.

    ``co_logits [P, 2]`` (index 1 = common action), ``ious [P]`` (each proposal's tIoU with its
    ground truth), ``positive [P]`` bool. ``p = softmax(co_logits / temperature)[:, 1]``. Zero (with a
    graph) when no pair qualifies.
    """
    p = (co_logits / temperature).softmax(dim=-1)[:, 1]
    i, j = torch.triu_indices(len(p), len(p), offset=1, device=p.device)
    keep = positive[i] | positive[j]
    if not bool(keep.any()):
        return p.sum() * 0
    i, j = i[keep], j[keep]
    return ((ious[i] - ious[j]) - (p[i] - p[j])).pow(2).mean()


@dataclass
class CDCOutput:
    """What :meth:`CDCCA.forward` returns (all in steps, segments float and end exclusive).

    * ``anchors [A, 2]``: every anchor of the query, ``A = T * K``, index ``t * K + k``;
    * ``actionness [A]``: support-agnostic actionness logits of the anchors;
    * ``anchor_offsets [A, 2]``: their regressed (dc, dl);
    * ``proposals [P, 2]``: the proposals fed to CDC-CA (sampled in training, ``P = roi_batch``);
    * ``co_logits [P, 2]``: action classifier logits (0 = background, 1 = common action);
    * ``co_offsets [P, 2]``: the classifier's (dc, dl), in units of ``REG_STD``;
    * ``aux_logits [P]``: the auxiliary relational module's "similar" logits (``None`` without pseudo);
    * ``anchor_index [S]`` / ``anchor_label [S]``: the anchors sampled for the support-agnostic loss
      and their 0/1 labels (``None`` without ground truth);
    * ``actions [G + G', 2]``: every action instance of the query, the episode class's and the
      distractors', the targets of the support-agnostic loss (``None`` without ground truth).
    """

    anchors: torch.Tensor
    actionness: torch.Tensor
    anchor_offsets: torch.Tensor
    proposals: torch.Tensor
    co_logits: torch.Tensor
    co_offsets: torch.Tensor
    aux_logits: torch.Tensor | None = None
    anchor_index: torch.Tensor | None = None
    anchor_label: torch.Tensor | None = None
    actions: torch.Tensor | None = None


class CDCCrossAttention(nn.Module):
    """The three stages of CDC-CA (Sec. 3.2). Rows are features (the paper's columns)."""

    def __init__(
        self,
        feature_dim: int,
        d: int,
        tuple_kernel: int,
        *,
        attention_scale: float = 1.0,
        qtos: bool = True,
        dynamics: bool = True,
        stoq: bool = True,
        qtos_gate: bool = True,
    ) -> None:
        super().__init__()
        self.use_qtos, self.use_dynamics, self.use_stoq = qtos, dynamics, stoq
        self.encoder = nn.Linear(
            feature_dim, d
        )  # "a linear layer" (Sec. 3.2): support snippets -> X_S^(l), proposals -> X_Q
        self.context = nn.Linear(2 * feature_dim, d)  # the proposals' two contexts (deviation 4), starting at zero
        nn.init.zeros_(self.context.weight)
        nn.init.zeros_(self.context.bias)
        self.qtos_gate = (
            nn.Parameter(torch.zeros(())) if qtos_gate else None
        )  # Eq. 3's attended term, starting at zero (deviation 8)
        self.w_qs = nn.Parameter(attention_scale * torch.eye(d))  # W_{Q->S}, Eq. 2
        self.tuple_conv = nn.Conv1d(d, d, kernel_size=tuple_kernel)  # w_k, Eq. 4
        self.w_ss = nn.Parameter(attention_scale * torch.eye(d))  # W_{S'->S}, Eq. 5
        self.w_sq = nn.Parameter(attention_scale * torch.eye(d))  # W_{S->Q}, Eq. 7

    def encode(self, pooled: torch.Tensor, supports: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pooled [P, 3, D]`` (starting context, proposal, ending context), ``supports [L, N_S, D]``
        -> ``X_Q [P, d]``, ``X_S [L, N_S, d]``: the linear layer of Sec. 3.2 on the proposal and on
        every support snippet, plus the contexts' layer on the proposal's contexts; rows l2-normalised."""
        x_q = self.encoder(pooled[:, 1]) + self.context(pooled[:, [0, 2]].flatten(1))
        return F.normalize(x_q, dim=-1), F.normalize(self.encoder(supports), dim=-1)

    def qtos(self, x_q: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
        """QtoS Context-CA, Eqs. 2-3, each support on its own with the shared ``W_QS``, the attended
        term scaled by the learnable ``qtos_gate`` (deviation 8; 1 with ``qtos_gate=False``).

        ``x_q [P, d]``, ``x_s [L, N_S, d]`` -> ``X~_S [L, N_S, d]`` (``x_s`` itself when ablated).
        """
        if not self.use_qtos:
            return x_s
        source = x_q.unsqueeze(0).expand(x_s.shape[0], -1, -1)
        attended = attend(source, x_s, self.w_qs)
        return (attended if self.qtos_gate is None else self.qtos_gate * attended) + x_s

    def dynamics(self, x_s: torch.Tensor) -> torch.Tensor:
        """Dynamics-CA, Eqs. 4-6: every support attended by the tuple features of all supports.

        ``x_s [L, N_S, d]`` (X~_S) -> ``Y~_S [L, N_S, d]`` (``x_s`` itself when ablated).
        """
        if not self.use_dynamics:
            return x_s
        tuples = self.tuple_conv(x_s.transpose(1, 2)).transpose(1, 2)  # Eq. 4: [L, N_S - k + 1, d]
        source = tuples.reshape(1, -1, tuples.shape[-1]).expand(x_s.shape[0], -1, -1)  # X~_S' of all L
        return attend(source, x_s, self.w_ss) + x_s  # Eqs. 5-6

    def stoq(self, y_s: torch.Tensor, x_q: torch.Tensor) -> torch.Tensor:
        """StoQ Context-CA, Eq. 7, all supports at once: ``y_s [L, N_S, d]``, ``x_q [P, d]`` -> ``X~_Q [P, d]``
        (``x_q`` itself when ablated: the classifier then never sees the supports)."""
        if not self.use_stoq:
            return x_q
        return attend(y_s.reshape(-1, y_s.shape[-1]), x_q, self.w_sq) + x_q

    def forward(self, pooled: torch.Tensor, supports: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pooled [P, 3, D]`` proposal features (:func:`temporal_roi_pool`), ``supports [L, N_S, D]``
        -> ``X~_Q [P, d]``, ``Y~_S [L, N_S, d]``."""
        x_q, x_s = self.encode(pooled, supports)
        y_s = self.dynamics(self.qtos(x_q, x_s))
        return self.stoq(y_s, x_q), y_s


@register_head(
    "cdcca",
    preset=PRESET,
    description="CDC-CA: few-shot common action localization by context/dynamics cross-attention (Lee et al. ICCV 2023)",
    task="common",
    dataset_presets=FRAME_RATES,
    preferred_spec="c3d",
    preferred_datasets=("activitynet13", "thumos14"),
)
class CDCCA(CommonHead):
    """CDC-CA on cached snippet features (see the module docstring for equations, sources, choices).

    ``forward(query [T, D], supports [L, N_S, D], pseudo [C] | None, gt [G, 2] | None)`` ->
    :class:`CDCOutput`; ``loss(out, gt)`` -> Eq. 9 and its terms; ``detect(query, supports)`` ->
    detections ``[K, 2]`` and scores ``[K]``.
    """

    def __init__(
        self,
        feature_dim: int = 4096,
        num_pseudo_classes: int = 160,
        *,
        num_snippets: int = 8,
        d: int = 512,
        tuple_kernel: int = 3,
        rank_weight: float = 3.0,
        rank_temperature: float = 2.0,
        anchor_scales: Sequence[float] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96),
        proposal_hidden: int = 512,
        anchor_pos_iou: float = 0.7,
        anchor_neg_iou: float = 0.3,
        anchor_batch: int = 64,
        anchor_fg_fraction: float = 0.5,
        roi_batch: int = 128,
        roi_fg_fraction: float = 0.25,
        roi_hard_fraction: float = 0.25,
        fg_iou: float = 0.5,
        pre_nms_top: int = 6000,
        train_post_nms_top: int = 2000,
        post_nms_top: int = 300,
        proposal_nms: float = 0.7,
        detection_nms: float = 0.3,
        attention_scale: float = 10.0,
        qtos: bool = True,
        dynamics: bool = True,
        stoq: bool = True,
        aux: bool = True,
        qtos_gate: bool = True,
        roi_pool: str = "mean",
    ) -> None:
        super().__init__()
        if not 1 <= tuple_kernel <= num_snippets:
            raise FsvInputError(f"tuple_kernel must be in 1..num_snippets={num_snippets}, got {tuple_kernel}")
        if not anchor_scales or min(anchor_scales) <= 0:
            raise FsvInputError(f"anchor_scales must be positive step lengths, got {anchor_scales!r}")
        self.feature_dim, self.num_pseudo_classes, self.num_snippets = feature_dim, num_pseudo_classes, num_snippets
        self.rank_weight, self.rank_temperature = rank_weight, rank_temperature
        if roi_pool not in ("mean", "max"):
            raise FsvInputError(f"roi_pool must be mean or max, got {roi_pool!r}")
        self.roi_pool = roi_pool
        if roi_fg_fraction + roi_hard_fraction > 1:
            raise FsvInputError(
                f"roi_fg_fraction + roi_hard_fraction must be at most 1, got {roi_fg_fraction} + {roi_hard_fraction}"
            )
        self.roi_batch, self.roi_fg_fraction, self.roi_hard_fraction, self.fg_iou = (
            roi_batch,
            roi_fg_fraction,
            roi_hard_fraction,
            fg_iou,
        )
        self.train_post_nms_top, self.post_nms_top, self.detection_nms = train_post_nms_top, post_nms_top, detection_nms
        self.register_buffer("reg_std", torch.tensor(REG_STD), persistent=False)
        self.proposal_subnet = ProposalSubnet(
            feature_dim,
            proposal_hidden,
            anchor_scales,
            pos_iou=anchor_pos_iou,
            neg_iou=anchor_neg_iou,
            batch=anchor_batch,
            fg_fraction=anchor_fg_fraction,
            pre_nms_top=pre_nms_top,
            nms_iou=proposal_nms,
        )
        self.cdc = CDCCrossAttention(
            feature_dim,
            d,
            tuple_kernel,
            attention_scale=attention_scale,
            qtos=qtos,
            dynamics=dynamics,
            stoq=stoq,
            qtos_gate=qtos_gate,
        )
        self.classifier = nn.ModuleDict({"cls": nn.Linear(d, 2), "reg": nn.Linear(d, 2)})
        self.aux = nn.Sequential(nn.Linear(2 * d + num_pseudo_classes, d), nn.ReLU(), nn.Linear(d, 1)) if aux else None

    # --- proposal sampling, CDC-CA and the relational classifier --------------------------------

    def _draw(self, pool: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` entries of ``pool``: without replacement when it is large enough, else with."""
        if len(pool) >= n:
            return pool[torch.randperm(len(pool), device=pool.device)[:n]]
        return pool[torch.randint(len(pool), (n,), device=pool.device)]

    def _sample_proposals(self, candidates: torch.Tensor, gt: torch.Tensor, distractors: torch.Tensor) -> torch.Tensor:
        """R-C3D proposal sampling with hard negatives: ``roi_batch`` of ``candidates [C, 2]``, at most
        ``roi_fg_fraction`` foreground (tIoU >= ``fg_iou`` with ``gt [G, 2]``), exactly
        ``roi_hard_fraction`` hard negatives when the query holds other classes' instances
        ``distractors [G', 2]`` (background covering one at tIoU >= ``fg_iou``; the instances are
        candidates themselves, drawn with replacement when few), the rest other background ->
        ``[roi_batch, 2]``."""

        def best(segments: torch.Tensor) -> torch.Tensor:
            return (
                segment_iou(candidates, segments).max(dim=1).values
                if len(segments)
                else candidates.new_zeros(len(candidates))
            )

        iou = best(gt)
        hard_mask = (iou < self.fg_iou) & (best(distractors) >= self.fg_iou)
        fg = torch.nonzero(iou >= self.fg_iou).squeeze(1)
        hard = torch.nonzero(hard_mask).squeeze(1)
        bg = torch.nonzero((iou < self.fg_iou) & ~hard_mask).squeeze(1)
        fg = self._draw(fg, min(len(fg), round(self.roi_batch * self.roi_fg_fraction)))
        hard = (
            self._draw(hard, round(self.roi_batch * self.roi_hard_fraction)) if len(hard) else hard
        )  # with replacement if few
        rest = bg if len(bg) else hard if len(hard) else fg
        return candidates[torch.cat([fg, hard, self._draw(rest, self.roi_batch - len(fg) - len(hard))])]

    def relate(
        self, query: torch.Tensor, supports: torch.Tensor, proposals: torch.Tensor, pseudo: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """RoI pooling, CDC-CA and the relational classifier for ``proposals [P, 2]`` ->
        (``co_logits [P, 2]``, ``co_offsets [P, 2]``, ``aux_logits [P]`` or ``None`` without ``pseudo [C]``)."""
        x_q, y_s = self.cdc(temporal_roi_pool(query, proposals, self.roi_pool), supports)
        co_logits, co_offsets = self.classifier["cls"](x_q), self.classifier["reg"](x_q)
        if pseudo is None or self.aux is None:
            return co_logits, co_offsets, None
        prototype = y_s.reshape(-1, y_s.shape[-1]).mean(dim=0)
        relation = torch.cat([x_q, prototype.expand(len(x_q), -1), pseudo.to(x_q).expand(len(x_q), -1)], dim=1)
        return co_logits, co_offsets, self.aux(relation).squeeze(1)

    def forward(
        self,
        query: torch.Tensor,
        supports: torch.Tensor,
        pseudo: torch.Tensor | None = None,
        gt: torch.Tensor | None = None,
        distractors: torch.Tensor | None = None,
    ) -> CDCOutput:
        """One episode. ``query [T, D]``, ``supports [L, N_S, D]``, ``pseudo [C]`` multi-hot (training;
        ``None`` skips the auxiliary module), ``gt [G, 2]`` common-action segments in steps (training:
        anchors and proposals are then sampled R-C3D style; ``None``: the proposals are the NMS'd top
        ``post_nms_top``, as at test on one window), ``distractors [G', 2]`` the query's instances of
        other classes (training: actions for the support-agnostic loss, hard negatives for the
        support-conditioned one)."""
        check_episode(query, supports, self.feature_dim, self.num_snippets)
        length = query.shape[0]
        logits, offsets = self.proposal_subnet(query)
        anchors = self.proposal_subnet.anchors(length)
        anchor_index = anchor_label = None
        if gt is None:
            proposals, _ = self.proposal_subnet.propose(anchors, logits, offsets, length, self.post_nms_top)
        else:
            gt = gt.to(anchors).reshape(-1, 2)
            others = anchors.new_zeros(0, 2) if distractors is None else distractors.to(anchors).reshape(-1, 2)
            actions = torch.cat([gt, others])
            anchor_index, anchor_label = self.proposal_subnet.sample_anchors(anchors, actions)
            candidates, _ = self.proposal_subnet.propose(anchors, logits, offsets, length, self.train_post_nms_top)
            proposals = self._sample_proposals(torch.cat([candidates, actions]), gt, others)
        co_logits, co_offsets, aux_logits = self.relate(query, supports, proposals, pseudo)
        return CDCOutput(
            anchors,
            logits,
            offsets,
            proposals,
            co_logits,
            co_offsets,
            aux_logits,
            anchor_index,
            anchor_label,
            actions if gt is not None else None,
        )

    def loss(self, out: CDCOutput, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 9 for ``out`` (from ``forward`` with ``gt``) and ``gt [G, 2]`` -> the total (``loss``) and each term by name."""
        if out.anchor_index is None or out.anchor_label is None or out.actions is None:
            raise FsvInputError("loss needs the output of forward(..., gt=...)")
        gt = gt.to(out.anchors).reshape(-1, 2)
        # support-agnostic part, on every action of the query (Sec. 3.4: "any activity"): actionness
        # (binary cross-entropy) and anchor offsets (smooth L1)
        cls_ag, reg_ag = self.proposal_subnet.loss(
            out.anchors, out.actionness, out.anchor_offsets, out.anchor_index, out.anchor_label, out.actions
        )
        # support-conditioned part, on the episode class's instances only (other classes' are
        # negatives): action classifier, auxiliary relational module, ranking (Eq. 8)
        if len(gt):
            ious, match = segment_iou(out.proposals, gt).max(dim=1)
        else:
            ious = out.proposals.new_zeros(len(out.proposals))
            match = torch.zeros(len(out.proposals), dtype=torch.long, device=ious.device)
        fg = ious >= self.fg_iou
        cls_co = F.cross_entropy(out.co_logits, fg.long())
        reg_co = out.co_offsets.sum() * 0
        if bool(fg.any()):
            target = encode_offsets(out.proposals[fg], gt[match[fg]]) / self.reg_std
            reg_co = F.smooth_l1_loss(out.co_offsets[fg], target, reduction="sum") / int(fg.sum())
        aux = (
            F.binary_cross_entropy_with_logits(out.aux_logits, fg.float()) if out.aux_logits is not None else cls_co * 0
        )
        rank = pairwise_ranking_loss(out.co_logits, ious, fg, self.rank_temperature)
        total = cls_ag + reg_ag + cls_co + reg_co + aux + self.rank_weight * rank
        return {
            "loss": total,
            "cls_ag": cls_ag,
            "reg_ag": reg_ag,
            "cls_co": cls_co,
            "reg_co": reg_co,
            "aux": aux,
            "rank": rank,
        }

    def step_actionness(self, query: torch.Tensor) -> torch.Tensor:
        """:meth:`ProposalSubnet.step_actionness`: ``query [T, D]`` -> ``[T]``."""
        return self.proposal_subnet.step_actionness(query)

    @torch.no_grad()
    def detect(
        self,
        query: torch.Tensor,
        supports: torch.Tensor,
        *,
        windows: Sequence[int] = (),
        overlap: float = 0.75,
        max_detections: int = 100,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inference (Sec. 4.1). ``query [T, D]``, ``supports [L, N_S, D]``; ``windows``: window sizes in
        steps, used only when ``T`` exceeds the largest. -> detections ``[K, 2]`` (steps, clipped to
        ``[0, T]``) and scores ``[K]`` (probability of "common action"), best first, after NMS
        ``detection_nms``; ``K <= max_detections``."""
        check_episode(query, supports, self.feature_dim, self.num_snippets)
        length = query.shape[0]
        proposals = self.proposal_subnet.windowed(query, self.post_nms_top, windows, overlap)
        if not len(proposals):
            return np.zeros((0, 2)), np.zeros(0)
        co_logits, co_offsets, _ = self.relate(query, supports, proposals, None)
        detections = decode_offsets(proposals, co_offsets * self.reg_std).clamp(0, length)
        probs = co_logits.softmax(dim=-1)[:, 1]
        valid = torch.nonzero(detections[:, 1] > detections[:, 0]).squeeze(1)
        detections, probs = detections[valid].double().cpu().numpy(), probs[valid].double().cpu().numpy()
        keep = nms(detections, probs, self.detection_nms)[:max_detections]
        return detections[keep], probs[keep]
