"""fsv's transformer backbones against the reference implementation's forward, same weights, same batch.

For each backbone, the transformers model of the card's architecture (``CLIPVisionModelWithProjection``
for CLIP, ``VideoMAEForVideoClassification`` with its ``fc_norm`` eps set to the authors' 1e-6 for
VideoMAE and VideoMAE V2) is built with seeded random weights, mapped into fsv's model by the same
code that reads a transformers folder, and both run the same batch (``--frames`` images for CLIP,
``--clips`` 16-frame clips for VideoMAE) ``--reps`` times, interleaved (alternating which goes
first); the median counts. Printed:
milliseconds per batch of each, the ratio reference / fsv (target >= 1.0: fsv is not slower) and the
largest relative difference of the pooled features (fp32).

    .venv/bin/python bench/vit_forward.py                          # clip-vit-b16, clip-vit-b32, videomaev2-s, videomaev2-b
    .venv/bin/python bench/vit_forward.py --backbones videomaev2-g --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fsv.pipeline.backbones import VIT_CONFIGS
from fsv.pipeline.backbones.vit import VisionTransformer
from fsv.pipeline.backbones.vit_weights import hf_clip_state, hf_videomae_state

TARGET = 1.0


def reference(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The transformers model of card ``name``'s architecture (seeded) and its weights in fsv's names."""
    import transformers

    cfg = VIT_CONFIGS[name]
    torch.manual_seed(0)
    if cfg.clip:
        hf = transformers.CLIPVisionModelWithProjection(
            transformers.CLIPVisionConfig(
                hidden_size=cfg.width,
                intermediate_size=cfg.mlp,
                num_hidden_layers=cfg.depth,
                num_attention_heads=cfg.heads,
                image_size=cfg.image,
                patch_size=cfg.patch,
                projection_dim=cfg.proj,
                hidden_act="quick_gelu",
                layer_norm_eps=cfg.layer_norm_eps,
            )
        ).eval()
        return hf, hf_clip_state(hf.state_dict())
    hf = transformers.VideoMAEForVideoClassification(
        transformers.VideoMAEConfig(
            image_size=cfg.image,
            patch_size=cfg.patch,
            num_frames=cfg.frames,
            tubelet_size=cfg.tubelet,
            hidden_size=cfg.width,
            num_hidden_layers=cfg.depth,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.mlp,
            layer_norm_eps=cfg.layer_norm_eps,
            use_mean_pooling=True,
            num_labels=2,
        )
    ).eval()
    hf.fc_norm.eps = cfg.layer_norm_eps
    return hf, hf_videomae_state(hf.state_dict())


def pooled_reference(hf: torch.nn.Module, x: torch.Tensor, clip: bool) -> torch.Tensor:
    if clip:
        return hf(pixel_values=x).image_embeds
    tokens = hf.videomae(pixel_values=x.transpose(1, 2)).last_hidden_state
    return hf.fc_norm(tokens.mean(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--backbones",
        nargs="+",
        default=["clip-vit-b16", "clip-vit-b32", "videomaev2-s", "videomaev2-b"],
        choices=sorted(VIT_CONFIGS),
    )
    p.add_argument("--frames", type=int, default=8, help="images per CLIP batch")
    p.add_argument("--clips", type=int, default=1, help="16-frame clips per VideoMAE batch")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    console = Console(width=150)
    table = Table(
        title=f"fsv vs transformers forward, same weights and batch ({device}, {args.precision}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.reps})"
    )
    for col in (
        "backbone",
        "batch",
        "params M",
        "fsv ms",
        "reference ms",
        "reference / fsv",
        f">= {TARGET}",
        "max rel diff",
    ):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    rows = []
    for name in args.backbones:
        cfg = VIT_CONFIGS[name]
        hf, state = reference(name)
        ours = VisionTransformer(cfg).eval()
        ours.load_state_dict(state, strict=True)
        hf, ours = hf.to(device), ours.to(device)
        g = torch.Generator().manual_seed(1)
        shape = (
            (args.frames, 3, cfg.image, cfg.image) if cfg.clip else (args.clips, 3, cfg.frames, cfg.image, cfg.image)
        )
        x = torch.rand(shape, generator=g).to(device)
        times: dict[str, list[float]] = {"fsv": [], "ref": []}
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            diff = float(
                (
                    (ours(x)["features"].float() - pooled_reference(hf, x, cfg.clip).float()).abs().max()
                    / pooled_reference(hf, x, cfg.clip).float().abs().max()
                )
            )
            runs = (("fsv", lambda: ours(x)["features"]), ("ref", lambda: pooled_reference(hf, x, cfg.clip)))
            for rep in range(args.reps):
                for key, fn in runs if rep % 2 == 0 else runs[::-1]:  # alternate which runs first
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    fn()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times[key].append(time.perf_counter() - t0)
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratio = ms["ref"] / ms["fsv"]
        params = sum(p.numel() for p in ours.parameters()) / 1e6
        table.add_row(
            name,
            f"{shape[0]} x {'image' if cfg.clip else '16-frame clip'}",
            f"{params:.1f}",
            f"{ms['fsv']:.0f}",
            f"{ms['ref']:.0f}",
            f"{ratio:.2f}",
            "yes" if ratio >= TARGET else "NO",
            f"{diff:.1e}",
        )
        rows.append(
            {
                "backbone": name,
                "batch": shape[0],
                "fsv_ms": ms["fsv"],
                "reference_ms": ms["ref"],
                "ratio": ratio,
                "max_rel_diff": diff,
                "device": str(device),
                "precision": args.precision,
            }
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"forward": rows}, indent=1))


if __name__ == "__main__":
    main()
