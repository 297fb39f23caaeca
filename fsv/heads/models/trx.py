"""TRX: Temporal-Relational CrossTransformers (Perrett et al., CVPR 2021), head ``trx``.

Each video is a sequence of ``T`` frame features ``[T, D]`` (view ``pooled``). For every cardinality
``w`` in ``cardinalities`` (default ``{2, 3}``) the ordered frame tuples ``t1 < ... < tw`` are formed
(``C(T, w)`` of them: 28 pairs and 56 triples for ``T = 8``), each represented by the concatenation of
its (positionally encoded) frame features, ``[w * D]``. Keys and values are linear maps of the tuples
to ``D'`` (1152); keys are layer-normalised. For a query tuple, attention runs over *all* the tuples
of *all* the support videos of a class (one softmax over ``K * C(T, w)`` entries), and the weighted
sum of the support values is the query-specific class prototype for that tuple. The distance of a
query to a class is the mean over its tuples of ``||value - prototype||^2``; the logit is its
negative. Cardinalities are combined by summing their distances.

Where the description above comes from
---------------------------------------
* Tuples, shared key/value maps, per-class softmax over all support tuples of all shots, query-
  specific prototypes, sum over cardinalities: TRX paper, Sec. 3 (restated as Eq. 1 of the STRM paper,
  ``/work/shared/papers/strm_spatiotemporal_relation_cvpr2022.md``, Sec. 2.1).
* ``D' = 1152`` and ``Omega = {2, 3}``: TRX paper (restated in STRM Sec. 4, "set D' = 1,152, as in
  [19]"; STRM Table 2 / Sec. 4.2 "TRX ... requires Omega = {2, 3}"), and ``run.py`` defaults
  ``--trans_linear_out_dim 1152 --temp_set 2 3`` of ``tobyperrett/trx``.
* Positional encoding (sinusoidal, multiplied by 0.1, dropout 0.1, ``max_len = int(1.5 * T)``),
  ``LayerNorm`` on the keys of both support and query, no norm on the values, scores divided by
  ``sqrt(D')``, distance divided by the number of tuples: the authors' ``model.py``
  (``PositionalEncoding``, ``TemporalCrossTransformer``); the paper is silent on these.

Deviations from the authors' ``model.py``
-----------------------------------------
* Cardinalities are **summed** (paper, Eq. 1 of STRM / TRX Sec. 3); ``CNN_TRX`` takes their *mean*.
  For ``{2, 3}`` this doubles the logit scale relative to the code.
* ``norm_v`` (a ``LayerNorm`` the authors create but never use, so it never receives a gradient) is
  not created.
* Logits are built per class from the episode's labels ``0..way-1`` (every class must have support);
  nothing is moved to CUDA inside the module.
* The per-tuple distance: STRM's Eq. 1 writes ``||q_t - p_t^c||`` (not squared) while the authors'
  code uses the squared norm. The paper wins: ``squared_distance=False`` (default) is Eq. 1;
  ``squared_distance=True`` reproduces the code.

Loss
----
Cross-entropy on the logits, **summed over the episode's queries** (``loss_reduction="sum"``), as
the authors' ``utils.loss`` does (``run.py`` then divides by ``tasks_per_batch`` = 16 and steps once
per 16 tasks). The learning rate 1e-3 was tuned with this reduction; ``loss_reduction="mean"`` is
available but then the effective step is ``1 / n_queries`` of the authors'.

Training preset (``preset`` below)
----------------------------------
* ``optimizer="sgd"``, ``lr=1e-3``: ``run.py`` defaults ``--opt sgd --learning_rate 0.001`` (README
  SSv2 command ``-lr 0.001``); plain ``torch.optim.SGD`` -> ``momentum=0``, ``weight_decay=0``.
* ``episodes_per_update=16``: ``run.py --tasks_per_batch 16``; README "Average gradients and
  backpropagate once every 16 training tasks".
* ``train_episodes=75000``: the README's SSv2 command evaluates the model at ``--test_iters 75000``
  (``run.py`` default ``--training_iterations`` is 100020); STRM Sec. 4 also trains SSv2 for 75,000
  episodes.
* ``lr_milestones=[]``, ``lr_gamma=0.1``: ``run.py --sch`` default ``[1000000]`` never fires within
  training; ``MultiStepLR(gamma=0.1)``.
* ``seq_len=8``: ``run.py --seq_len 8``; ``view="pooled"``: one ``[D]`` feature per frame
  (ResNet-50 average pool).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import HeadOutput, RecognitionHead
from fsv.heads.models.registry import register_head

TRX_PRESET: dict[str, object] = {
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "episodes_per_update": 16,
    "train_episodes": 75000,
    "lr_milestones": [],
    "lr_gamma": 0.1,
    "seq_len": 8,
    "view": "pooled",
}


def frame_tuples(seq_len: int, cardinality: int) -> torch.Tensor:
    """All ordered frame-index tuples ``t1 < ... < tw``: int64 ``[C(seq_len, w), w]``, lexicographic."""
    if not 1 <= cardinality <= seq_len:
        raise FsvInputError(f"tuple cardinality {cardinality} must lie in 1..seq_len={seq_len}")
    return torch.tensor(list(combinations(range(seq_len), cardinality)), dtype=torch.long).reshape(-1, cardinality)


def check_episode(
    support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int, feat_shape: tuple[int, ...]
) -> None:
    """Raise :class:`FsvInputError` unless ``support [S, *feat_shape]``, ``query [Q, *feat_shape]`` and
    ``support_labels [S]`` in ``0..way-1`` with every class present."""
    for name, x in (("support", support), ("query", query)):
        if tuple(x.shape[1:]) != feat_shape:
            raise FsvInputError(f"{name} has shape {tuple(x.shape)}; expected [n, {', '.join(map(str, feat_shape))}]")
    if support_labels.shape != (support.shape[0],):
        raise FsvInputError(f"support_labels has shape {tuple(support_labels.shape)}; expected [{support.shape[0]}]")
    labels = support_labels.long()
    if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= way:
        raise FsvInputError(f"support_labels must be non-empty and lie in 0..{way - 1}")
    if bool((torch.bincount(labels, minlength=way) == 0).any()):
        raise FsvInputError(f"every class 0..{way - 1} needs at least one support video")


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal encoding (Vaswani et al.) scaled by ``scale``, added to ``x [B, T, D]``, then
    dropout. ``scale=0.1`` and ``max_len = int(1.5 * T)`` are the TRX authors' values."""

    pe: torch.Tensor

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 12, scale: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(position * div_term) * scale
        pe[:, 1::2] = torch.cos(position * div_term[: dim // 2]) * scale
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]`` -> ``[B, T, D]``."""
        if x.shape[1] > self.pe.shape[0]:
            raise FsvInputError(
                f"sequence of {x.shape[1]} exceeds the positional encoding's max_len {self.pe.shape[0]}"
            )
        return self.dropout(x + self.pe[: x.shape[1]].to(x.dtype))


class TemporalCrossTransformer(nn.Module):
    """One TRX branch: tuples of one cardinality, cross-attention to each class's support tuples.

    Runnable on its own::

        tct = TemporalCrossTransformer(feature_dim=64, seq_len=8, cardinality=2, out_dim=32)
        logits = tct(torch.randn(25, 8, 64), torch.arange(5).repeat(5), torch.randn(10, 8, 64), way=5)
        logits.shape  # [10, 5]
    """

    tuples: torch.Tensor

    def __init__(
        self,
        feature_dim: int,
        seq_len: int = 8,
        cardinality: int = 2,
        out_dim: int = 1152,
        dropout: float = 0.1,
        pe_scale: float = 0.1,
        squared_distance: bool = False,
    ) -> None:
        super().__init__()
        self.feature_dim, self.seq_len, self.cardinality, self.out_dim = feature_dim, seq_len, cardinality, out_dim
        self.squared_distance = squared_distance
        self.pe = PositionalEncoding(feature_dim, dropout, max_len=int(seq_len * 1.5), scale=pe_scale)
        self.k_linear = nn.Linear(feature_dim * cardinality, out_dim)
        self.v_linear = nn.Linear(feature_dim * cardinality, out_dim)
        self.norm_k = nn.LayerNorm(out_dim)
        self.register_buffer("tuples", frame_tuples(seq_len, cardinality), persistent=False)

    @property
    def num_tuples(self) -> int:
        """``C(seq_len, cardinality)``."""
        return int(self.tuples.shape[0])

    def tuple_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]`` -> tuple representations ``[B, P, w * D]`` (frames concatenated in time order)."""
        return x[:, self.tuples].flatten(2)

    def forward(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int
    ) -> torch.Tensor:
        """``support [S, T, D]``, ``support_labels [S]`` in ``0..way-1``, ``query [Q, T, D]`` -> logits
        ``[Q, way]`` (negative mean per-tuple distance to the query-specific prototypes)."""
        s = self.tuple_features(self.pe(support))  # [S, P, wD]
        q = self.tuple_features(self.pe(query))  # [Q, P, wD]
        s_k, s_v = self.norm_k(self.k_linear(s)), self.v_linear(s)  # [S, P, D']
        q_k, q_v = self.norm_k(self.k_linear(q)), self.v_linear(q)  # [Q, P, D']
        n_tuples = self.num_tuples
        scale = 1.0 / math.sqrt(self.out_dim)
        distances = []
        for c in range(way):
            idx = torch.nonzero(support_labels == c, as_tuple=True)[0]
            class_k = s_k.index_select(0, idx).reshape(-1, self.out_dim)  # [K_c * P, D']
            class_v = s_v.index_select(0, idx).reshape(-1, self.out_dim)  # [K_c * P, D']
            # one softmax per query tuple over all tuples of all the class's support videos
            attn = torch.softmax(torch.matmul(q_k, class_k.t()) * scale, dim=-1)  # [Q, P, K_c * P]
            prototype = torch.matmul(attn, class_v)  # [Q, P, D']
            sq = (q_v - prototype).pow(2).sum(-1)  # [Q, P]
            per_tuple = sq if self.squared_distance else torch.sqrt(sq.clamp_min(1e-12))
            distances.append(per_tuple.sum(-1) / n_tuples)  # [Q]
        return -torch.stack(distances, dim=-1)  # [Q, way]


@register_head(
    "trx",
    preset=TRX_PRESET,
    description="Temporal-Relational CrossTransformer (Perrett et al. CVPR 2021), frame tuples {2,3}",
)
class TRXHead(RecognitionHead):
    """TRX head on ``pooled`` features: one :class:`TemporalCrossTransformer` per cardinality
    (``self.transformers``, an ``nn.ModuleList``), logits summed over cardinalities.

    ``support [N*K, T, D]``, ``support_labels [N*K]``, ``query [Q, T, D]`` -> ``logits [Q, way]``.
    """

    view = "pooled"

    def __init__(
        self,
        feature_dim: int = 2048,
        seq_len: int = 8,
        cardinalities: Sequence[int] = (2, 3),
        out_dim: int = 1152,
        dropout: float = 0.1,
        pe_scale: float = 0.1,
        squared_distance: bool = False,
        loss_reduction: str = "sum",
    ) -> None:
        super().__init__()
        if not cardinalities:
            raise FsvInputError("TRX needs at least one tuple cardinality")
        if loss_reduction not in ("sum", "mean"):
            raise FsvInputError(f"loss_reduction must be 'sum' or 'mean', not {loss_reduction!r}")
        self.feature_dim, self.seq_len, self.loss_reduction = feature_dim, seq_len, loss_reduction
        self.cardinalities = tuple(int(w) for w in cardinalities)
        self.transformers = nn.ModuleList(
            [
                TemporalCrossTransformer(feature_dim, seq_len, w, out_dim, dropout, pe_scale, squared_distance)
                for w in self.cardinalities
            ]
        )

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        check_episode(support, support_labels, query, way, (self.seq_len, self.feature_dim))
        logits = torch.stack([t(support, support_labels, query, way) for t in self.transformers]).sum(0)
        return HeadOutput(logits=logits)

    def loss(self, out: HeadOutput, query_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over the episode's queries, summed (authors' ``utils.loss``) or averaged."""
        return {"loss": nn.functional.cross_entropy(out.logits, query_labels, reduction=self.loss_reduction)}
