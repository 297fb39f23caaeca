"""tvl1-torch: each building block equals OpenCV's, and the flow equals OpenCV's TV-L1 on generated and real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.pipeline import tvl1_torch as tv
from fsv.pipeline.flow import compute_flow

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "optflow"):
    pytest.skip("OpenCV's TV-L1 (the reference) needs opencv-contrib", allow_module_level=True)

# the targets, after the +-20 px clip
MEAN_EPE, P95_EPE = 0.15, 0.5


def opencv_tvl1(grey: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` uint8 -> ``(T-1, 2, H, W)`` OpenCV Dual TV-L1 flow in pixels."""
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([algo.calc(grey[i], grey[i + 1], None).transpose(2, 0, 1) for i in range(len(grey) - 1)])


def torch_tvl1(grey: np.ndarray, **kw) -> np.ndarray:
    return tv.tvl1_flow(torch.from_numpy(grey), **kw).numpy()


def epe(a: np.ndarray, b: np.ndarray, clip: float = 20.0) -> np.ndarray:
    """Per-pixel end-point error between two ``(N, 2, H, W)`` flows clipped to +-``clip``."""
    d = np.clip(a, -clip, clip) - np.clip(b, -clip, clip)
    return np.sqrt((d**2).sum(1))


def shifted(n: int, size: int, dx: float, dy: float, seed: int = 0) -> np.ndarray:
    """``(n, size, size)`` uint8 grey frames of a smooth texture moving by the sub-pixel ``(dx, dy)`` per frame."""
    rng = np.random.default_rng(seed)
    big = size + 32
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (big, big)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, -t * dx + 16], [0, 1, -t * dy + 16]])  # dst(x) = tex(x - t d + 16)
        frames.append(cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP))
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("shape", [(50, 61), (179, 224), (224, 224)])
def test_pyramid_resize_equals_opencv(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    got = tv.resize_linear(torch.from_numpy(img)[None], down.shape, (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(got, down, atol=1e-3)
    up = cv2.resize(down, shape[::-1], interpolation=cv2.INTER_LINEAR)  # the flow's zoom to the next level
    got = tv.resize_linear(torch.from_numpy(down)[None], shape)[0].numpy()
    np.testing.assert_allclose(got, up, atol=5e-3)


def test_levels_stop_before_a_side_under_16() -> None:
    grey = torch.zeros(2, 40, 300)
    sizes = [tuple(a.shape[-2:]) for a, _ in tv._pyramid(grey, grey, tv.TVL1Params())]
    assert sizes == [(40, 300), (32, 240), (26, 192), (21, 154), (17, 123)]
    sizes = [
        tuple(a.shape[-2:]) for a, _ in tv._pyramid(torch.zeros(2, 24, 24), torch.zeros(2, 24, 24), tv.TVL1Params())
    ]
    assert sizes == [(24, 24), (19, 19)]  # the next, 15 x 15, is not made


def test_median_equals_opencv_median_blur() -> None:
    u = np.random.default_rng(2).normal(0, 3, (30, 41)).astype(np.float32)
    np.testing.assert_array_equal(tv.median_filter(torch.from_numpy(u)[None], 5)[0].numpy(), cv2.medianBlur(u, 5))


def test_bicubic_warp_equals_opencv_remap_with_zeros_outside() -> None:
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 255, (30, 41)).astype(np.float32)
    ys, xs = np.mgrid[0:30, 0:41].astype(np.float32)
    mx = xs + rng.uniform(-6, 6, xs.shape).astype(np.float32)  # some taps, and some points, fall outside
    my = ys + rng.uniform(-6, 6, ys.shape).astype(np.float32)
    ref = cv2.remap(img, mx, my, cv2.INTER_CUBIC)  # default border: constant 0
    got = tv.remap_cubic(torch.from_numpy(img)[None, None], torch.from_numpy(mx)[None], torch.from_numpy(my)[None])[
        0, 0
    ].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert (ref == 0).any()


def test_divergence_is_minus_the_adjoint_of_the_forward_gradient() -> None:
    """On dual fields that vanish where the forward gradient is zero by definition, as TV-L1's ``p`` does
    (it starts at 0 and is updated by that gradient)."""
    rng = np.random.default_rng(4)
    u = torch.from_numpy(rng.normal(size=(2, 9, 11)))
    p = torch.from_numpy(rng.normal(size=(2, 2, 9, 11)))
    p[:, 0, :, -1] = 0
    p[:, 1, -1, :] = 0
    lhs = (tv.forward_gradient(u) * p).sum()
    rhs = -(u * tv.divergence(p)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


# ----------------------------------------------------------------------------- the flow


def test_known_subpixel_motion_and_opencv_agree() -> None:
    grey = shifted(4, 64, 1.5, -0.75)
    ours, ref = torch_tvl1(grey), opencv_tvl1(grey)
    inner = ours[:, :, 8:-8, 8:-8]
    assert np.median(inner[:, 0]) == pytest.approx(1.5, abs=0.1)  # TV-L1 itself is off by up to ~0.07 px here
    assert np.median(inner[:, 1]) == pytest.approx(-0.75, abs=0.1)
    e = epe(ours, ref)
    assert e.mean() <= 0.02 and np.percentile(e, 95) <= 0.05, (e.mean(), np.percentile(e, 95))


def real_pairs(video: Path, n: int, size: int) -> np.ndarray:
    """The first ``n + 1`` frames of ``video``, resized to ``size`` x ``size``, as uint8 grey."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < n + 1:
        ok, f = cap.read()
        assert ok, f"{video} has fewer than {n + 1} frames"
        frames.append(cv2.cvtColor(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY))
    cap.release()
    return np.stack(frames)


@pytest.mark.parametrize("name", ["v_GGSY1Qvo990.mp4", "test.mp4"])
def test_equals_opencv_on_real_videos(shared_data: Path, name: str) -> None:
    grey = real_pairs(shared_data / "videos" / name, 3, 128)
    e = epe(torch_tvl1(grey), opencv_tvl1(grey))
    assert e.mean() <= MEAN_EPE and np.percentile(e, 95) <= P95_EPE, (e.mean(), np.percentile(e, 95))


def test_a_pair_does_not_depend_on_its_batch_and_runs_repeat() -> None:
    grey = np.concatenate([shifted(2, 32, 0.5, 0.25, seed=5), shifted(2, 32, -2.0, 1.0, seed=6)])  # 3 pairs, 3 motions
    together = torch_tvl1(grey)
    np.testing.assert_allclose(together[2:], torch_tvl1(grey[2:]), atol=1e-4)
    np.testing.assert_array_equal(torch_tvl1(grey), together)


def test_compute_flow_selects_it_and_scales_like_tvl1() -> None:
    grey = shifted(3, 48, 1.0, 0.5, seed=7)
    rgb = np.repeat(grey[..., None], 3, -1)
    ours = compute_flow(rgb, "tvl1-torch", device="cpu")
    ref = compute_flow(rgb, "tvl1")
    assert ours.shape == ref.shape == (2, 2, 48, 48) and ours.dtype == np.float32
    assert ours.min() >= -1 and ours.max() <= 1  # clipped to 20 px and divided by 20, as tvl1
    assert np.abs(ours - ref).mean() * 20 < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
def test_cuda_equals_cpu() -> None:
    grey = shifted(5, 96, 0.7, -1.3, seed=8)
    on_gpu = tv.tvl1_flow(torch.from_numpy(grey).cuda()).cpu().numpy()
    e = epe(on_gpu, torch_tvl1(grey))
    assert e.mean() <= 0.01, e.mean()


def test_fsv_extract_selects_it_and_a_store_never_mixes_flow_methods(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import write_video
    from fsv.pipeline.manifests import Manifest, VideoRecord
    from fsv.pipeline.store import FeatureStore

    write_video(tmp_path / "v.mp4", n_frames=9, fps=25, size=(96, 72), seed=0)
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord("v", "v.mp4", "a", "test")], ["a"], "classification").write(manifest)

    def extract(store: str, method: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "fsv",
                "extract",
                "--backbone",
                "i3d",
                "--streams",
                "flow",
                "--flow-weights",
                "random",
                "--snippet",
                "8",
                "--stride",
                "8",
                "--flow",
                method,
                "--manifest",
                str(manifest),
                "--root",
                str(tmp_path),
                "--store",
                str(tmp_path / store),
                "--workers",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert extract("opencv.zarr", "tvl1").returncode == 0
    mixed = extract("opencv.zarr", "tvl1-torch")
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr, mixed.stderr
    assert '"method": "tvl1-torch"' in mixed.stderr and "Use another --store" in mixed.stderr, mixed.stderr
    ours = extract("torch.zarr", "tvl1-torch")
    assert ours.returncode == 0, ours.stderr
    a, b = FeatureStore.open(tmp_path / "opencv.zarr"), FeatureStore.open(tmp_path / "torch.zarr")
    assert a.spec.flow["method"] == "tvl1" and b.spec.flow["method"] == "tvl1-torch"
    assert a.spec.name == "i3d-flow-25fps-s8x8" and b.spec.name == "i3d-flow-25fps-s8x8-tvl1-torch"
    fa, fb = torch.from_numpy(a.get("v")).float(), torch.from_numpy(b.get("v")).float()
    assert fa.shape == fb.shape == (1, 1024)
    assert float(torch.nn.functional.cosine_similarity(fa, fb)) >= 0.995
