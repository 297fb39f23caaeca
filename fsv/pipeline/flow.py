"""Optical flow for the flow stream: TV-L1 (default; OpenCV or PyTorch), DIS, or RAFT, clipped and scaled to [-1, 1].

* ``tvl1``: OpenCV contrib's Dual TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``), the method
  behind the standard I3D / THUMOS14 two-stream features, with OpenCV's default parameters, which is
  how the classic extractors (TSN's dense_flow, denseflow) construct it: tau 0.25, lambda 0.15,
  theta 0.3, 5 scales with scale step 0.8, 5 warps, epsilon 0.01, gamma 0, no initial flow, and
  300 iterations per scale and warp at most (the CPU class splits them as 10 outer x 30 inner and
  adds a 5x5 median filter; those pipelines mostly ran OpenCV's CUDA version, so their flow is
  close to, not bit-identical with, this).
* ``tvl1-torch``: the same Dual TV-L1, with the same parameters and numerics, written in PyTorch
  (:mod:`fsv.pipeline.tvl1_torch`) and batched over the pairs of a decoding window, on the
  extraction's device (``device``: CUDA when there is one). It equals ``tvl1`` up to float rounding
  (README: mean end-point error about 0.005 px on real videos); on a CPU it is slower than OpenCV,
  on a GPU it is the fast way to the classic flow.
* ``dis``: OpenCV's DIS (``cv2.DISOpticalFlow_create``) with the MEDIUM preset, a much faster
  approximation.
* ``raft``: torchvision's ``raft_large`` (12 refinement iterations), on the GPU when there is one;
  frames are padded (replicated edges) to sides divisible by 8 and at least 128. Needs torchvision
  and a local checkpoint (``weights``, or one of :data:`RAFT_FILES` in
  :func:`fsv.pipeline.weights.cache_dirs`); nothing is ever downloaded.

Flow is computed on the grayscale (TV-L1 both ways, DIS) or RGB (RAFT) frames of consecutive pairs, in pixels,
then clipped to ``[-clip, clip]`` and divided by ``clip``. With ``quantize`` it is also sent through
the uint8 images the classic pipelines stored: ``q = round(255 * (v + clip) / (2 * clip))`` (rounding
half to even, like OpenCV's ``cvRound``), read back as ``q * 2 / 255 - 1``.

TV-L1 is slow on a CPU: about 0.35 s per 224x224 pair on one AMD EPYC core (0.2 s with OpenCV's
two threads), against about 3 ms for DIS. ``workers > 1`` splits the pairs into contiguous chunks
computed in ``spawn``-ed processes (so a calling script needs the ``if __name__ == "__main__"``
guard), each with OpenCV limited to one thread; the result does not depend on ``workers``.
"""

from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError

FLOW_METHODS = ("tvl1", "tvl1-torch", "dis", "raft")
# torchvision's published raft_large checkpoints, best first, as torch hub caches them
RAFT_FILES = ("raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft_large_C_T_V2-1bb1363a.pth", "raft_large.pth")
RAFT_BATCH = 8
# pairs per tvl1-torch batch on a CPU (its cost there is elementwise, so more pairs gain nothing);
# on CUDA all pairs of a decoding window go at once
TVL1_CPU_BATCH = 16


def _cv2():
    """OpenCV with the contrib modules, or an :class:`FsvInputError` saying how to install it."""
    try:
        import cv2
    except ImportError as e:
        raise FsvInputError(
            "optical flow needs OpenCV with the contrib modules: pip install opencv-contrib-python-headless "
            "(a dependency of fsv; do not install opencv-python-headless beside it: they share cv2)"
        ) from e
    return cv2


def _algorithm(method: str):
    """A fresh OpenCV dense optical flow object for ``tvl1`` or ``dis`` (see the module docstring)."""
    cv2 = _cv2()
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if not hasattr(cv2, "optflow"):
        raise FsvInputError(
            "TV-L1 flow needs cv2.optflow from OpenCV's contrib modules: pip install opencv-contrib-python-headless "
            "(and uninstall opencv-python-headless / opencv-python if present, they shadow it); or use --flow dis"
        )
    return cv2.optflow.DualTVL1OpticalFlow_create()


def _grayscale(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, H, W)`` uint8 luma (OpenCV's RGB2GRAY weights)."""
    cv2 = _cv2()
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def _opencv_chunk(gray: np.ndarray, method: str, single_thread: bool) -> np.ndarray:
    """Flow of each consecutive pair of ``gray`` ``(T, H, W)`` uint8 -> ``(T-1, 2, H, W)`` float32 pixels."""
    cv2 = _cv2()
    if single_thread:
        cv2.setNumThreads(1)
    algo = _algorithm(method)
    out = np.empty((len(gray) - 1, 2, *gray.shape[1:]), np.float32)
    for i in range(len(gray) - 1):
        out[i] = algo.calc(gray[i], gray[i + 1], None).transpose(2, 0, 1)
    return out


def _opencv_flow(frames: np.ndarray, method: str, workers: int) -> np.ndarray:
    """TV-L1 or DIS over ``(T, H, W, 3)`` uint8 RGB -> ``(T-1, 2, H, W)`` float32 pixels."""
    gray = _grayscale(frames)
    n_pairs = len(gray) - 1
    workers = min(workers, n_pairs)
    if workers <= 1:
        return _opencv_chunk(gray, method, single_thread=False)
    bounds = np.linspace(0, n_pairs, workers + 1).round().astype(int)
    chunks = [gray[a : b + 1] for a, b in itertools.pairwise(bounds)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        parts = list(pool.map(_opencv_chunk, chunks, [method] * workers, [True] * workers))
    return np.concatenate(parts)


def _torch_device(device: str | None):
    """The torch device for ``tvl1-torch`` / RAFT: ``device`` resolved as ``--device`` is (None or
    ``auto``: CUDA when available; ``cuda`` without CUDA is an input error)."""
    from fsv.device import resolve_device  # imports torch: only when a torch method runs

    return resolve_device(device or "auto")


def _tvl1_torch_flow(frames: np.ndarray, device: str | None) -> np.ndarray:
    """:mod:`fsv.pipeline.tvl1_torch` over ``(T, H, W, 3)`` uint8 RGB -> ``(T-1, 2, H, W)`` float32 pixels."""
    import torch

    from fsv.pipeline.tvl1_torch import tvl1_flow

    dev = _torch_device(device)
    grey = torch.from_numpy(_grayscale(frames)).to(dev)
    with torch.inference_mode():
        flow = tvl1_flow(grey, batch=0 if dev.type == "cuda" else TVL1_CPU_BATCH)
    return flow.cpu().numpy()


def _find_raft_weights(weights: str | Path | None) -> Path:
    """The RAFT checkpoint: ``weights`` if given, else the first of :data:`RAFT_FILES` in the cache dirs."""
    from fsv.pipeline.weights import cache_dirs

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FsvInputError(f"RAFT weights file {path} does not exist")
        return path
    for d in cache_dirs():
        for name in RAFT_FILES:
            if (d / name).is_file():
                return d / name
    looked = ", ".join(str(d) for d in cache_dirs())
    raise FsvInputError(
        f"no RAFT weights found (looked in {looked} for {', '.join(RAFT_FILES)}); fsv never downloads them"
    )


def _raft_flow(frames: np.ndarray, weights: str | Path | None, device: str | None) -> np.ndarray:
    """torchvision's raft_large over ``(T, H, W, 3)`` uint8 RGB -> ``(T-1, 2, H, W)`` float32 pixels."""
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError as e:
        raise FsvInputError(
            "RAFT needs torchvision: pip install fsv[torchvision] (a torchvision matching your torch), or use --flow tvl1/dis"
        ) from e
    import torch
    import torch.nn.functional as F

    from fsv.pipeline.weights import load_state_dict

    dev = _torch_device(device)
    model = raft_large(weights=None, progress=False)
    model.load_state_dict(load_state_dict(_find_raft_weights(weights)))
    model = model.eval().to(dev)
    h, w = frames.shape[1:3]
    # RAFT needs sides divisible by 8 and at least 128 (its correlation pyramid)
    pad = (0, max(128, w + -w % 8) - w, 0, max(128, h + -h % 8) - h)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = np.empty((len(frames) - 1, 2, h, w), np.float32)
    with torch.inference_mode():
        for a in range(0, len(frames) - 1, RAFT_BATCH):
            b = min(a + RAFT_BATCH, len(frames) - 1)
            pair = x[a : b + 1].to(dev).float().div_(127.5).sub_(1.0)
            pair = F.pad(pair, pad, mode="replicate")
            flow = model(pair[:-1], pair[1:])[-1]
            out[a:b] = flow[:, :, :h, :w].cpu().numpy()
    return out


def quantize_flow(flow: np.ndarray, clip: float = 20.0) -> np.ndarray:
    """Flow in pixels, any shape -> the uint8 image values the classic pipelines wrote (0..255)."""
    v = np.clip(flow, -clip, clip)
    return np.rint(255.0 * (v + clip) / (2.0 * clip)).astype(np.uint8)


def compute_flow(
    frames: np.ndarray,
    method: str = "tvl1",
    *,
    clip: float = 20.0,
    quantize: bool = False,
    workers: int = 1,
    weights: str | Path | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Optical flow between consecutive frames, scaled to [-1, 1].

    ``frames`` ``(T, H, W, 3)`` uint8 RGB, ``T >= 2`` -> ``(T-1, 2, H, W)`` float32, channel 0 the
    x (rightward) and channel 1 the y (downward) displacement from frame ``t`` to ``t+1``, clipped to
    ``[-clip, clip]`` pixels and divided by ``clip``; with ``quantize`` sent through uint8
    (:func:`quantize_flow`) first, so values are multiples of 2/255 minus 1. ``workers`` processes
    share OpenCV's TV-L1 / DIS; ``weights`` is RAFT's checkpoint; ``device`` (``cpu``, ``cuda``,
    ``auto`` or None: CUDA when available) is where ``tvl1-torch`` and RAFT run.
    """
    if method not in FLOW_METHODS:
        raise FsvInputError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise FsvInputError(f"flow needs at least 2 frames of (H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if clip <= 0:
        raise FsvInputError(f"flow clip must be positive, got {clip}")
    if method == "raft":
        flow = _raft_flow(frames, weights, device)
    elif method == "tvl1-torch":
        flow = _tvl1_torch_flow(frames, device)
    else:
        flow = _opencv_flow(frames, method, max(1, workers))
    if quantize:
        return quantize_flow(flow, clip).astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return np.clip(flow, -clip, clip) / np.float32(clip)
