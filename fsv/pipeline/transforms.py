"""Frame preprocessing as the backbones were trained: resize, centre crop, normalise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def resize_short_center_crop(frames: np.ndarray, short: int, crop: int) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, crop, crop)`` float32 in [0, 1]: bilinear (antialiased)
    resize of the short side to ``short``, then the centre ``crop``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return x[:, :, top : top + crop, left : left + crop].clamp_(0.0, 1.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Channel-wise ``(x - mean) / std`` of ``(N, 3, H, W)``."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def resize_frames(frames: np.ndarray, preprocess: Mapping[str, Any]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, h, w, 3)`` uint8, resized as ``preprocess`` says before cropping:
    ``resize_short`` (short side to that many pixels, aspect kept; the long side rounded, or
    truncated as torchvision's ``Resize(int)`` and transformers' ``shortest_edge`` do when
    ``preprocess["geometry"]`` is ``torchvision`` or ``transformers``) or ``resize`` ``[h, w]``
    (fixed, C3D's 128 x 171). ``interpolation`` bilinear (default) or bicubic; with
    ``resampler: pil`` as PIL resamples (CLIP's and transformers' image processors run PIL):
    antialiased, in two passes, horizontal then vertical, rounding to uint8 between them. Otherwise
    antialiased
    unless ``preprocess["antialias"]`` is false (C3D's Caffe pipeline used plain ``cv::resize``,
    VideoMAE V2's script ``F.interpolate``), rounded back to uint8 as the classic pipelines stored
    their frames (pipelines that resize floats, as VideoMAE V2's does, differ by at most half a
    grey level). Runs on one thread: ATen's resampling rounds differently with more threads, and
    the frames must not depend on where they were decoded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _resize_frames(frames, preprocess)
    finally:
        torch.set_num_threads(threads)


# float32 bytes of the frames resized at once: frames are independent, so a 4K batch is resized a
# frame or two at a time instead of taking gigabytes as floats.
RESIZE_BYTES = 64 * 2**20


def _resize_frames(frames: np.ndarray, preprocess: Mapping[str, Any]) -> np.ndarray:
    step = max(1, RESIZE_BYTES // max(1, frames[0].nbytes * 4)) if len(frames) else 1
    if len(frames) > step:
        return np.concatenate([_resize_frames(frames[i : i + step], preprocess) for i in range(0, len(frames), step)])
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if "resize" in preprocess:
        size = (int(preprocess["resize"][0]), int(preprocess["resize"][1]))
    elif preprocess.get("geometry") in (
        "torchvision",
        "transformers",
    ):  # Resize(int), shortest_edge: the long side truncated
        short = int(preprocess["resize_short"])
        size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    else:
        short, crop = int(preprocess["resize_short"]), int(preprocess["crop"])
        scale = short / min(h, w)
        size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    antialias = bool(preprocess.get("antialias", True))
    mode = str(preprocess.get("interpolation", "bilinear"))
    if (
        preprocess.get("resampler") == "pil"
    ):  # as PIL resamples: the horizontal pass, rounded to uint8, then the vertical
        if size[1] != w:
            x = (
                F.interpolate(x, size=(h, size[1]), mode=mode, align_corners=False, antialias=True)
                .round_()
                .clamp_(0, 255)
            )
        if size[0] != h:
            x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)
    elif size != (h, w):
        x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def crop_views(
    x: torch.Tensor, crop: int, mode: str = "center", *, flow: bool = False, geometry: str | None = None
) -> torch.Tensor:
    """Crops of ``x`` ``(F, C, H, W)`` -> ``(V, F, C, crop, crop)``: ``center`` (V = 1) or ``ten``
    (V = 10: centre and four corners, then the same horizontally flipped). For optical flow
    (``flow=True``, channel 0 = horizontal motion) a flip also negates the horizontal component.
    The centre's offsets are ``(H - crop) // 2``, or rounded half to even as torchvision's
    ``CenterCrop`` does when ``geometry == "torchvision"``."""
    h, w = x.shape[-2:]
    if h < crop or w < crop:
        raise ValueError(f"frames {h}x{w} are smaller than the {crop}x{crop} crop")
    if geometry == "torchvision":
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
    if mode == "center":
        return x[None, :, :, top : top + crop, left : left + crop]
    if mode != "ten":
        raise ValueError(f"crop mode must be center or ten, got {mode!r}")
    corners = [(top, left), (0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop)]
    views = [x[:, :, t : t + crop, l_ : l_ + crop] for t, l_ in corners]
    flipped = []
    for v in views:
        f = v.flip(-1)
        if flow:
            f = torch.cat([-f[:, :1], f[:, 1:]], dim=1)
        flipped.append(f)
    return torch.stack(views + flipped)
