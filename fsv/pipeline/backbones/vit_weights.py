"""The published checkpoint layouts of the vision transformers, mapped onto
:class:`fsv.pipeline.backbones.vit.VisionTransformer`'s parameter names.

==============================  ==================================================  ==========================
layout                          files                                               reader
==============================  ==================================================  ==========================
OpenAI CLIP                     ``ViT-B-16.pt`` (TorchScript archive, fp16)         :func:`read_clip`
open_clip (OpenAI names)        ``open_clip_pytorch_model.bin``, ``.safetensors``   :func:`read_clip`
transformers CLIP               folder: ``config.json`` + ``model.safetensors``     :func:`read_clip`
VideoMAE / VideoMAE V2 authors  ``vit_g_hybrid_pt_1200e_k710_ft.pth``,              :func:`read_videomae`
                                ``vit_b_k710_dl_from_giant.pth`` (``model`` /
                                ``module``; ``qkv`` + ``q_bias`` / ``v_bias``)
mmaction2 VideoMAE              ``vit-base-p16_videomae-k400-pre_16x4x1_...pth``     :func:`read_videomae`
                                (``state_dict``; ``backbone.``, mmcv FFN names)
transformers VideoMAE           folder: ``config.json`` + ``model.safetensors``     :func:`read_videomae`
==============================  ==================================================  ==========================

TorchScript archives are read by :func:`fsv.safe_pickle.torchscript.read_torchscript` (never
``torch.jit.load``); ``.pth`` / ``.bin`` with ``torch.load(weights_only=True)``. CLIP's text tower,
``logit_scale`` and the classifiers (``head``, ``classifier``) are dropped: features never use
them. Every tensor comes back as float32. A key the mapping does not know is kept under its own
name, so a checkpoint of another architecture fails the strict load with its keys named.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.vit import ViTConfig, sinusoid_table
from fsv.pipeline.hf_folder import read_config, read_hf_weights
from fsv.pipeline.weights import read_checkpoint


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value.float()
    return out


# OpenAI's (and open_clip's) visual tower, keys after "visual."
OPENAI_CLIP_RULES = [
    (r"^conv1\.weight$", "patch_embed.weight"),
    (r"^class_embedding$", "cls_token"),
    (r"^positional_embedding$", "pos_embed"),
    (r"^ln_pre\.", "norm_pre."),
    (r"^ln_post\.", "norm."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$", r"blocks.\1.attn.qkv.weight"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_bias$", r"blocks.\1.attn.qkv.bias"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.fc2."),
]

HF_CLIP_RULES = [
    (r"^vision_model\.embeddings\.patch_embedding\.weight$", "patch_embed.weight"),
    (r"^vision_model\.embeddings\.class_embedding$", "cls_token"),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "pos_embed"),
    (r"^vision_model\.pre_layrnorm\.", "norm_pre."),
    (r"^vision_model\.post_layernorm\.", "norm."),
    (r"^visual_projection\.weight$", "proj.weight"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm1\.", r"blocks.\1.norm1."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm2\.", r"blocks.\1.norm2."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.", r"blocks.\1.attn.\2."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
]

# the authors' modeling_finetune (VideoMAE and VideoMAE V2), and mmaction2's port (after "backbone.")
VIDEOMAE_RULES = [
    (r"^patch_embed\.proj\.", "patch_embed."),
    (r"^patch_embed\.projection\.", "patch_embed."),
    (r"^blocks\.(\d+)\.mlp\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^blocks\.(\d+)\.mlp\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^fc_norm\.", "norm."),
    (r"^blocks\.(\d+)\.attn\.([qv])_bias$", r"blocks.\1.attn.\2.bias"),
]

HF_VIDEOMAE_RULES = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed."),
    (r"^fc_norm\.", "norm."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$", r"blocks.\1.attn.\2.\3"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.q_bias$", r"blocks.\1.attn.query.bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.v_bias$", r"blocks.\1.attn.value.bias"),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
]


def _fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Separate ``attn.{q,k,v}`` (or ``query/key/value``) weights and biases become one
    ``attn.qkv``; a missing bias is zero (VideoMAE has no key bias: it would not change attention)."""
    out = dict(state)
    prefixes = {
        m.group(1) for k in state if (m := re.match(r"^(blocks\.\d+\.attn\.)(?:q|k|v|query|key|value)\.weight$", k))
    }
    for p in sorted(prefixes):
        names = ("q", "k", "v") if f"{p}q.weight" in state else ("query", "key", "value")
        weights = [out.pop(f"{p}{n}.weight") for n in names]
        biases = [out.pop(f"{p}{n}.bias", None) for n in names]
        out[f"{p}qkv.weight"] = torch.cat(weights)
        if any(b is not None for b in biases):
            out[f"{p}qkv.bias"] = torch.cat(
                [b if b is not None else torch.zeros(w.shape[0]) for b, w in zip(biases, weights)]
            )
    return out


def openai_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI / open_clip keys (full model or visual tower alone) -> fsv's."""
    visual = (
        {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        if any(k.startswith("visual.") for k in state)
        else state
    )
    out = _rename(visual, OPENAI_CLIP_RULES)
    if "proj" in out:
        out["proj.weight"] = out.pop("proj").t().contiguous()  # x @ proj == Linear with weight proj.T
    return out


def hf_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPModel`` / ``CLIPVisionModelWithProjection`` keys -> fsv's (text tower dropped)."""
    vision = {
        k: v
        for k, v in state.items()
        if k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids")
    }
    return _fuse_qkv(_rename(vision, HF_CLIP_RULES))


def videomae_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' fine-tuned VideoMAE / VideoMAE V2 keys, or mmaction2's (``backbone.`` ...),
    -> fsv's (the classifier, ``head`` or ``cls_head``, dropped)."""
    kept = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith(("head.", "cls_head."))}
    table = kept.pop("pos_embed", None)  # mmaction2 saves its fixed sinusoid table
    if table is not None:
        fixed = sinusoid_table(table.shape[-2], table.shape[-1])
        if table.reshape(fixed.shape).float().sub(fixed).abs().max() > 1e-4:
            raise FsvInputError(
                "the checkpoint's pos_embed is not VideoMAE's fixed sinusoid table (a learned position embedding): "
                "not the architecture of the videomae cards"
            )
    out = _rename(kept, VIDEOMAE_RULES)
    for i in sorted({int(m.group(1)) for k in out if (m := re.match(r"^blocks\.(\d+)\.attn\.q\.bias$", k))}):
        p = f"blocks.{i}.attn."
        q, v = out.pop(f"{p}q.bias"), out.pop(f"{p}v.bias")
        out[f"{p}qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def hf_videomae_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``VideoMAEForVideoClassification`` / ``VideoMAEModel`` keys -> fsv's."""
    kept = {
        k.removeprefix("videomae."): v
        for k, v in state.items()
        if not k.startswith("classifier.") and not k.endswith("position_ids")
    }
    return _fuse_qkv(_rename(kept, HF_VIDEOMAE_RULES))


def check_folder(path: Path, cfg: ViTConfig) -> None:
    """A transformers folder's ``config.json`` describes the card's architecture, or an input error
    names the first difference (an open_clip LAION model converted to transformers uses exact GELU,
    not OpenAI's quick GELU: its weights would give wrong features without any other error)."""
    config = read_config(path)
    vc = dict(config.get("vision_config") or config)
    want = {
        "hidden_size": cfg.width,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.mlp,
        "patch_size": cfg.patch,
        "image_size": cfg.image,
        "hidden_act": "quick_gelu" if cfg.clip else "gelu",
    }
    if cfg.tubelet:
        want |= {"tubelet_size": cfg.tubelet, "num_frames": cfg.frames, "use_mean_pooling": True}
    for key, value in want.items():
        if key in vc and vc[key] != value:
            raise FsvInputError(
                f"{path / 'config.json'}: {key} is {vc[key]!r}, this backbone's is {value!r}; "
                "read a folder of another architecture with --backbone hf"
            )


def read_clip(path: Path, cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """CLIP image-tower weights from any layout of the module docstring, in fsv's names (a
    transformers folder checked against ``cfg``). open_clip files carry no architecture: they are
    read as OpenAI's (quick GELU), which OpenAI's weights and open_clip's ``-quickgelu`` models are."""
    if path.is_dir():
        check_folder(path, cfg)
        return hf_clip_state(read_hf_weights(path))
    state = read_checkpoint(path)
    if any(k.startswith("vision_model.") for k in state):
        return hf_clip_state(state)
    if not any(k.endswith("conv1.weight") for k in state):
        raise FsvInputError(f"{path}: not a CLIP checkpoint (no visual conv1 / vision_model keys)")
    return openai_clip_state(state)


def read_videomae(path: Path, cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """VideoMAE / VideoMAE V2 encoder weights from any layout of the module docstring, in fsv's
    names (a transformers folder checked against ``cfg``; its ``layer_norm_eps`` is not: fsv
    follows the authors' 1e-6)."""
    if path.is_dir():
        check_folder(path, cfg)
    state = read_hf_weights(path) if path.is_dir() else read_checkpoint(path)
    if any(k.startswith(("videomae.", "embeddings.patch_embeddings")) for k in state):
        return hf_videomae_state(state)
    if any(k.startswith("encoder.") for k in state) and not any(k.startswith("blocks.") for k in state):
        raise FsvInputError(
            f"{path}: a VideoMAE pre-training checkpoint (encoder + decoder); the features come from the fine-tuned "
            "or distilled encoder (e.g. vit_g_hybrid_pt_1200e_k710_ft.pth, vit_b_k710_dl_from_giant.pth)"
        )
    return videomae_state(state)
