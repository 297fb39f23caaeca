"""Prototypical networks (Snell et al., NeurIPS 2017) on video features, head ``protonet``.

A video is its frame features ``[T, D]`` (view ``pooled``) averaged over time, optionally followed
by a learned linear projection to ``projection_dim`` (default: none). A class prototype is the mean of
its ``K`` support embeddings (grouped by label, not by position). Logits are

* ``distance="euclidean"`` (default): the negative squared Euclidean distance ``-||q - p_c||^2``
  (Snell et al., Sec. 2.2 / Eq. 1-2);
* ``distance="cosine"``: ``scale * cos(q, p_c)``. The scale is fixed at ``cosine_scale`` (default
  10) unless ``learn_scale=True``, when it is a learnable scalar initialised at ``cosine_scale``.
  Without a scale, cosine logits lie in ``[-1, 1]`` and the softmax cannot become confident.

Parameters: the default head (Euclidean, no projection) has **no learned parameters** —
:attr:`ProtoNetHead.has_parameters` is then ``False`` and the trainer should skip the optimiser and
training altogether (evaluate directly). ``projection_dim`` and/or ``distance="cosine",
learn_scale=True`` add parameters.

Loss: cross-entropy on the logits averaged over the queries (Snell et al.'s reference code).

Training preset (for when the head has parameters)
---------------------------------------------------
* ``optimizer="adam"``, ``lr=1e-3``, ``lr_milestones`` every 2000 episodes, ``lr_gamma=0.5``:
  Snell et al. Sec. 3.2 ("Adam ... initial learning rate of 1e-3 ... cut the learning rate in half
  every 2000 episodes"); no weight decay ("No regularization was used other than batch
  normalization"); ``momentum`` is unused with Adam (kept 0.0 so every preset has the same keys).
* ``episodes_per_update=1``: one episode per update (Snell et al.).
* ``train_episodes=10000``: *not* from the paper (Snell et al. stop on validation loss); chosen to
  match the milestone schedule (4 halvings).
* ``seq_len=8``, ``view="pooled"``: the project's frame sampling (as TRX/STRM, 8 frames).
"""

from __future__ import annotations

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import HeadOutput, RecognitionHead
from fsv.heads.models.registry import register_head

PROTONET_PRESET: dict[str, object] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "episodes_per_update": 1,
    "train_episodes": 10000,
    "lr_milestones": [2000, 4000, 6000, 8000],
    "lr_gamma": 0.5,
    "seq_len": 8,
    "view": "pooled",
}

DISTANCES = ("euclidean", "cosine")


def class_means(x: torch.Tensor, labels: torch.Tensor, way: int) -> torch.Tensor:
    """Per-class mean of ``x [S, E]`` grouped by ``labels [S]`` in ``0..way-1`` -> ``[way, E]``.

    Raises :class:`FsvInputError` when a class has no support example or a label is out of range.
    """
    labels = labels.long()
    if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= way:
        raise FsvInputError(f"support_labels must be non-empty and lie in 0..{way - 1}")
    if bool((torch.bincount(labels, minlength=way) == 0).any()):
        raise FsvInputError(f"every class 0..{way - 1} needs at least one support video")
    # a loop over classes rather than index_add: no atomics, so deterministic on CUDA too
    return torch.stack([x[labels == c].mean(dim=0) for c in range(way)])


@register_head(
    "protonet",
    preset=PROTONET_PRESET,
    description="Prototypical network on time-averaged frame features (Snell et al. 2017)",
)
class ProtoNetHead(RecognitionHead):
    """``support [N*K, T, D]``, ``support_labels [N*K]``, ``query [Q, T, D]`` -> ``logits [Q, way]``.

    ``T`` need not equal ``seq_len`` (kept for a uniform constructor); ``D`` must be ``feature_dim``.
    """

    view = "pooled"

    def __init__(
        self,
        feature_dim: int = 2048,
        seq_len: int = 8,
        distance: str = "euclidean",
        projection_dim: int | None = None,
        cosine_scale: float = 10.0,
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise FsvInputError(f"distance must be one of {DISTANCES}, not {distance!r}")
        self.feature_dim, self.seq_len, self.distance = feature_dim, seq_len, distance
        self.projection: nn.Module = nn.Linear(feature_dim, projection_dim) if projection_dim else nn.Identity()
        scale = torch.tensor(float(cosine_scale))
        if distance == "cosine" and learn_scale:
            self.scale: torch.Tensor = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale, persistent=False)

    @property
    def has_parameters(self) -> bool:
        """Whether anything is trainable (``False`` for the default head: skip the optimiser)."""
        return any(p.requires_grad for p in self.parameters())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]`` -> ``[B, E]``: temporal mean, then the (optional) projection."""
        return self.projection(x.mean(dim=1))

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        for name, x in (("support", support), ("query", query)):
            if x.dim() != 3 or x.shape[-1] != self.feature_dim:
                raise FsvInputError(f"{name} has shape {tuple(x.shape)}; expected [n, T, {self.feature_dim}]")
        prototypes = class_means(self.embed(support), support_labels, way)  # [way, E]
        q = self.embed(query)  # [Q, E]
        if self.distance == "euclidean":
            logits = -(q.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)
        else:
            q_n = nn.functional.normalize(q, dim=-1)
            p_n = nn.functional.normalize(prototypes, dim=-1)
            logits = self.scale * q_n @ p_n.t()
        return HeadOutput(logits=logits)
