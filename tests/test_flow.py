"""Optical flow: TV-L1 (OpenCV and torch) and DIS recover a known translation; clipping, uint8 quantisation, workers, errors."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest

from fsv.errors import FsvInputError
from fsv.pipeline import flow as flow_mod
from fsv.pipeline.flow import FLOW_METHODS, compute_flow, quantize_flow

cv2 = pytest.importorskip("cv2")

DX, DY = 2, -1  # pixels per frame: content moves right by 2 and up by 1


def translating(n: int = 4, size: int = 64, dx: int = DX, dy: int = DY, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 frames of a smooth random texture whose content moves by (dx, dy) per frame."""
    rng = np.random.default_rng(seed)
    margin = (abs(dx) + abs(dy)) * n
    big = size + 2 * margin
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (big, big, 3)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack(
        [tex[margin - t * dy : margin - t * dy + size, margin - t * dx : margin - t * dx + size] for t in range(n)]
    )


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return translating()


@pytest.mark.parametrize("method", ["tvl1", "tvl1-torch", "dis"])
def test_recovers_translation(frames: np.ndarray, method: str) -> None:
    flow = compute_flow(frames, method)
    assert flow.shape == (3, 2, 64, 64) and flow.dtype == np.float32
    assert flow.min() >= -1.0 and flow.max() <= 1.0
    interior = flow[:, :, 8:-8, 8:-8]
    assert np.median(interior[:, 0]) == pytest.approx(DX / 20, abs=0.1 / 20)
    assert np.median(interior[:, 1]) == pytest.approx(DY / 20, abs=0.1 / 20)
    assert np.mean(np.abs(interior[:, 0] - DX / 20) < 0.5 / 20) > 0.9


def test_clip_bounds_large_motion() -> None:
    """With clip=1 a 2-pixel motion saturates at +1 in x and a 1-pixel upward one reaches -1 in y."""
    flow = compute_flow(translating(3), "dis", clip=1.0)
    interior = flow[:, :, 8:-8, 8:-8]
    assert flow.min() >= -1.0 and flow.max() <= 1.0
    assert np.median(interior[:, 0]) == 1.0
    assert np.median(interior[:, 1]) == pytest.approx(-1.0, abs=0.1)


def test_huge_values_clip_to_unit_range(monkeypatch: pytest.MonkeyPatch, frames: np.ndarray) -> None:
    raw = np.array([-1000.0, -20.0, -5.0, 0.0, 5.0, 20.0, 1000.0], np.float32)
    pixels = np.broadcast_to(raw.reshape(1, 1, 1, -1), (3, 2, 64, 7)).copy()
    monkeypatch.setattr(flow_mod, "_opencv_flow", lambda *_: pixels)
    out = compute_flow(frames[:, :, :7], "tvl1")
    np.testing.assert_array_equal(out[0, 0, 0], [-1.0, -1.0, -0.25, 0.0, 0.25, 1.0, 1.0])


def test_quantize_round_trip(frames: np.ndarray) -> None:
    exact = compute_flow(frames, "dis")
    quant = compute_flow(frames, "dis", quantize=True)
    assert quant.dtype == np.float32 and quant.min() >= -1.0 and quant.max() <= 1.0
    assert np.abs(quant - exact).max() <= 1.0 / 255 + 1e-6  # half of one 2/255 step
    levels = (quant + 1.0) * 255 / 2
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-3)


def test_quantize_flow_matches_the_bound_20_images() -> None:
    """TSN's dense_flow: ``cvRound(255 * (v + 20) / 40)``, saturating outside [-20, 20]."""
    v = np.array([-50.0, -20.0, -10.0, 0.0, 0.1, 10.0, 20.0, 50.0])
    np.testing.assert_array_equal(quantize_flow(v), [0, 0, 64, 128, 128, 191, 255, 255])


def test_workers_give_identical_results() -> None:
    frames = translating(n=5, size=48, seed=3)
    for method in ("tvl1", "dis"):
        np.testing.assert_array_equal(compute_flow(frames, method, workers=2), compute_flow(frames, method, workers=1))


def test_bad_requests_are_input_errors(frames: np.ndarray) -> None:
    assert FLOW_METHODS == ("tvl1", "tvl1-torch", "dis", "raft")
    with pytest.raises(FsvInputError, match="unknown flow method 'farneback'"):
        compute_flow(frames, "farneback")
    with pytest.raises(FsvInputError, match="at least 2 frames"):
        compute_flow(frames[:1], "dis")
    with pytest.raises(FsvInputError, match="uint8"):
        compute_flow(frames.astype(np.float32), "dis")


def test_tvl1_without_contrib_says_what_to_install(monkeypatch: pytest.MonkeyPatch, frames: np.ndarray) -> None:
    monkeypatch.delattr(cv2, "optflow")
    with pytest.raises(FsvInputError, match="opencv-contrib-python-headless"):
        compute_flow(frames, "tvl1")


def test_raft_without_torchvision_says_what_to_install(monkeypatch: pytest.MonkeyPatch, frames: np.ndarray) -> None:
    real_import = builtins.__import__

    def no_torchvision(name: str, *args, **kwargs):
        if name.split(".")[0] == "torchvision":
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torchvision.models.optical_flow", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(FsvInputError, match=r"RAFT needs torchvision: pip install fsv\[torchvision\].*--flow tvl1/dis"):
        compute_flow(frames, "raft")


def test_unknown_flow_method_is_refused_before_a_store_exists(tmp_path) -> None:
    import subprocess

    from fsv.pipeline.backbones import resolve_weights
    from fsv.pipeline.plan import make_recipe

    with pytest.raises(FsvInputError, match="--flow must be one of tvl1, tvl1-torch, dis, raft, got 'farneback'"):
        make_recipe(
            "i3d",
            streams=("flow",),
            weights={"flow": resolve_weights("i3d-flow", "random")},
            flow={"method": "farneback"},
        )
    manifest = tmp_path / "m.csv"
    manifest.write_text("video_id,path,label,split\nv,v.mp4,a,test\n")
    proc = subprocess.run(
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
            "--flow",
            "farneback",
            "--manifest",
            str(manifest),
            "--root",
            str(tmp_path),
            "--store",
            str(tmp_path / "s.zarr"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--flow must be one of" in proc.stderr and "Traceback" not in proc.stderr, (
        proc.stderr
    )
    assert not (tmp_path / "s.zarr").exists()
