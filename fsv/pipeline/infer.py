"""The model side of extraction: crop, normalise and batch decoded chunks across videos.

A :class:`StreamModel` holds one stream's backbone on the device. :class:`Batcher` collects chunks
from several videos and runs each stream's model on batches of ``batch_size`` units (frames or
snippets) assembled lazily from the uint8 chunks, so memory stays bounded by the batch, not by the
video. Results come back per chunk as ``(n_steps, *feature shape)`` float32, averaged over crop views.

Numerics: ``precision="fp32"`` is the reference. ``bf16`` (CPU or CUDA) and ``fp16`` (CUDA) run the
convolutions under ``torch.autocast``: measured cosine to fp32 >= 0.99995 (I3D, real weights, on
``demo.mp4``) and >= 0.9999 (ResNet-50, random weights); ``tests/test_extract_pipeline.py``
asserts >= 0.99. ``channels_last`` (the default) changes only the memory layout: max difference
<= 1e-4 of the largest activation. Features are bit-identical between runs with equal device,
precision, batch size and thread count; batches are always full (zero-padded), so which videos
share a batch never matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import create_backbone
from fsv.pipeline.plan import ExtractRecipe
from fsv.pipeline.source import Chunk
from fsv.pipeline.transforms import crop_views


class StreamModel:
    """One stream's backbone with its input pipeline: ``units(frames) -> model input`` and ``run``."""

    def __init__(self, recipe: ExtractRecipe, stream: str, device: torch.device, *, channels_last: bool = True) -> None:
        self.recipe = recipe
        self.stream = stream
        self.device = device
        if recipe.precision == "fp16" and device.type != "cuda":
            raise FsvInputError("fp16 autocast needs CUDA; use --precision bf16 or fp32 on the CPU")
        self.precision = recipe.precision
        kwargs: dict[str, object] = {"layer": recipe.layer} if recipe.layer else {}
        if recipe.grid:
            kwargs["grid"] = True
        model: nn.Module = create_backbone(recipe.network(stream), recipe.weights[stream], **kwargs)
        self.is3d = recipe.unit_frames > 1
        self.memory_format = (
            (torch.channels_last_3d if self.is3d else torch.channels_last) if channels_last else torch.contiguous_format
        )
        self.model = model.to(device=device, memory_format=self.memory_format).eval()
        pre = recipe.preprocess
        self.crop, self.crop_mode = int(pre["crop"]), str(pre.get("crop_mode", "center"))
        self.views = 10 if self.crop_mode == "ten" else 1
        self._mean = self._std = None
        if stream == "rgb" and "mean" in pre:
            self._mean = torch.tensor(pre["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)
            self._std = torch.tensor(pre.get("std", [1.0, 1.0, 1.0]), dtype=torch.float32, device=device).view(
                1, -1, 1, 1, 1
            )

    def views_of(self, x: np.ndarray) -> torch.Tensor:
        """Chunk input -> crop views ``(V, F, C, crop, crop)`` on the device (uint8 for RGB)."""
        t = torch.from_numpy(x).to(self.device)
        t = t.permute(0, 3, 1, 2) if self.stream == "rgb" else t
        return crop_views(
            t, self.crop, self.crop_mode, flow=self.stream == "flow", geometry=self.recipe.preprocess.get("geometry")
        )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Units ``(B, L, C, s, s)`` -> model input: ``(B, C, L, s, s)`` for 3-D models (L frames),
        ``(B, C, s, s)`` for frame models; RGB scaled as the weights expect."""
        x = x.permute(0, 2, 1, 3, 4).float()  # B, C, L, s, s
        if self.stream == "rgb":
            pre = self.recipe.preprocess
            if pre.get("channels") == "bgr":
                x = x.flip(1)
            if pre.get("range") == [-1, 1]:
                x = x / 127.5 - 1.0
            elif pre.get("range") == [0, 1]:
                x = x / 255.0
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
    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored fields of normalised units, each ``(B, *field shape)`` float32 (a model
        that returns one tensor gives the card's one field)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.model(x)
        return (
            {k: v.float() for k, v in out.items()} if isinstance(out, dict) else {self.recipe.card.field: out.float()}
        )


@dataclass
class _Pending:
    chunk: Chunk
    views: dict[str, torch.Tensor]
    outputs: dict[str, list[dict[str, torch.Tensor]]] = field(
        default_factory=dict
    )  # stream -> per unit, field -> features
    todo: int = 0


class Batcher:
    """Runs chunks of many videos through every stream's model in batches of exactly
    ``batch_size`` units (the last one zero-padded), so a video's features never depend on which
    other videos shared its batches: sharded, resumed and single runs give bit-identical stores."""

    def __init__(self, models: dict[str, StreamModel], batch_size: int) -> None:
        self.models = models
        self.batch_size = batch_size
        self.pending: list[_Pending] = []
        self.queue: dict[str, list[tuple[_Pending, int, int]]] = {s: [] for s in models}

    def add(self, chunk: Chunk) -> None:
        p = _Pending(chunk, {s: m.views_of(chunk.inputs[s]) for s, m in self.models.items()})
        for s, m in self.models.items():
            p.outputs[s] = []
            units = [(p, v, int(o)) for v in range(m.views) for o in chunk.offsets]
            p.todo += len(units)
            self.queue[s].extend(units)
        self.pending.append(p)

    def drop(self, video_id: str) -> None:
        """Forget queued chunks of ``video_id`` (its decoding is being retried)."""
        self.pending = [p for p in self.pending if p.chunk.video_id != video_id]
        self.queue = {s: [u for u in q if u[0].chunk.video_id != video_id] for s, q in self.queue.items()}

    @property
    def full(self) -> bool:
        return any(len(q) >= self.batch_size for q in self.queue.values())

    def flush(self, *, final: bool = False) -> list[tuple[Chunk, dict[str, np.ndarray]]]:
        """Run every full batch (and, when ``final``, the padded rest); returns the chunks now
        complete as ``(chunk, {field: features (n, *field shape) float32})`` in arrival order,
        streams concatenated along the first feature axis and crop views averaged."""
        for stream, model in self.models.items():
            q = self.queue[stream]
            unit = model.recipe.unit_frames
            while len(q) >= self.batch_size or (final and q):
                part, q = q[: self.batch_size], q[self.batch_size :]
                x = torch.stack([p.views[stream][v, o : o + unit] for p, v, o in part])
                if len(part) < self.batch_size:
                    x = torch.cat([x, x.new_zeros((self.batch_size - len(part), *x.shape[1:]))])
                y = {name: v.cpu() for name, v in model.run(model.normalise(x)).items()}
                for k, (p, _, _) in enumerate(part):
                    p.outputs[stream].append({name: v[k] for name, v in y.items()})
                    p.todo -= 1
            self.queue[stream] = q
        results = []
        while self.pending and self.pending[0].todo == 0:
            p = self.pending.pop(0)
            n = len(p.chunk.offsets)
            names = p.outputs[next(iter(self.models))][0].keys()
            feats = {
                name: torch.cat(
                    [
                        torch.stack([u[name] for u in p.outputs[s]])
                        .view(m.views, n, *p.outputs[s][0][name].shape)
                        .mean(0)
                        for s, m in self.models.items()
                    ],
                    dim=1,
                ).numpy()
                for name in names
            }
            results.append((p.chunk, feats))
        return results
