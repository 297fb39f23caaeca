"""Vision transformers as feature extractors: CLIP's image tower (Radford et al. 2021) and the
VideoMAE / VideoMAE V2 video encoders (Tong et al. 2022, Wang et al. 2023), one module.

The two families differ only in switches of :class:`ViTConfig`:

============================  =====================================  ==========================================
switch                        CLIP ViT (OpenAI)                      VideoMAE / VideoMAE V2 (``modeling_finetune``)
============================  =====================================  ==========================================
patch embedding               ``Conv2d`` without bias, one frame     ``Conv3d`` with bias, 2-frame tubelets
class token                   yes                                    no
position embedding            learned                                fixed sinusoid table
LayerNorm before the blocks   ``ln_pre``                             none
MLP activation                quick GELU, ``x·σ(1.702x)``            exact GELU
LayerNorm eps                 1e-5                                   1e-6
pooled output                 ``ln_post(class token) @ proj``        ``fc_norm(mean of all tokens)``
============================  =====================================  ==========================================

Parameter names are fsv's own (``patch_embed``, ``cls_token``, ``pos_embed``, ``norm_pre``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, ``proj``); each
published checkpoint layout is mapped onto them by :mod:`fsv.pipeline.backbones.vit_weights`.
VideoMAE's separate ``q_bias`` / ``v_bias`` become one ``qkv`` bias whose key third is zero, which
is what the authors' ``Attention`` adds. Classifier heads and CLIP's text tower are not part of
the model (the features never use them).

``forward(x)`` returns the fields fsv stores: ``features`` (the pooled output) and, when built with
``grid=True``, ``grid``, the last block's patch tokens as a channels-first grid, as
``transformers`` returns them in ``last_hidden_state`` (not post-LayerNormed): ``[B, D, h, w]``
for an image, ``[B, D, t, h, w]`` for a video (time-major token order, as the 3-D patch
convolution flattens). Attention runs through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """The architecture. ``tubelet`` 0 means an image model (input ``[B, 3, H, W]``); otherwise
    the input is ``[B, 3, frames, H, W]`` cut into ``tubelet x patch x patch`` tubes."""

    width: int
    depth: int
    heads: int
    mlp: int
    patch: int
    image: int = 224
    frames: int = 1
    tubelet: int = 0
    family: Literal["clip", "videomae"] = "clip"  # the switches of the module docstring
    proj: int | None = None  # CLIP's output projection
    eps: float | None = None  # None: the family's (1e-5 CLIP, 1e-6 VideoMAE)

    @property
    def clip(self) -> bool:
        return self.family == "clip"

    @property
    def layer_norm_eps(self) -> float:
        return self.eps if self.eps is not None else (1e-5 if self.clip else 1e-6)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Patch-token grid without the channel axis: ``(h, w)`` or ``(t, h, w)``."""
        side = self.image // self.patch
        return (side, side) if not self.tubelet else (self.frames // self.tubelet, side, side)

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def out_dim(self) -> int:
        return self.proj or self.width


def sinusoid_table(n: int, d: int) -> torch.Tensor:
    """VideoMAE's fixed position table ``[n, d]`` float32: position ``p``, channel ``j`` is
    ``sin`` (even ``j``) or ``cos`` (odd ``j``) of ``p / 10000^(2⌊j/2⌋/d)`` (computed in float64)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(d, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / d)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class QuickGELU(nn.Module):
    """CLIP's activation ``x·σ(1.702x)`` (not the exact GELU: using ``nn.GELU`` with OpenAI's
    weights is a known silent error)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention, one ``qkv`` projection (q, k, v stacked in that order)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, N, D]``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``, ``[B, N, D] -> [B, N, D]``."""

    def __init__(self, width: int, hidden: int, act: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = act
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp, QuickGELU() if cfg.clip else nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """``forward(x) -> {"features": [B, out_dim], "grid"?: [B, width, *grid_shape]}`` (see the
    module docstring); ``x`` is ``[B, 3, H, W]`` (image models) or ``[B, 3, frames, H, W]``."""

    def __init__(self, cfg: ViTConfig, *, grid: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = grid
        if cfg.tubelet:
            self.patch_embed: nn.Module = nn.Conv3d(
                3, cfg.width, (cfg.tubelet, cfg.patch, cfg.patch), stride=(cfg.tubelet, cfg.patch, cfg.patch)
            )
        else:
            self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch, bias=not cfg.clip)
        if cfg.clip:
            self.cls_token = nn.Parameter(torch.randn(cfg.width) * cfg.width**-0.5)
            self.pos_embed = nn.Parameter(torch.randn(cfg.num_patches + 1, cfg.width) * cfg.width**-0.5)
            self.norm_pre: nn.Module = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        else:
            self.register_buffer("pos_embed", sinusoid_table(cfg.num_patches, cfg.width), persistent=False)
            self.norm_pre = nn.Identity()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.proj = nn.Linear(cfg.width, cfg.proj, bias=False) if cfg.proj else None
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's tokens ``[B, (1 +) num_patches, width]`` (class token first for CLIP)."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cfg.clip:
            x = torch.cat([self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.norm_pre(x + self.pos_embed.to(x.dtype))
        for blk in self.blocks:
            x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.tokens(x)
        if self.cfg.clip:
            pooled = self.norm(t[:, 0])
            patches = t[:, 1:]
        else:
            pooled = self.norm(t.mean(dim=1))
            patches = t
        out = {"features": self.proj(pooled) if self.proj is not None else pooled}
        if self.grid:
            out["grid"] = patches.transpose(1, 2).reshape(t.shape[0], self.cfg.width, *self.cfg.grid_shape)
        return out
