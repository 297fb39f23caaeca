"""C3D: output shapes per layer, strict loading of a ``c3d.pickle``-layout checkpoint, Caffe-style preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.pipeline.backbones.c3d import C3D, SPORTS1M_MEAN_BGR, c3d_preprocess
from fsv.pipeline.weights import load_state_dict

CHECKPOINT_SHAPES = {
    "conv1": (64, 3),
    "conv2": (128, 64),
    "conv3a": (256, 128),
    "conv3b": (256, 256),
    "conv4a": (512, 256),
    "conv4b": (512, 512),
    "conv5a": (512, 512),
    "conv5b": (512, 512),
}


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """Two random preprocessed clips ``[2, 3, 16, 112, 112]``."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 120, 160, 3), dtype=np.uint8)
    return torch.stack([c3d_preprocess(f) for f in frames])


@pytest.mark.parametrize(("layer", "dim"), [("pool5", 8192), ("fc6", 4096), ("fc7", 4096)])
def test_feature_shapes(clip: torch.Tensor, layer: str, dim: int) -> None:
    torch.manual_seed(0)
    model = C3D(layer=layer).eval()
    with torch.inference_mode():
        out = model(clip)
        assert model.logits(clip).shape == (2, 487)
    assert out.shape == (2, dim) and out.dtype == torch.float32
    assert (out >= 0).all()  # pool5 follows relu5b; fc6 / fc7 are taken after their ReLU


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="layer"):
        C3D(layer="fc8")


def test_pool5_windows_follow_caffe() -> None:
    """Caffe's pool5 maps 7 -> 4 with windows {0,1} {2,3} {4,5} {6}, not a padded {-1,0} {1,2} ..."""
    x = torch.arange(49.0).view(1, 1, 1, 7, 7).expand(1, 1, 2, 7, 7)
    out = C3D().pool5(x)
    assert out.shape == (1, 1, 1, 4, 4)
    assert out[0, 0, 0, 0].tolist() == [8.0, 10.0, 12.0, 13.0]
    assert out[0, 0, 0, :, 0].tolist() == [8.0, 22.0, 36.0, 43.0]


def test_c3d_pickle_layout_loads_strictly(tmp_path: Path, clip: torch.Tensor) -> None:
    """A state dict shaped like DavideA/c3d-pytorch's ``c3d.pickle`` loads with strict=True and reproduces the model."""
    g = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    for name, (out_ch, in_ch) in CHECKPOINT_SHAPES.items():
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, 3, generator=g) * (2.0 / (in_ch * 27)) ** 0.5
        state[f"{name}.bias"] = torch.randn(out_ch, generator=g) * 0.01
    for name, (out_f, in_f) in {"fc6": (4096, 8192), "fc7": (4096, 4096), "fc8": (487, 4096)}.items():
        state[f"{name}.weight"] = torch.randn(out_f, in_f, generator=g) * (2.0 / in_f) ** 0.5
        state[f"{name}.bias"] = torch.randn(out_f, generator=g) * 0.01
    path = tmp_path / "c3d.pickle"
    torch.save(state, path)

    model = C3D(layer="fc7").eval()
    result = model.load_state_dict(load_state_dict(path), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(state)
    reference = C3D(layer="fc7").eval()
    reference.load_state_dict(state, strict=True)
    with torch.inference_mode():
        torch.testing.assert_close(model(clip), reference(clip), rtol=0, atol=0)
        torch.testing.assert_close(model.logits(clip), reference.logits(clip), rtol=0, atol=0)
        assert model(clip).abs().sum() > 0


def test_preprocess_is_bgr_minus_sports1m_mean() -> None:
    red = np.zeros((16, 240, 320, 3), np.uint8)
    red[..., 0] = 255
    x = c3d_preprocess(red)
    assert x.shape == (3, 16, 112, 112) and x.dtype == torch.float32
    b, g, r = SPORTS1M_MEAN_BGR
    assert (b, g, r) == (90.25, 97.66, 101.41)
    torch.testing.assert_close(x[0], torch.full((16, 112, 112), -b))  # channel 0 is blue: no red in it
    torch.testing.assert_close(x[1], torch.full((16, 112, 112), -g))
    torch.testing.assert_close(x[2], torch.full((16, 112, 112), 255.0 - r))  # red arrives last


def test_preprocess_resizes_to_128x171_and_crops_the_centre() -> None:
    """A frame already 128x171 is not resampled; the crop is rows 8..119, columns 29..140, as in Caffe."""
    frames = np.random.default_rng(2).integers(0, 256, (16, 128, 171, 3), dtype=np.uint8)
    x = c3d_preprocess(frames)
    expected = frames[:, 8:120, 29:141, ::-1].transpose(3, 0, 1, 2).astype(np.float32)
    expected -= np.array(SPORTS1M_MEAN_BGR, np.float32).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-4)


def test_preprocess_rejects_non_uint8_rgb() -> None:
    with pytest.raises(ValueError, match="uint8"):
        c3d_preprocess(np.zeros((16, 64, 64, 3), np.float32))
