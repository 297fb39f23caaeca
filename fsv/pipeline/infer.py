"""The model side of extraction: crop, normalise and batch decoded chunks across videos.

A :class:`StreamModel` holds one stream's backbone on the device. :class:`Batcher` collects chunks
from several videos and runs each stream's model on batches of ``batch_size`` units (frames or
snippets) assembled lazily from the uint8 chunks, so memory stays bounded by the batch, not by the
video. Results come back per chunk as ``(n_steps, *feature shape)`` float32, averaged over crop views.

Numerics: ``precision="fp32"`` is exact. ``bf16`` (CPU or CUDA) and ``fp16`` (CUDA) run the
convolutions under ``torch.autocast``; ``channels_last`` only changes the memory layout. Both stay
within the tolerances checked in ``tests/test_extract_pipeline.py`` (cosine >= 0.999 for bf16).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import create_backbone
from fsv.pipeline.plan import ExtractConfig
from fsv.pipeline.source import Chunk
from fsv.pipeline.transforms import crop_views

PRECISIONS = ("fp32", "bf16", "fp16")


class StreamModel:
    """One stream's backbone with its input pipeline: ``units(frames) -> model input`` and ``run``."""

    def __init__(self, config: ExtractConfig, stream: str, device: torch.device, *, precision: str = "fp32", channels_last: bool = True) -> None:
        self.config = config
        self.stream = stream
        self.device = device
        if precision not in PRECISIONS:
            raise FsvInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise FsvInputError("fp16 autocast needs CUDA; use --precision bf16 or fp32 on the CPU")
        self.precision = precision
        kwargs = {"layer": config.layer} if config.layer else {}
        model: nn.Module = create_backbone(config.model_name(stream), config.weights[stream], **kwargs)
        self.is3d = config.unit_frames > 1
        self.memory_format = (torch.channels_last_3d if self.is3d else torch.channels_last) if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.memory_format).eval()
        pre = config.preprocess
        self.crop, self.crop_mode = int(pre["crop"]), str(pre.get("crop_mode", "center"))
        self.views = 10 if self.crop_mode == "ten" else 1
        self._mean = self._std = None
        if stream == "rgb" and "mean" in pre:
            self._mean = torch.tensor(pre["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)
            self._std = torch.tensor(pre.get("std", [1.0, 1.0, 1.0]), dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)

    def views_of(self, x: np.ndarray) -> torch.Tensor:
        """Chunk input -> crop views ``(V, F, C, crop, crop)`` on the device (uint8 for RGB)."""
        t = torch.from_numpy(x).to(self.device)
        t = t.permute(0, 3, 1, 2) if self.stream == "rgb" else t
        return crop_views(t, self.crop, self.crop_mode, flow=self.stream == "flow")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Units ``(B, L, C, s, s)`` -> model input: ``(B, C, L, s, s)`` for 3-D models (L frames),
        ``(B, C, s, s)`` for frame models; RGB scaled as the weights expect."""
        x = x.permute(0, 2, 1, 3, 4).float()  # B, C, L, s, s
        if self.stream == "rgb":
            pre = self.config.preprocess
            if pre.get("channels") == "bgr":
                x = x.flip(1)
            if pre.get("range") == [-1, 1]:
                x = x / 127.5 - 1.0
            elif self._mean is not None and pre.get("std") is not None:
                x = (x / 255.0 - self._mean) / self._std
            elif self._mean is not None:
                x = x - self._mean
        else:
            x = x.float()
        if not self.is3d:
            x = x[:, :, 0]
        return x.contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, *out)`` float32 of normalised units."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.model(x).float()


@dataclass
class _Pending:
    chunk: Chunk
    views: dict[str, torch.Tensor] = field(default_factory=dict)


class Batcher:
    """Runs chunks of many videos through every stream's model in batches of ``batch_size`` units."""

    def __init__(self, models: dict[str, StreamModel], batch_size: int) -> None:
        self.models = models
        self.batch_size = batch_size
        self.pending: list[_Pending] = []
        self.units = 0

    def add(self, chunk: Chunk) -> None:
        views = {s: m.views_of(chunk.inputs[s]) for s, m in self.models.items()}
        self.pending.append(_Pending(chunk, views))
        self.units += len(chunk.offsets) * next(iter(self.models.values())).views

    def drop(self, video_id: str) -> None:
        """Forget queued chunks of ``video_id`` (its decoding is being retried)."""
        self.pending = [p for p in self.pending if p.chunk.video_id != video_id]
        self.units = sum(len(p.chunk.offsets) for p in self.pending) * next(iter(self.models.values())).views

    @property
    def full(self) -> bool:
        return self.units >= self.batch_size

    def flush(self) -> list[tuple[Chunk, np.ndarray]]:
        """Run everything queued; returns ``(chunk, features (n, *out) float32)`` in queue order,
        streams concatenated along the first feature axis."""
        if not self.pending:
            return []
        per_stream: dict[str, list[torch.Tensor]] = {}
        for stream, model in self.models.items():
            items = [(k, v, int(o)) for k, p in enumerate(self.pending) for v in range(model.views) for o in p.chunk.offsets]
            unit = model.config.unit_frames
            outs = []
            for lo in range(0, len(items), self.batch_size):
                part = items[lo:lo + self.batch_size]
                x = torch.stack([self.pending[k].views[stream][v, o:o + unit] for k, v, o in part])
                outs.append(model.run(model.normalise(x)).cpu())
            per_stream[stream] = torch.cat(outs)
        results = []
        pos = {s: 0 for s in self.models}
        for p in self.pending:
            feats = []
            for stream, model in self.models.items():
                n = len(p.chunk.offsets) * model.views
                f = per_stream[stream][pos[stream]:pos[stream] + n]
                pos[stream] += n
                feats.append(f.view(model.views, len(p.chunk.offsets), *f.shape[1:]).mean(0))
            results.append((p.chunk, torch.cat(feats, dim=1).numpy()))
        self.pending, self.units = [], 0
        return results
