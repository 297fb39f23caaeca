"""TA2N: Two-Stage Action Alignment Network (Li, Liu et al., AAAI 2022), on ResNet-50 layer4 grids.

Paper: ``shared/papers/ta2n_two_stage_alignment_aaai2022.md`` (body + supplementary). Authors' code:
github.com/R00Kie-Liu/TA2N (``models/ta2n.py``, ``models/model_ta2n.py``, ``run/run_ta2n.py``), read,
not copied. Where the paper is silent we follow the code; where they disagree the paper wins (listed
below).

Pipeline for one episode (view ``grid``: a video is ``[T, D, H, W]`` = ``[8, 2048, 7, 7]``)::

    f_s [N*K, T, D, H, W], f_q [Q, T, D, H, W]
      -- dropout (training only; authors' code) --
      -- TTM, Eq. 1: phi = (a, b) = L(f); f_hat = T_phi(f)      (each video on its own)
      -- k-shot prototypes (supp. "Prototype of Multiple Shots"): TC of every shot onto a reference
         shot, averaged -> p_hat_s [N, T, D, H, W]  (K = 1: p_hat_s = f_hat_s)
      -- ACM per (class, query) pair:
           TC, Eqs. 2-3: M = Softmax((W_k G(p_hat_s))(W_q G(f_hat_q))^T / sqrt(dim));
                         f_tilde_q = f_hat_q + M . (W_v G(f_hat_q)),  f_tilde_s = p_hat_s + W_v G(p_hat_s)
                         (pooled results broadcast over H x W and added to the maps, as in the code; see below)
           SC, Eq. 4:    O = S(Cat(f_tilde_s, f_tilde_q)) in [-0.75, 0.75]^{T x 2}
               Eq. 11:   offset masks I_o (slope gamma = 3), 8-direction perturbations in training
               Eqs. 5-6: f_bar_s = sum_HW(I_o f_tilde_s) / sum I_o,  f_bar_q = ... I_{-o} ...
      -- Eq. 8: d = sum_t 1 - cos(f_bar_q[t], f_bar_s[t]);  Eq. 7: logits = -d;  Eq. 9: cross-entropy

Spatial coordinates are normalised to ``[-1, 1]`` across the 7 cells, as in the authors' code; then
``gamma = 3`` is a margin of one cell, which is what the supplementary says gamma is chosen for.

Perturbation schedule (the trainer's hook)
------------------------------------------
Supplementary: the perturbations "are 8-directional vectors, with amplitude decays for every 40
epochs ... disabled in testing". An epoch is 200 episodes (paper, Implementation Details), so the
amplitude is ``0.2 * 0.5 ** floor(episodes_done / 8000)`` (0.2 and the factor 0.5 from the code's
``delta`` and ``decay()``). The trainer must call, before each training episode (or at least once per
epoch)::

    head.set_progress(episodes_done / total_episodes, total_episodes)

``perturbation_amplitude`` holds the current amplitude. Without calls it stays 0.2 (progress 0).

Training preset (registered; UCF101 / HMDB51) and sources
---------------------------------------------------------
* ``optimizer="sgd"``, ``lr=1e-3``, ``momentum=0.9``: supplementary, "Further Implementation Details".
* ``lr_gamma=0.5`` every 5 epochs = every 1000 episodes (``lr_milestones`` 1000, 2000, ..., 39000):
  supplementary (UCF101 and HMDB51); 200 episodes per epoch: paper, Implementation Details.
* ``train_episodes=40000``: 200 epochs (supplementary) x 200 episodes (paper).
* ``episodes_per_update=16``: authors' ``run_ta2n.py`` default ``--tasks_per_batch`` (paper silent).
* ``weight_decay=0.0``: paper silent, the authors' optimiser has none.
* ``seq_len=8`` (paper: 8 TSN frames), ``view="grid"`` (ResNet-50 features before the last pooling).
* Not preset keys, for the trainer: the authors train with 5 queries per class
  (``--query_per_class 5``) and test with 1 (``--query_per_class_test 1``); the loss of one task is
  divided by ``episodes_per_update`` before backward (``run_ta2n.py``).
* :data:`DATASET_PRESETS` has the other datasets (supplementary): SSv2 decays by 0.8 every 30 epochs
  for 600 epochs; Kinetics decays by 0.9 every 20 epochs, with no momentum.

Where we depart from the authors' code
--------------------------------------
Because the paper says otherwise:

1. **No perturbations in evaluation** (supplementary: "disabled in testing"). The code keeps them on
   at test time (``if True or self.training``).
2. **The amplitude decays every 40 epochs** (supplementary). The code has ``decay()`` but its
   training script never calls it.
3. **The k-shot reference is random** (supplementary). The code takes the first shot of each class.
   We draw one reference per class in training. In evaluation we use the expectation over that draw,
   i.e. every shot as reference, averaged. That keeps evaluation deterministic and makes it
   invariant to the order of the support set.
4. **Optimiser and schedule from the supplementary**: SGD with momentum 0.9 and step decay over
   40,000 episodes. The code uses SGD without momentum, ``StepLR(step=10**6, gamma=0.9)`` (in effect
   a constant lr) and 100,020 episodes.
5. **Mask sign as in Eq. 11.** ``m_x`` is 1 on ``|x - o_x| < 1``, so the support window is centred on
   ``+o`` and the query window on ``-o``. The code centres them on ``-o`` / ``+o``. This is the same
   model up to the sign of the predictor's last layer, which starts at zero, so the two runs coincide
   at initialisation. Gamma is the paper's constant 3; the code uses ``(L-1)/2``, which is 3 when
   L = 7.

Where the paper is incomplete and we follow the code:

6. **How TC keeps the 7x7 maps (Eq. 3 vs Eqs. 4-6).** Eq. 3 returns pooled ``[T, C]`` features, yet
   Eq. 4 runs a 3D convolution over ``f_tilde`` and Eqs. 5-6 sum it over H x W. The paper does not
   say where those maps come from. The code broadcasts the pooled result of Eq. 3 over H x W and adds
   it to ``f_hat`` (a residual), so that ``G(f_tilde_q) = G(f_hat_q) + M.(W_v G(f_hat_q))``. That is our
   default. ``tc_residual=False`` is the other consistent reading: ``W_v`` is applied at every cell and
   ``M`` mixes whole frames, so ``G(f_tilde)`` equals Eq. 3 exactly. Note what it costs: without the
   residual the query's frame order is lost after TC (attention has no positional term), and it
   enters only through the TTM's ``phi``. At the identity initialisation, reversing a query's frames
   changes nothing. The reported results come from the code, i.e. with the residual.

Where the paper is silent and we chose something other than the code:

7. **Exact identity initialisation of the TTM** (asked for in the issue). ``a = 1 + tanh(u_a)`` and
   ``b = tanh(u_b)``, with the last linear layer zero-initialised. The code uses ``(a, b) = tanh(u)``
   with bias ``(2, 0)``, which gives ``a = 0.964`` at init (a slight zoom) and ``a`` limited to
   ``(-1, 1)``. Ours is the form of the code's (unused) ``theta_add1`` helper, so ``a`` lies in
   ``(0, 2)``. As in any zero-initialised spatial-transformer head, at the exact initial point the
   layers *before* that zero layer get zero gradient, and the same holds for the offset predictor.
   They move once the last layers do, after one step.
8. **Support in any order.** The code assumes class-major order; we sort by label.
9. **Deterministic on CUDA.** The warp is an explicit interpolation matrix applied with ``bmm``. It
   gives the same values and the same one-sided derivative at integer positions as the code's
   ``grid_sample(align_corners=True, padding_mode="zeros")``, without its atomics. Max pooling is a
   block ``amax`` with the same values as ``MaxPool3d`` (floor mode). The trainer must still set
   ``torch.backends.cudnn.deterministic`` for the 3D convolutions.

Taken from the code because the paper is silent: the localisation net L (Conv3d 64 / 128 with BN,
MaxPool3d(2), global max, Linear 32, Linear 2, tanh); the offset scale 0.75; the 9 perturbation
vectors ``{0, +-e_x, +-e_y, +-(e_x+e_y), +-(e_x-e_y)} * 0.2``; averaging the per-perturbation
*normalised* masks, i.e. the features (body text "use the average of corresponding features"); the
zero-initialised offset predictor; a separate TC (its own ``W_k, W_q, W_v``) for the k-shot
prototype, whose ``W_v`` is also applied to the queries when ``K > 1``, so that queries and
prototypes share a feature space (paper, after Eq. 3); ``1/sqrt(D)`` in Eq. 2; dropout 0.5 on the
input features during training (the code's ``--dropout`` default, applied to the backbone output);
the loss summed over the queries of a task (Eq. 9 is a sum, and so is the code's ``loss``).

Parameters not used in every episode: ``prototype_tc.*`` is used only when ``K > 1`` (paper: for
K = 1 the prototype is the shot itself), so its gradients are ``None`` in 1-shot episodes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fsv.errors import FsvInputError
from fsv.heads.models.interface import HeadOutput, RecognitionHead
from fsv.heads.models.registry import register_head


def _preset(train_episodes: int, decay_every: int, lr_gamma: float, momentum: float = 0.9) -> dict[str, Any]:
    """A preset in episodes: SGD at lr 1e-3, multiplied by ``lr_gamma`` every ``decay_every`` episodes."""
    return {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": momentum,
        "weight_decay": 0.0,
        "episodes_per_update": 16,
        "train_episodes": train_episodes,
        "lr_milestones": list(range(decay_every, train_episodes, decay_every)),
        "lr_gamma": lr_gamma,
        "seq_len": 8,
        "view": "grid",
    }


DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "ucf101": _preset(40_000, 1000, 0.5),  # x0.5 every 5 epochs, 200 epochs
    "hmdb51": _preset(40_000, 1000, 0.5),  # x0.5 every 5 epochs, 200 epochs
    "ssv2": _preset(120_000, 6000, 0.8),  # x0.8 every 30 epochs, 600 epochs
    "kinetics100": _preset(40_000, 4000, 0.9, momentum=0.0),  # x0.9 every 20 epochs, 200 epochs, "without momentum"
}
"""The supplementary's schedules per dataset, in episodes (200 per epoch)."""

#: The 9 perturbation directions of the code: the prediction itself plus 8 directions (supp.).
PERTURBATION_DIRECTIONS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))


class BlockMaxPool3d(nn.Module):
    """``MaxPool3d(kernel, stride=kernel)`` in floor mode, as a reshape + ``amax`` (deterministic backward on CUDA).

    ``[B, C, T, H, W] -> [B, C, T // kt, H // kh, W // kw]``.
    """

    def __init__(self, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt, kh, kw = self.kernel
        b, c, t, h, w = x.shape
        t, h, w = t // kt, h // kh, w // kw
        x = x[:, :, : t * kt, : h * kh, : w * kw].reshape(b, c, t, kt, h, kh, w, kw)
        return x.amax(dim=(3, 5, 7))


def spatial_pool(f: torch.Tensor) -> torch.Tensor:
    """``G``: global average pooling over the spatial cells, ``[..., D, H, W] -> [..., D]``."""
    return f.mean(dim=(-2, -1))


def temporal_warp(f: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``T_phi`` of Eq. 1: linear temporal interpolation at the affinely mapped times.

    ``f`` is ``[B, T, ...]`` and ``phi`` ``[B, 2]`` = ``(a, b)``. Output frame ``i`` is ``f`` read at the
    normalised time ``a * t_i + b``, where ``t_i = linspace(-1, 1, T)``. Frames interpolate linearly,
    and a time outside ``[-1, 1]`` is blended with zeros. This matches ``grid_sample(align_corners=True,
    padding_mode="zeros")``, including the one-sided derivative at integer positions. ``a = 1, b = 0``
    gives ``f`` exactly. Returns ``[B, T, ...]``.
    """
    n, t = f.shape[:2]
    a, b = phi[:, 0:1], phi[:, 1:2]  # [B, 1]
    centre = (t - 1) / 2
    i = torch.arange(t, device=f.device, dtype=phi.dtype)  # [T]
    # Source index: (a t_i + b + 1) * centre = i + (a - 1)(i - centre) + b * centre (exact at identity).
    pos = i + (a - 1) * (i - centre) + b * centre  # [B, T]
    i0 = pos.detach().floor()
    w = pos - i0  # [B, T], gradient flows through w only
    j = torch.arange(t, device=f.device, dtype=phi.dtype)  # [T]
    below = (j == i0.unsqueeze(-1)).to(f.dtype)  # [B, T, T]; rows are all-zero outside the clip
    above = (j == (i0 + 1).unsqueeze(-1)).to(f.dtype)
    weights = (1 - w).unsqueeze(-1).to(f.dtype) * below + w.unsqueeze(-1).to(f.dtype) * above  # [B, T_out, T_in]
    return torch.bmm(weights, f.reshape(n, t, -1)).reshape(f.shape)


class TemporalTransformModule(nn.Module):
    """TTM, Eq. 1: ``phi = (a, b) = L(f)``, ``f_hat = T_phi(f)``; identity at initialisation.

    ``L`` is the localisation net of the authors' code (paper: "several light trainable layers").
    """

    def __init__(self, feature_dim: int, channels: tuple[int, int] = (64, 128), hidden: int = 32) -> None:
        super().__init__()
        c1, c2 = channels
        self.localization = nn.Sequential(
            nn.Conv3d(feature_dim, c1, 3, padding=1),
            nn.BatchNorm3d(c1),
            BlockMaxPool3d((2, 2, 2)),
            nn.ReLU(),
            nn.Conv3d(c1, c2, 3, padding=1),
            nn.BatchNorm3d(c2),
            BlockMaxPool3d((2, 2, 2)),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(c2, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        last = self.fc[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def localize(self, f: torch.Tensor) -> torch.Tensor:
        """``phi = L(f)``: ``f`` ``[B, T, D, H, W]`` -> ``[B, 2]`` = ``(a, b)``, with ``a = 1 + tanh``, ``b = tanh``."""
        h = self.localization(f.transpose(1, 2))  # [B, c2, T/4, H/4, W/4]
        u = torch.tanh(self.fc(h.amax(dim=(2, 3, 4))))  # global max pool -> [B, 2]
        return torch.stack([1 + u[:, 0], u[:, 1]], dim=-1)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1: ``f`` ``[B, T, D, H, W]`` -> (``f_hat`` ``[B, T, D, H, W]``, ``phi`` ``[B, 2]``)."""
        phi = self.localize(f)
        return temporal_warp(f, phi), phi


class TemporalCoordination(nn.Module):
    """TC, Eqs. 2-3: a temporal correlation ``M`` and the projections ``W_k, W_q, W_v`` (1x1, no bias)."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.W_k = nn.Linear(feature_dim, feature_dim, bias=False)
        self.W_q = nn.Linear(feature_dim, feature_dim, bias=False)
        self.W_v = nn.Linear(feature_dim, feature_dim, bias=False)
        self.dim = feature_dim

    def correlation(self, g_s: torch.Tensor, g_q: torch.Tensor) -> torch.Tensor:
        """Eq. 2 for pooled features ``g_s = G(f_s)`` ``[..., T, D]`` and ``g_q = G(f_q)`` ``[..., T, D]``.

        Batch dimensions broadcast. Returns ``M`` ``[..., T_s, T_q]``, whose rows sum to 1 over the query times.
        """
        logits = self.W_k(g_s) @ self.W_q(g_q).transpose(-1, -2) / math.sqrt(self.dim)
        return logits.softmax(dim=-1)

    def project(self, f: torch.Tensor) -> torch.Tensor:
        """``W_v`` at every cell: ``[..., D, H, W] -> [..., D, H, W]``, so that ``G(W_v f) = W_v G(f)``."""
        return torch.einsum("ed,...dhw->...ehw", self.W_v.weight, f)


def offset_mask(o: torch.Tensor, height: int, width: int, gamma: float) -> torch.Tensor:
    """Eq. 11: the soft 2D mask ``I_o = m_y x m_x`` for offsets ``o`` ``[..., 2]`` = ``(o_x, o_y)``.

    Coordinates are normalised, ``x = linspace(-1, 1, width)``. ``m_x`` is 1 where ``|x - o_x| < 1``
    and falls off with slope ``gamma`` outside that window. Returns ``[..., height, width]``.
    """
    x = torch.linspace(-1, 1, width, device=o.device, dtype=o.dtype)
    y = torch.linspace(-1, 1, height, device=o.device, dtype=o.dtype)
    m_x = F.relu(1 - gamma * F.relu((x - o[..., 0:1]).abs() - 1))  # [..., W]
    m_y = F.relu(1 - gamma * F.relu((y - o[..., 1:2]).abs() - 1))  # [..., H]
    return m_y.unsqueeze(-1) * m_x.unsqueeze(-2)


class SpatialCoordination(nn.Module):
    """SC: the offset predictor ``S`` of supplementary Table 5 (Eq. 4) and the masked pooling (Eqs. 5, 6, 11)."""

    def __init__(
        self, feature_dim: int, channels: int = 128, hidden: int = 64, offset_scale: float = 0.75, gamma: float = 3.0
    ) -> None:
        super().__init__()
        # Table 5 (BCTHW): Conv3D+BN, MaxPool3D(1,2,2)+ReLU, twice; spatial global max pool; Conv1D+ReLU; Conv1D+Tanh.
        self.S = nn.Sequential(
            nn.Conv3d(2 * feature_dim, channels, 3, padding=1),
            nn.BatchNorm3d(channels),
            BlockMaxPool3d((1, 2, 2)),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.BatchNorm3d(channels),
            BlockMaxPool3d((1, 2, 2)),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, 2, 1), nn.Tanh())
        last = self.head[-2]
        assert isinstance(last, nn.Conv1d)
        nn.init.zeros_(last.weight)  # zero offsets at initialisation (authors' code)
        nn.init.zeros_(last.bias)
        self.offset_scale = offset_scale
        self.gamma = gamma

    def predict_offsets(self, f_tilde_s: torch.Tensor, f_tilde_q: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``O = S(Cat(f_tilde_s, f_tilde_q))``; inputs ``[B, T, D, H, W]`` -> ``O`` ``[B, T, 2]`` = ``(o_x, o_y)``."""
        pairs = torch.cat([f_tilde_s, f_tilde_q], dim=2).transpose(1, 2)  # [B, 2D, T, H, W]
        h = self.S(pairs).amax(dim=(-2, -1))  # spatial global max pool -> [B, C, T]
        return self.offset_scale * self.head(h).transpose(1, 2)

    def pooling_weights(self, o: torch.Tensor, perturbations: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Per-cell weights of Eq. 5 (Eq. 6 with ``-o``), averaged over the perturbed offsets ``o + delta_p``.

        ``o`` is ``[..., 2]`` and ``perturbations`` ``[P, 2]``. Returns ``mean_p I_{o+delta_p} / sum I_{o+delta_p}``,
        shaped ``[..., H, W]``, which sums to 1 over the cells.
        """
        masks = offset_mask(o.unsqueeze(-2) + perturbations, height, width, self.gamma)  # [..., P, H, W]
        masks = masks / masks.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        return masks.mean(dim=-3)


@register_head(
    "ta2n",
    preset=DATASET_PRESETS["ucf101"],
    description="TA2N (AAAI 2022): temporal affine warp (TTM) + temporal/spatial action coordination (ACM), frame-wise cosine",
    dataset_presets=DATASET_PRESETS,
)
class TA2N(RecognitionHead):
    """TA2N head on ResNet-50 layer4 grids (view ``grid``).

    ``forward(support [N*K, T, D, H, W], support_labels [N*K], query [Q, T, D, H, W], way)`` returns
    ``HeadOutput(logits [Q, way], extra)``, with logits ``= -d`` of Eqs. 7-8. ``extra`` holds:

    * ``phi_support`` ``[N*K, 2]`` and ``phi_query`` ``[Q, 2]``: the TTM's ``(a, b)``, in input order;
    * ``offsets`` ``[Q, way, T, 2]``: the predicted spatial offsets ``O``, before any perturbation.

    ``loss`` is Eq. 9, the cross-entropy *summed* over the queries.
    Call :meth:`set_progress` during training so that the perturbations decay (see the module docstring).
    """

    view = "grid"

    def __init__(
        self,
        feature_dim: int = 2048,
        seq_len: int = 8,
        ttm_channels: tuple[int, int] = (64, 128),
        ttm_hidden: int = 32,
        sc_channels: int = 128,
        sc_hidden: int = 64,
        offset_scale: float = 0.75,
        gamma: float = 3.0,
        perturbation_amplitude: float = 0.2,
        perturbation_decay: float = 0.5,
        perturbation_decay_every: int = 8000,
        train_episodes: int = 40_000,
        dropout: float = 0.5,
        tc_residual: bool = True,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.tc_residual = tc_residual
        self.seq_len = seq_len
        self.dropout = nn.Dropout(dropout)
        self.ttm = TemporalTransformModule(feature_dim, ttm_channels, ttm_hidden)
        self.prototype_tc = TemporalCoordination(feature_dim)  # k-shot prototypes (supp.), K > 1 only
        self.tc = TemporalCoordination(feature_dim)  # ACM, Eqs. 2-3
        self.sc = SpatialCoordination(feature_dim, sc_channels, sc_hidden, offset_scale, gamma)  # ACM, Eqs. 4-6
        self.register_buffer(
            "perturbation_directions", torch.tensor(PERTURBATION_DIRECTIONS, dtype=torch.float32), persistent=False
        )
        self.initial_perturbation_amplitude = perturbation_amplitude
        self.perturbation_decay = perturbation_decay
        self.perturbation_decay_every = perturbation_decay_every
        self.train_episodes = train_episodes
        self.progress = 0.0
        self.perturbation_amplitude = perturbation_amplitude

    # ----------------------------------------------------------------- the trainer's hook
    def set_progress(self, fraction_done: float, train_episodes: int | None = None) -> None:
        """Tell the head how far training has gone, so that the perturbation amplitude decays.

        ``fraction_done`` is ``episodes_done / train_episodes``, in ``[0, 1]``. ``train_episodes`` defaults to
        the constructor's value. The amplitude is ``perturbation_amplitude * decay ** floor(episodes_done /
        perturbation_decay_every)``, i.e. ``0.2 * 0.5 ** floor(epoch / 40)`` with 200 episodes per epoch.
        """
        if not 0.0 <= fraction_done <= 1.0:
            raise FsvInputError(f"fraction_done must lie in [0, 1], got {fraction_done}")
        if train_episodes is not None:
            self.train_episodes = int(train_episodes)
        self.progress = float(fraction_done)
        decays = math.floor(fraction_done * self.train_episodes / self.perturbation_decay_every + 1e-9)
        self.perturbation_amplitude = self.initial_perturbation_amplitude * self.perturbation_decay**decays

    def perturbations(self) -> torch.Tensor:
        """The offset perturbations ``[P, 2]``: the 9 directions times the current amplitude in training, ``[[0, 0]]`` in eval."""
        if self.training:
            return self.perturbation_directions * self.perturbation_amplitude
        return self.perturbation_directions[:1] * 0.0

    # ----------------------------------------------------------------- stages
    def prototypes(self, f_hat_s: torch.Tensor) -> torch.Tensor:
        """Supplementary, "Prototype of Multiple Shots": ``[N, K, T, D, H, W] -> p_hat_s [N, T, D, H, W]``.

        Each shot ``i`` is aligned to a reference shot ``r`` by TC (Eqs. 2-3): ``f_hat_{s,i} <-
        M_{r,i} . (W_v f_hat_{s,i})``. The prototype is the mean over the shots. In training ``r`` is drawn
        at random for each class (paper); in evaluation the result is averaged over every ``r``, which
        is the expectation of that draw.
        """
        n, k = f_hat_s.shape[:2]
        g = spatial_pool(f_hat_s)  # [N, K, T, D]
        M = self.prototype_tc.correlation(g.unsqueeze(2), g.unsqueeze(1))  # [N, K_ref, K_shot, T, T]
        if self.training:
            ref = torch.randint(k, (n,), device=f_hat_s.device)
            ref_weights = F.one_hot(ref, k).to(M.dtype)  # [N, K_ref]
        else:
            ref_weights = M.new_full((n, k), 1.0 / k)
        M = torch.einsum("nr,nrixy->nixy", ref_weights, M)  # [N, K_shot, T, T]
        values = self.prototype_tc.project(f_hat_s)  # [N, K, T, D, H, W]
        return torch.einsum("nixy,niydhw->nxdhw", M, values) / k

    def action_coordination(
        self, p_hat_s: torch.Tensor, f_hat_q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ACM for every (prototype, query) pair: ``p_hat_s [N, T, D, H, W]``, ``f_hat_q [Q, T, D, H, W]``.

        Returns ``f_bar_s [N, Q, T, D]``, ``f_bar_q [N, Q, T, D]`` and offsets ``O [N, Q, T, 2]``.
        """
        n, q = p_hat_s.shape[0], f_hat_q.shape[0]
        t, d, h, w = p_hat_s.shape[1:]
        g_s, g_q = spatial_pool(p_hat_s), spatial_pool(f_hat_q)  # G: [N, T, D], [Q, T, D]
        # TC, Eq. 2: M [N, Q, T_s, T_q].
        M = self.tc.correlation(g_s.unsqueeze(1), g_q.unsqueeze(0))
        if self.tc_residual:
            # Eq. 3 on pooled features, added to the 7x7 maps (authors' code): f_tilde [.., T, D, H, W].
            f_tilde_q = f_hat_q.unsqueeze(0) + torch.einsum("nqxy,qyd->nqxd", M, self.tc.W_v(g_q))[..., None, None]
            f_tilde_s = p_hat_s + self.tc.W_v(g_s)[..., None, None]
        else:
            # Eq. 3 at every cell: G(f_tilde_q) = M . (W_v G(f_hat_q)) and G(f_tilde_s) = W_v G(p_hat_s) exactly.
            f_tilde_q = torch.einsum("nqxy,qydhw->nqxdhw", M, self.tc.project(f_hat_q))
            f_tilde_s = self.tc.project(p_hat_s)
        # SC, Eq. 4: O for every pair, [N*Q, T, 2] -> [N, Q, T, 2].
        pair_s = f_tilde_s.unsqueeze(1).expand(n, q, t, d, h, w).reshape(n * q, t, d, h, w)
        offsets = self.sc.predict_offsets(pair_s, f_tilde_q.reshape(n * q, t, d, h, w)).reshape(n, q, t, 2)
        delta = self.perturbations().to(offsets.dtype)
        # Eqs. 5-6 with the masks of Eq. 11, averaged over the perturbations: weights [N, Q, T, H, W].
        I_s = self.sc.pooling_weights(offsets, delta, h, w)
        I_q = self.sc.pooling_weights(-offsets, -delta, h, w)
        f_bar_s = torch.einsum("nqthw,ntdhw->nqtd", I_s, f_tilde_s)
        f_bar_q = torch.einsum("nqthw,nqtdhw->nqtd", I_q, f_tilde_q)
        return f_bar_s, f_bar_q, offsets

    # ----------------------------------------------------------------- episode
    def _check(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> int:
        """Validate shapes and labels; return the shot count K."""
        for name, x in (("support", support), ("query", query)):
            if x.dim() != 5 or x.shape[1] != self.seq_len or x.shape[2] != self.feature_dim:
                raise FsvInputError(
                    f"ta2n: {name} must be [B, {self.seq_len}, {self.feature_dim}, H, W], got {tuple(x.shape)}"
                )
        if support.shape[3:] != query.shape[3:]:
            raise FsvInputError(
                f"ta2n: support grid {tuple(support.shape[3:])} differs from query grid {tuple(query.shape[3:])}"
            )
        if support_labels.shape != (support.shape[0],):
            raise FsvInputError(f"ta2n: support_labels must be [{support.shape[0]}], got {tuple(support_labels.shape)}")
        if way < 1 or support.shape[0] % way:
            raise FsvInputError(f"ta2n: {support.shape[0]} support videos do not split into {way} classes")
        k = support.shape[0] // way
        counts = torch.bincount(support_labels.long().clamp(0, way), minlength=way + 1)
        if support_labels.min() < 0 or support_labels.max() >= way or bool((counts[:way] != k).any()):
            raise FsvInputError(f"ta2n: support_labels must hold each of 0..{way - 1} exactly {k} times")
        return k

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        """One episode: ``support [N*K, T, D, H, W]``, ``support_labels [N*K]``, ``query [Q, T, D, H, W]`` -> logits ``[Q, N]``."""
        k = self._check(support, support_labels, query, way)
        dtype = self.tc.W_v.weight.dtype
        f_s = self.dropout(support.to(dtype))
        f_q = self.dropout(query.to(dtype))
        # Stage 1, TTM (Eq. 1); support and query pass separately, as in the authors' code (BN batches).
        f_hat_s, phi_s = self.ttm(f_s)
        f_hat_q, phi_q = self.ttm(f_q)
        # k-shot prototypes; classes in label order.
        order = torch.argsort(support_labels, stable=True)
        f_hat_s = f_hat_s[order].reshape(way, k, *f_hat_s.shape[1:])
        if k == 1:
            p_hat_s = f_hat_s[:, 0]
        else:
            p_hat_s = self.prototypes(f_hat_s)
            f_hat_q = self.prototype_tc.project(f_hat_q)  # same feature space as the prototypes
        # Stage 2, ACM (Eqs. 2-6).
        f_bar_s, f_bar_q, offsets = self.action_coordination(p_hat_s, f_hat_q)
        # Eq. 8: frame-wise cosine distance, summed over time -> [N, Q];  Eq. 7: logits = -d.
        d = (1 - F.cosine_similarity(f_bar_q, f_bar_s, dim=-1)).sum(dim=-1)
        return HeadOutput(
            logits=-d.transpose(0, 1),
            extra={"phi_support": phi_s, "phi_query": phi_q, "offsets": offsets.transpose(0, 1)},
        )

    def loss(self, out: HeadOutput, query_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 9: cross-entropy of the softmax over ``-d`` (Eq. 7), summed over the queries."""
        return {"loss": F.cross_entropy(out.logits, query_labels, reduction="sum")}
