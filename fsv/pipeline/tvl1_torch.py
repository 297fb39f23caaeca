"""Dual TV-L1 optical flow in PyTorch, batched over frame pairs, on CPU or CUDA (``--flow tvl1-torch``).

The method of Zach, Pock and Bischof (2007) with the improvements of Wedel et al. (2009), in the
formulation of Sánchez, Meinhardt-Llopis and Facciolo ("TV-L1 Optical Flow Estimation", IPOL 2013)
that OpenCV's CPU ``cv::optflow::DualTVL1OpticalFlow`` implements; this module reproduces that
class's numerics step by step so that its flow equals OpenCV's (``tvl1``) up to float rounding:

* intensities are the uint8 grey levels as floats (0..255) (:mod:`fsv.pipeline.flow` makes them
  with OpenCV's ``cvtColor``, so both methods see the same grey images);
* the pyramid: each level is the previous one bilinearly resized (``INTER_LINEAR``: pixel centres,
  no antialiasing, edge pixels replicated) by ``scale_step``, sides rounded to nearest; levels
  stop before a side would fall under 16 pixels; the flow starts at zero on the coarsest level and
  is bilinearly resized to the next level and divided by ``scale_step``;
* per level the dual variables ``p`` start at zero and persist over the warps; per warp ``I1``
  and its centred gradient (one-sided half differences at the border) are warped by bicubic
  interpolation (``remap`` with ``INTER_CUBIC``: a = -0.75, zeros outside the image; OpenCV 5
  interpolates at the exact coordinates as done here, OpenCV 4 rounded them to 1/32 pixel) to
  linearise the data term around the current flow;
* up to ``outer_iterations`` x ``inner_iterations`` primal-dual steps per warp (IPOL's Algorithm 1):
  a 5x5 median of the flow (replicated border) before each block of inner steps, then per step
  the thresholding step for ``v`` (its three cases written as one clamp of ``-rho / |grad I1|^2``
  to ``[-lambda theta, lambda theta]``; zero where ``|grad I1|^2`` is below float32's epsilon, where
  OpenCV may still move ``v`` by at most ``lambda theta |grad I1|``, under 2e-5 px), the primal
  step ``u = v + theta div p`` and the dual step ``p = (p + tau/theta grad u) / (1 + tau/theta
  |grad u|)``, with forward differences for the gradient and the matching backward differences for
  the divergence; a pair stops once the squared change of ``u`` summed over the image falls to
  ``epsilon^2 * H * W`` or below.

Every pair of a batch follows its own stopping rule (a pair leaves the batch at the step at which
it converges, the others go on), so a pair's flow does not depend on the rest of its batch. For a
fixed device and torch build the result is deterministic. What remains between this and OpenCV is
float rounding order (OpenCV sums the convergence error sequentially in float32, torch pairwise,
which can move a pair's stop by a step); at large displacements TV-L1 is so sensitive that OpenCV
differs from itself as much under 1e-4 grey levels of input noise (README, flow benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_CUBIC_A = -0.75  # OpenCV's (and torch's) bicubic convolution constant
_MIN_SIDE = 16  # a pyramid level needs both sides >= 16 pixels


@dataclass(frozen=True)
class TVL1Params:
    """The parameters of OpenCV's ``DualTVL1OpticalFlow`` with its defaults (``gamma`` 0, no initial flow)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median: int = 5


def _linear_taps(
    n_out: int, n_in: int, scale: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``(lo, hi)`` and weight of ``hi`` for each of ``n_out`` outputs (OpenCV INTER_LINEAR)."""
    pos = ((torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).to(torch.float32)
    lo = torch.floor(pos)
    frac = pos - lo
    lo = lo.to(torch.long)
    outside = (lo < 0) | (lo >= n_in - 1)
    frac = torch.where(outside, torch.zeros_like(frac), frac)
    lo = lo.clamp(0, n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, frac


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> torch.Tensor:
    """Bilinear resize of ``(..., H, W)`` to ``(..., h, w)`` = ``size`` as OpenCV's ``resize`` with ``INTER_LINEAR``.

    ``scale`` ``(sy, sx)`` maps output to input coordinates (``src = (dst + 0.5) * s - 0.5``); by
    default ``H / h`` and ``W / w``; OpenCV uses ``1 / fy`` and ``1 / fx`` when called with factors.
    """
    h, w = size
    H, W = x.shape[-2:]
    sy, sx = scale if scale is not None else (H / h, W / w)
    x0, x1, fx = _linear_taps(w, W, sx, x.device)
    y0, y1, fy = _linear_taps(h, H, sy, x.device)
    rows = x.index_select(-1, x0) * (1 - fx) + x.index_select(-1, x1) * fx
    fy = fy[:, None]
    return rows.index_select(-2, y0) * (1 - fy) + rows.index_select(-2, y1) * fy


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """``(...)`` fractions in [0, 1) -> ``(..., 4)`` cubic convolution weights of taps -1, 0, 1, 2."""
    a = _CUBIC_A
    t1 = t + 1
    s = 1 - t
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return torch.stack([w0, w1, w2, 1 - w0 - w1 - w2], -1)


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` at ``(B, H, W)`` pixel coordinates, as OpenCV's ``remap`` with ``INTER_CUBIC``.

    Taps outside the image count as zero (``BORDER_CONSTANT``). Returns ``(B, C, H, W)``.
    """
    B, C, H, W = images.shape
    fx, fy = torch.floor(map_x), torch.floor(map_y)
    wx = _cubic_weights(map_x - fx)  # (B, H, W, 4)
    wy = _cubic_weights(map_y - fy)
    ix, iy = fx.to(torch.long), fy.to(torch.long)
    flat = images.reshape(B, C, H * W)
    out = torch.zeros_like(images)
    for j in range(4):
        yy = iy + (j - 1)
        y_in = (yy >= 0) & (yy < H)
        for i in range(4):
            xx = ix + (i - 1)
            valid = y_in & (xx >= 0) & (xx < W)
            idx = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).reshape(B, 1, H * W).expand(B, C, H * W)
            taps = flat.gather(2, idx).reshape(B, C, H, W)
            weight = torch.where(
                valid, wy[..., j] * wx[..., i], torch.zeros((), dtype=images.dtype, device=images.device)
            )
            out = out + taps * weight[:, None]
    return out


def median_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` x ``k`` median of each ``(H, W)`` plane of ``(..., H, W)``, borders replicated (OpenCV's ``medianBlur``)."""
    r = k // 2
    shape = x.shape
    H, W = shape[-2:]
    padded = F.pad(x.reshape(-1, 1, H, W), (r, r, r, r), mode="replicate")[:, 0]
    window = torch.stack([padded[:, i : i + H, j : j + W] for i in range(k) for j in range(k)], 1)
    return window.median(dim=1).values.reshape(shape)


def centred_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` -> ``(dx, dy)``: half central differences, half one-sided ones at the border."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    dy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., 2, H, W)`` (x, y) forward differences, zero on the last column / row."""
    g = torch.zeros((*u.shape[:-2], 2, *u.shape[-2:]), dtype=u.dtype, device=u.device)
    torch.sub(u[..., 1:], u[..., :-1], out=g[..., 0, :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=g[..., 1, :-1, :])
    return g


def divergence(p: torch.Tensor) -> torch.Tensor:
    """``(..., 2, H, W)`` field (x, y) -> ``(..., H, W)`` divergence by backward differences
    (minus the adjoint of :func:`forward_gradient`: the first row / column take the value itself)."""
    px, py = p[..., 0, :, :], p[..., 1, :, :]
    dx = px.clone()
    dx[..., 1:] -= px[..., :-1]
    dy = py.clone()
    dy[..., 1:, :] -= py[..., :-1, :]
    return dx + dy


def _pyramid(i0: torch.Tensor, i1: torch.Tensor, params: TVL1Params) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Levels ``[(I0, I1), ...]`` from full size down, each ``(B, h, w)``."""
    levels = [(i0, i1)]
    inv = 1.0 / params.scale_step
    for _ in range(1, params.scales):
        H, W = levels[-1][0].shape[-2:]
        # OpenCV: Size(saturate_cast<int>(W * fx), saturate_cast<int>(H * fy)), rounding half to even
        h, w = round(H * params.scale_step), round(W * params.scale_step)
        if h < _MIN_SIDE or w < _MIN_SIDE:
            break
        small = resize_linear(torch.stack(levels[-1]), (h, w), (inv, inv))
        levels.append((small[0], small[1]))
    return levels


def _f32(x: float) -> float:
    """``x`` rounded to float32, as OpenCV casts its double parameters."""
    return float(torch.tensor(x, dtype=torch.float32))


def _primal_dual(
    u: torch.Tensor, p: torch.Tensor, i1w: torch.Tensor, i1w_grad: torch.Tensor, i0: torch.Tensor, params: TVL1Params
) -> None:
    """One warp's primal-dual steps, updating ``u`` ``(B, 2, H, W)`` and ``p`` ``(B, 2, 2, H, W)`` in place.

    ``i1w`` ``(B, H, W)`` is I1 warped by ``u`` and ``i1w_grad`` ``(B, 2, H, W)`` its warped
    gradient. A pair leaves the working set after the step at which it converges.
    """
    B, _, H, W = u.shape
    eps = _f32(params.epsilon * params.epsilon * H * W)
    l_t, taut, theta = _f32(params.lambda_ * params.theta), _f32(params.tau / params.theta), _f32(params.theta)
    grad = (i1w_grad * i1w_grad).sum(1)
    rho_c = i1w - (i1w_grad * u).sum(1) - i0
    # the thresholding step's three cases as one clamp: v = u + clamp(-rho / |grad I1|^2, -l_t, l_t) grad I1 (0 where grad I1 ~ 0)
    inv_grad = torch.where(grad > torch.finfo(torch.float32).eps, 1.0 / grad, torch.zeros_like(grad))
    idx = torch.arange(B, device=u.device)
    wu, wp, g, rc, ig = u, p, i1w_grad, rho_c, inv_grad
    for _outer in range(params.outer_iterations):
        if params.median > 1:
            wu = median_filter(wu, params.median)
        for _inner in range(params.inner_iterations):
            rho = rc + (g * wu).sum(1)
            step = (-rho * ig).clamp(-l_t, l_t)
            new = (wu + step[:, None] * g) + theta * divergence(wp)  # v, then the primal step
            error = ((new - wu) ** 2).sum((1, 2, 3))
            wu = new
            du = forward_gradient(wu)  # (B', 2, 2, H, W)
            wp = (wp + taut * du) / (1 + taut * torch.hypot(du[:, :, 0], du[:, :, 1]))[:, :, None]  # the dual step
            done = error <= eps
            if bool(done.any()):
                u[idx[done]] = wu[done]
                p[idx[done]] = wp[done]
                keep = ~done
                idx, wu, wp, g, rc, ig = idx[keep], wu[keep], wp[keep], g[keep], rc[keep], ig[keep]
                if len(idx) == 0:
                    return
    u[idx] = wu
    p[idx] = wp


def _one_scale(i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params) -> torch.Tensor:
    """Refine the flow ``u`` ``(B, 2, h, w)`` on one pyramid level (``i0``, ``i1`` ``(B, h, w)``): its warps."""
    B, H, W = i0.shape
    i1x, i1y = centred_gradient(i1)
    sources = torch.stack([i1, i1x, i1y], 1)
    ys = torch.arange(H, dtype=torch.float32, device=i0.device)[:, None]
    xs = torch.arange(W, dtype=torch.float32, device=i0.device)
    u = u.clone()
    p = torch.zeros((B, 2, 2, H, W), dtype=u.dtype, device=u.device)
    for _ in range(params.warps):
        warped = remap_cubic(sources, xs + u[:, 0], ys + u[:, 1])
        _primal_dual(u, p, warped[:, 0], warped[:, 1:], i0, params)
    return u


def tvl1_flow(grey: torch.Tensor, params: TVL1Params = TVL1Params(), *, batch: int = 0) -> torch.Tensor:
    """Flow of each consecutive pair of ``grey`` ``(T, H, W)`` grey levels 0..255 -> ``(T-1, 2, H, W)`` float32 pixels.

    Computed on ``grey.device``, ``batch`` pairs at a time (0: all at once); channel 0 is x, 1 is y.
    """
    grey = grey.to(torch.float32)
    n = len(grey) - 1
    step = batch if batch > 0 else n
    return torch.cat(
        [_pairs(grey[a : min(a + step, n)], grey[a + 1 : min(a + step, n) + 1], params) for a in range(0, n, step)]
    )


def _pairs(i0: torch.Tensor, i1: torch.Tensor, params: TVL1Params) -> torch.Tensor:
    """``(B, H, W)`` grey pairs -> ``(B, 2, H, W)`` flow from ``i0`` to ``i1``, coarse to fine."""
    levels = _pyramid(i0, i1, params)
    u = torch.zeros((len(i0), 2, *levels[-1][0].shape[-2:]), dtype=torch.float32, device=i0.device)
    for s in range(len(levels) - 1, -1, -1):
        u = _one_scale(*levels[s], u, params)
        if s:
            u = resize_linear(u, levels[s - 1][0].shape[-2:]) * (1.0 / params.scale_step)
    return u
