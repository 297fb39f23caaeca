"""Prototype matching: the trivial way to use the supports in few-shot common action localization,
the baseline a common-localization head has to beat on the same episodes.

Proposals come from R-C3D's proposal subnet (:mod:`fsv.heads.models.proposals`), trained on the
support-agnostic terms alone (actionness and boundary regression on every action of the query, as
CDC-CA's subnet is: the same layers, labels, sampling and NMS). Each proposal ``[s, e)`` is scored
by the cosine between the mean of the query's snippet features over its steps and the supports'
prototype, the mean of all ``L x N_S`` support snippet features (Snell et al.'s prototype, with
the cosine in place of the Euclidean distance so that a longer or louder proposal is not favoured);
the score is ``(1 + cos) / 2`` and the scored proposals go through NMS 0.3 as CDC-CA's detections
do. There is no parameter beyond the proposal subnet and nothing learns to read the supports, so
the margin between a query scored with its own supports and with another class's says how much
class information the features hold for supports to select by: where this baseline separates its
supports and a learned head does not, the learned head ignores what is there.

Test-time proposals are CDC-CA's: the top ``post_nms_top`` (300) of the query, or of each sliding
window for long queries (:meth:`ProposalSubnet.windowed`). Proposals are not regressed further.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fsv.errors import FsvInputError
from fsv.heads.models.interface import CommonHead
from fsv.heads.models.registry import register_head
from fsv.heads.models.proposals import FRAME_RATES, ProposalSubnet, check_episode, inside_bounds, mean_over_steps
from fsv.metrics import nms

PRESET: dict[str, object] = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 5e-4,
    "train_episodes": 50000,
    "val_every": 2500,
    "shot": 5,
    "num_snippets": 8,
    "num_pseudo_classes": 0,
    "anchor_scales": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96],
}
"""CDC-CA's training preset for the proposal subnet (:data:`fsv.heads.models.cdcca.PRESET`); no pseudo
classes (there is no auxiliary module), and the store's features as they are (CDC-CA's preset
standardizes them; ``--set standardize=true`` gives the cosine standardized features too)."""


@dataclass
class ProtoOutput:
    """What :meth:`ProtoMatch.forward` returns in training: ``anchors [A, 2]``, their actionness
    logits ``[A]`` and offsets ``[A, 2]``, the sampled anchors ``anchor_index [S]`` with their 0/1
    ``anchor_label [S]``, and ``actions [G + G', 2]`` (every action of the query, the targets)."""

    anchors: torch.Tensor
    actionness: torch.Tensor
    anchor_offsets: torch.Tensor
    anchor_index: torch.Tensor
    anchor_label: torch.Tensor
    actions: torch.Tensor


@register_head(
    "protomatch",
    preset=PRESET,
    description="Prototype matching: support-agnostic proposals scored by the cosine to the supports' mean feature (the trivial common-localization baseline)",
    task="common",
    dataset_presets=FRAME_RATES,
    preferred_spec="c3d",
    preferred_datasets=("activitynet13", "thumos14"),
)
class ProtoMatch(CommonHead):
    """Prototype matching (module docstring). ``forward(query [T, D], supports [L, N_S, D], gt=[G, 2],
    distractors=[G', 2])`` -> :class:`ProtoOutput` (training); ``loss(out, gt)`` -> the
    support-agnostic terms; ``detect(query, supports)`` -> detections ``[K, 2]`` and scores ``[K]``."""

    def __init__(
        self,
        feature_dim: int = 4096,
        *,
        num_snippets: int = 8,
        anchor_scales: Sequence[float] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96),
        proposal_hidden: int = 512,
        anchor_pos_iou: float = 0.7,
        anchor_neg_iou: float = 0.3,
        anchor_batch: int = 64,
        anchor_fg_fraction: float = 0.5,
        pre_nms_top: int = 6000,
        post_nms_top: int = 300,
        proposal_nms: float = 0.7,
        detection_nms: float = 0.3,
    ) -> None:
        super().__init__()
        if not anchor_scales or min(anchor_scales) <= 0:
            raise FsvInputError(f"anchor_scales must be positive step lengths, got {anchor_scales!r}")
        self.feature_dim, self.num_snippets = feature_dim, num_snippets
        self.post_nms_top, self.detection_nms = post_nms_top, detection_nms
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

    def forward(
        self,
        query: torch.Tensor,
        supports: torch.Tensor,
        pseudo: torch.Tensor | None = None,
        gt: torch.Tensor | None = None,
        distractors: torch.Tensor | None = None,
    ) -> ProtoOutput:
        """One training episode: the proposal subnet on ``query [T, D]`` and its anchors sampled
        against every action of the query, ``gt [G, 2]`` and ``distractors [G', 2]`` (steps).
        ``supports`` are checked but not read (nothing here learns from them); ``pseudo`` is not read."""
        check_episode(query, supports, self.feature_dim, self.num_snippets)
        if gt is None:
            raise FsvInputError("protomatch trains only its proposal subnet: forward needs gt (use detect at test)")
        logits, offsets = self.proposal_subnet(query)
        anchors = self.proposal_subnet.anchors(query.shape[0])
        others = anchors.new_zeros(0, 2) if distractors is None else distractors.to(anchors).reshape(-1, 2)
        actions = torch.cat([gt.to(anchors).reshape(-1, 2), others])
        index, label = self.proposal_subnet.sample_anchors(anchors, actions)
        return ProtoOutput(anchors, logits, offsets, index, label, actions)

    def loss(self, out: ProtoOutput, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """The support-agnostic terms of CDC-CA's Eq. 9 -> the total ``L_cls^ag + L_reg^ag`` (``loss``) and each term."""
        cls_ag, reg_ag = self.proposal_subnet.loss(
            out.anchors, out.actionness, out.anchor_offsets, out.anchor_index, out.anchor_label, out.actions
        )
        return {"loss": cls_ag + reg_ag, "cls_ag": cls_ag, "reg_ag": reg_ag}

    def step_actionness(self, query: torch.Tensor) -> torch.Tensor:
        """:meth:`ProposalSubnet.step_actionness`: ``query [T, D]`` -> ``[T]``."""
        return self.proposal_subnet.step_actionness(query)

    @torch.no_grad()
    def score(self, query: torch.Tensor, supports: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """``(1 + cos) / 2`` between each proposal's mean feature (``proposals [P, 2]`` over ``query [T, D]``)
        and the mean of ``supports [L, N_S, D]`` -> ``[P]``."""
        prototype = supports.reshape(-1, supports.shape[-1]).mean(dim=0)
        pooled = mean_over_steps(query, inside_bounds(proposals, query.shape[0]))
        return (1 + F.cosine_similarity(pooled, prototype[None], dim=1)) / 2

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
        """``query [T, D]``, ``supports [L, N_S, D]`` -> detections ``[K, 2]`` (steps) and scores ``[K]``,
        best first, after NMS ``detection_nms``; ``K <= max_detections`` (CDC-CA's inference, with the
        cosine as the score)."""
        check_episode(query, supports, self.feature_dim, self.num_snippets)
        proposals = self.proposal_subnet.windowed(query, self.post_nms_top, windows, overlap)
        if not len(proposals):
            return np.zeros((0, 2)), np.zeros(0)
        scores = self.score(query, supports, proposals)
        detections, probs = proposals.double().cpu().numpy(), scores.double().cpu().numpy()
        keep = nms(detections, probs, self.detection_nms)[:max_detections]
        return detections[keep], probs[keep]
