"""STRM: Spatio-temporal Relation Modeling (Thatipelli et al., CVPR 2022), head ``strm``.

Paper: ``/work/shared/papers/strm_spatiotemporal_relation_cvpr2022.md``; authors' code
``Anirudh257/strm`` (``model.py``, ``run.py``, ``scripts/``), built on ``tobyperrett/trx``.

Input view ``patches``: a video is ``[L, P^2, D]`` (``L = 8`` frames, the 7x7 ResNet-50 grid
adaptively max-pooled to ``P = 4``, so 16 patches; Sec. 4). Pipeline (Fig. 2, Sec. 3):

1. **PLE** (patch-level enrichment, Sec. 3.2.1), per frame ``x [P^2, D]``: sinusoidal positional
   encoding over the 16 patches, then single-head self-attention with ``W1, W2, W3 in R^{DxD}``,
   ``alpha = softmax(x W1 (x W2)^T / sqrt(D)) x W3 + x`` (Eq. 2-3), then a 3-layer point-wise FC
   sub-network ``psi`` (``D -> 1024 -> 1024 -> D``, ReLU between) with a residual,
   ``f = psi(alpha) + alpha`` (Eq. 4).
2. Spatial average of ``f`` over the patches -> ``h_i [D]``; ``H = [h_1; ...; h_L]`` ``[L, D]``.
3. **FLE** (frame-level enrichment, Sec. 3.2.2): an MLP-mixer layer on ``H`` after a positional
   encoding over the frames: token mixing ``H* = relu(H^T Wt1) Wt2 + H^T`` (``Wt in R^{LxL}``, Eq. 5)
   then channel mixing ``E = relu(H* Wr1) Wr2 + H*`` (``Wr in R^{DxD}``, Eq. 6). No LayerNorm.
4. **TRM** (Sec. 3.2.2): a TRX (:class:`fsv.heads.models.trx.TemporalCrossTransformer`) with ``Omega = {2}``
   and ``D' = 1152`` on ``E`` -> ``tm_logits``; ``L_TM = CE`` (Eq. 7).
5. **Query-class similarity classifier** (Sec. 3.3) on ``H`` (patch-enriched, *before* FLE): tuples
   ``l_t = [h_t1; ...; h_tw]`` of the same cardinalities, ``z_t = relu(W_cls l_t)`` with
   ``W_cls: wD -> D'' = 1024``; for each query tuple the highest similarity among all tuples of the
   class's ``K`` support videos, averaged over the query's tuples and summed over cardinalities
   (Eq. 8) -> ``qc_logits``; ``L_QC = CE`` (Eq. 9). It is *not* a cross-transformer: no attention,
   no values, only the projection and a max-similarity match. ``phi`` (unspecified in the paper) is
   the negative Euclidean distance, as in the authors' ``DistanceLoss`` (``torch.cdist``, min over
   support tuples).
6. ``L = L_TM + lambda * L_QC`` with ``lambda = 0.1`` (Eq. 10, Sec. 4).

``HeadOutput.logits`` are the TM logits (the paper classifies with the TRM, Sec. 3.1: "TRM ...
classifies the query video"); ``extra`` holds ``tm_logits`` and ``qc_logits``. The authors' ``run.py``
reports accuracy on ``tm_logits + 0.1 * qc_logits`` (train and test); ``eval_with_qc=True`` makes
``logits`` that sum.

Values the paper leaves open, taken from the authors' code: positional encodings (scale 0.1, dropout
0.1, ``max_len = int(1.5 * n)``) on the 16 patches before PLE and on the 8 frames before FLE (and,
inside TRM, the TRX encoding again); dropout 0.1 on ``H`` before the QC tuples; biases in every FC
layer; the residual of Eq. 3 is taken after the positional encoding; widths ``1024 = D / 2`` at
``D = 2048`` (``ple_hidden_dim`` and ``qc_dim`` default to ``feature_dim // 2``, i.e. the paper's 1024
for ResNet-50); the loss sums cross-entropy over the episode's queries (``utils.loss``) —
``loss_reduction="mean"`` averages instead (then the effective learning rate is ``1 / n_queries``
of the authors').

Deviations from the authors' code (the paper wins, or a bug)
-------------------------------------------------------------
* Eq. 3 divides the attention scores by ``sqrt(D)``; the code (``Self_Attn_Bot``) does not.
* Eq. 3 adds the attended features to ``x`` directly; the code multiplies them by a learnable ``gamma``
  initialised at 0 (so, at initialisation, the attention weights get no gradient). Not reproduced.
* The code keeps the QC modules (``DistanceLoss``, holding ``W_cls``) in a plain Python list, so
  ``W_cls`` is never registered, never optimised and never saved: the QC branch trains only the
  layers below it through a *fixed random* projection. Here ``W_cls`` is registered (``nn.ModuleList``)
  and trained, as Sec. 3.3 describes it as learned.
* Cardinalities are summed (Eq. 1, Eq. 8) where the code averages; with the default ``{2}`` the two
  agree.
* TRX's unused ``norm_v`` is not created (see :mod:`fsv.heads.models.trx`).

Training preset (``preset``; SSv2 values)
-----------------------------------------
* ``optimizer="sgd"``: Sec. 4 ("trained end-to-end using an SGD optimizer"); plain
  ``torch.optim.SGD`` in ``run.py`` -> ``momentum=0``, ``weight_decay=0``.
* ``lr=1e-3``, ``train_episodes=75000``: Sec. 4 ("75,000 randomly sampled training episodes are
  used for SSv2 dataset with a learning rate of 1e-3"). The smaller datasets (Kinetics, HMDB51,
  UCF101) use ``lr=1e-4`` (Sec. 4), with 20,010 training iterations in the authors' scripts
  (``scripts/run_strm_{kin,hmdb,ucf}.sh``; the paper gives no count) — override for those.
* ``episodes_per_update=16``: ``run.py --tasks_per_batch 16`` (``scripts/run_strm_ssv2.sh``).
* ``lr_milestones=[]``, ``lr_gamma=0.1``: ``run.py --sch`` default ``[1000000]`` never fires.
* ``seq_len=8`` (Sec. 4, ``L = 8``), ``view="patches"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import HeadOutput, RecognitionHead
from fsv.heads.models.registry import register_head
from fsv.heads.models.trx import (
    PositionalEncoding,
    TemporalCrossTransformer,
    check_episode,
    frame_tuples,
)

STRM_PRESET: dict[str, object] = {
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "episodes_per_update": 16,
    "train_episodes": 75000,
    "lr_milestones": [],
    "lr_gamma": 0.1,
    "seq_len": 8,
    "view": "patches",
}


class PatchLevelEnrichment(nn.Module):
    """PLE (Sec. 3.2.1): ``x [B, P^2, D]`` -> ``f [B, P^2, D]``.

    Positional encoding over the patches, single-head self-attention (Eq. 2-3, scores scaled by
    ``1/sqrt(D)``) with a residual, then a 3-layer point-wise MLP ``D -> h -> h -> D`` with a
    residual (Eq. 4).
    """

    def __init__(
        self, dim: int, num_patches: int = 16, hidden_dim: int = 1024, dropout: float = 0.1, pe_scale: float = 0.1
    ) -> None:
        super().__init__()
        self.pe = PositionalEncoding(dim, dropout, max_len=int(num_patches * 1.5), scale=pe_scale)
        self.w_query = nn.Linear(dim, dim)  # W1
        self.w_key = nn.Linear(dim, dim)  # W2
        self.w_value = nn.Linear(dim, dim)  # W3
        self.psi = nn.Sequential(
            nn.Linear(dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, dim),
        )
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pe(x)
        scores = torch.matmul(self.w_query(x), self.w_key(x).transpose(-2, -1)) * self.scale  # [B, P^2, P^2]
        alpha = torch.matmul(torch.softmax(scores, dim=-1), self.w_value(x)) + x  # Eq. 3
        return self.psi(alpha) + alpha  # Eq. 4


class FrameLevelEnrichment(nn.Module):
    """FLE (Sec. 3.2.2): one MLP-mixer layer, ``H [B, L, D]`` -> ``E [B, L, D]``.

    Positional encoding over the frames, token mixing (two ``L x L`` FC layers shared across channels,
    Eq. 5) and channel mixing (two ``D x D`` FC layers shared across frames, Eq. 6), each with ReLU
    between its layers and a residual.
    """

    def __init__(self, dim: int, seq_len: int = 8, dropout: float = 0.1, pe_scale: float = 0.1) -> None:
        super().__init__()
        self.pe = PositionalEncoding(dim, dropout, max_len=int(seq_len * 1.5), scale=pe_scale)
        self.token_mlp = nn.Sequential(nn.Linear(seq_len, seq_len), nn.ReLU(), nn.Linear(seq_len, seq_len))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.pe(h)
        h = self.token_mlp(h.transpose(1, 2)).transpose(1, 2) + h  # Eq. 5: mix over the L frames
        return self.channel_mlp(h) + h  # Eq. 6


class TupleProjection(nn.Module):
    """``W_cls`` of one cardinality (Sec. 3.3): ``h [B, L, D]`` -> ``z [B, P, D'']``,
    ``z_t = relu(W_cls [h_t1; ...; h_tw])`` for the ``P = C(L, w)`` ordered tuples."""

    tuples: torch.Tensor

    def __init__(self, dim: int, seq_len: int, cardinality: int, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("tuples", frame_tuples(seq_len, cardinality), persistent=False)
        self.w_cls = nn.Linear(dim * cardinality, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.w_cls(h[:, self.tuples].flatten(2)))


class QueryClassSimilarity(nn.Module):
    """Query-class similarity classifier (Sec. 3.3, Eq. 8) on patch-enriched frame features ``H``.

    ``support [S, L, D]``, ``support_labels [S]``, ``query [Q, L, D]`` -> ``M [Q, way]`` with
    ``M(Q, c) = sum_w mean_t max_j -||z_t^Q - z_j^c||`` over the tuples ``j`` of all of class ``c``'s
    support videos. Dropout (0.1) on ``H`` first, as the authors do.
    """

    def __init__(
        self, dim: int, seq_len: int = 8, cardinalities: Sequence[int] = (2,), out_dim: int = 1024, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.projections = nn.ModuleList([TupleProjection(dim, seq_len, w, out_dim) for w in cardinalities])

    def forward(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int
    ) -> torch.Tensor:
        support, query = self.dropout(support), self.dropout(query)
        total = query.new_zeros(query.shape[0], way)
        for proj in self.projections:
            z_s, z_q = proj(support), proj(query)  # [S, P, D''], [Q, P, D'']
            n_query, n_tuples, d = z_q.shape
            z_q_flat = z_q.reshape(n_query * n_tuples, d)
            sims = []
            for c in range(way):
                z_c = z_s[support_labels == c].reshape(-1, d)  # [K_c * P, D'']
                best = -torch.cdist(z_q_flat, z_c).amin(dim=-1)  # [Q * P]: max similarity
                sims.append(best.reshape(n_query, n_tuples).mean(-1))  # [Q]
            total = total + torch.stack(sims, dim=-1)
        return total


@register_head(
    "strm",
    preset=STRM_PRESET,
    description="STRM (Thatipelli et al. CVPR 2022): patch/frame enrichment + TRM {2} + query-class classifier",
)
class STRMHead(RecognitionHead):
    """STRM head on ``patches`` features.

    ``support [N*K, L, P^2, D]``, ``support_labels [N*K]``, ``query [Q, L, P^2, D]`` ->
    ``HeadOutput(logits [Q, way], extra={"tm_logits": [Q, way], "qc_logits": [Q, way]})``.
    """

    view = "patches"

    def __init__(
        self,
        feature_dim: int = 2048,
        seq_len: int = 8,
        num_patches: int = 16,
        cardinalities: Sequence[int] = (2,),
        out_dim: int = 1152,
        ple_hidden_dim: int | None = None,
        qc_dim: int | None = None,
        dropout: float = 0.1,
        pe_scale: float = 0.1,
        qc_weight: float = 0.1,
        squared_distance: bool = False,
        eval_with_qc: bool = False,
        loss_reduction: str = "sum",
    ) -> None:
        super().__init__()
        if not cardinalities:
            raise FsvInputError("STRM needs at least one tuple cardinality")
        if loss_reduction not in ("sum", "mean"):
            raise FsvInputError(f"loss_reduction must be 'sum' or 'mean', not {loss_reduction!r}")
        self.feature_dim, self.seq_len, self.num_patches = feature_dim, seq_len, num_patches
        self.cardinalities = tuple(int(w) for w in cardinalities)
        self.qc_weight, self.eval_with_qc, self.loss_reduction = qc_weight, eval_with_qc, loss_reduction
        half = max(feature_dim // 2, 1)
        self.ple = PatchLevelEnrichment(feature_dim, num_patches, ple_hidden_dim or half, dropout, pe_scale)
        self.fle = FrameLevelEnrichment(feature_dim, seq_len, dropout, pe_scale)
        self.trm = nn.ModuleList(
            [
                TemporalCrossTransformer(feature_dim, seq_len, w, out_dim, dropout, pe_scale, squared_distance)
                for w in self.cardinalities
            ]
        )
        self.qc = QueryClassSimilarity(feature_dim, seq_len, self.cardinalities, qc_dim or half, dropout)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """PLE then the spatial average: ``x [B, L, P^2, D]`` -> ``H [B, L, D]``."""
        b, length, p, d = x.shape
        return self.ple(x.reshape(b * length, p, d)).mean(dim=1).reshape(b, length, d)

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        check_episode(support, support_labels, query, way, (self.seq_len, self.num_patches, self.feature_dim))
        n_support = support.shape[0]
        h = self.frame_features(torch.cat([support, query]))  # [S + Q, L, D]
        h_s, h_q = h[:n_support], h[n_support:]
        qc_logits = self.qc(h_s, support_labels, h_q, way)
        e = self.fle(h)
        e_s, e_q = e[:n_support], e[n_support:]
        tm_logits = torch.stack([t(e_s, support_labels, e_q, way) for t in self.trm]).sum(0)
        logits = tm_logits + self.qc_weight * qc_logits if self.eval_with_qc else tm_logits
        return HeadOutput(logits=logits, extra={"tm_logits": tm_logits, "qc_logits": qc_logits})

    def loss(self, out: HeadOutput, query_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_TM + qc_weight * L_QC`` (Eq. 10), cross-entropy summed (default) or averaged over queries."""
        ce = nn.functional.cross_entropy
        l_tm = ce(out.extra["tm_logits"], query_labels, reduction=self.loss_reduction)
        l_qc = ce(out.extra["qc_logits"], query_labels, reduction=self.loss_reduction)
        return {"loss": l_tm + self.qc_weight * l_qc}
