"""TSP's R(2+1)D-34 against torchvision's ``VideoResNet`` built as TSP builds it, on the same random
weights written in TSP's checkpoint layout; and its recipe (frames, crop, clip starts) against TSP's.

torchvision does not import on this CPU torch (its compiled operators), and an installed but broken
torchvision breaks transformers too, so ``make setup`` puts torchvision's files in
``.venv/reference/torchvision`` (not on the path) and this test loads its pure-Python video ResNet
from there under a bare ``torchvision`` package registered for the test only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fsv.pipeline.backbones import BACKBONES, create_backbone, resolve_weights
from fsv.pipeline.plan import make_recipe, plan_video
from fsv.pipeline.transforms import resize_frames
from fsv.pipeline.weights import WeightsRef

REFERENCE = Path(os.environ.get("FSV_TORCHVISION_FILES", Path(sys.prefix) / "reference")) / "torchvision"
RANDOM = WeightsRef("random", None, None, seed=0)


@pytest.fixture
def tv_resnet(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """torchvision's ``models/video/resnet.py``, imported from its files without the package's
    ``__init__`` (which loads the compiled operators); every torchvision module is gone after the test."""
    if not REFERENCE.is_dir():
        if os.environ.get("FSV_REQUIRE_REFERENCES"):
            pytest.fail(f"{REFERENCE} is missing: make setup installs torchvision's files there")
        pytest.skip(f"{REFERENCE} is absent (make setup installs it)")
    for name, sub in [
        ("torchvision", ""),
        ("torchvision.models", "models"),
        ("torchvision.models.video", "models/video"),
        ("torchvision.transforms", "transforms"),
    ]:
        module = types.ModuleType(name)
        module.__path__ = [str(REFERENCE / sub)]
        monkeypatch.setitem(sys.modules, name, module)
    presets = types.ModuleType("torchvision.transforms._presets")
    presets.VideoClassification = type("VideoClassification", (), {"__init__": lambda self, *a, **k: None})
    utils = types.ModuleType("torchvision.utils")
    utils._log_api_usage_once = lambda *a, **k: None
    for m in (presets, utils):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    yield importlib.import_module("torchvision.models.video.resnet")
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def tsp_conv_maker(tv: types.ModuleType) -> type:
    """TSP's own ``Conv2Plus1D``: torchvision's, except that it recomputes its middle width from its
    own in / out channels instead of taking the block's (the first block of a stage then has 288,
    not 230, channels in its second convolution: the IG-65M R(2+1)D-34 weights need this)."""

    class TSPConv2Plus1D(tv.Conv2Plus1D):
        def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1) -> None:
            mid = (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)
            super().__init__(in_planes, out_planes, mid, stride, padding)

    return TSPConv2Plus1D


def tsp_reference(tv: types.ModuleType) -> nn.Module:
    """TSP's ``models/backbone.py::r2plus1d_34`` (BatchNorm eps 1e-3) with ``fc`` emptied, as its
    ``Model._build_feature_backbone`` does; every parameter and running statistic random."""
    model = tv.VideoResNet(
        block=tv.BasicBlock, conv_makers=[tsp_conv_maker(tv)] * 4, layers=[3, 4, 6, 3], stem=tv.R2Plus1dStem
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = 1e-3
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=g))
    model.fc = nn.Sequential()
    return model.eval()


def test_tsp_checkpoint_gives_torchvisions_features(tv_resnet, tmp_path):
    ref = tsp_reference(tv_resnet)
    # TSP's checkpoint: {"model": {"features.<backbone>", "fc1.*", "fc2.*"}, ...}
    state = {f"features.{k}": v for k, v in ref.state_dict().items()}
    state |= {
        "fc1.weight": torch.randn(200, 512),
        "fc1.bias": torch.zeros(200),
        "fc2.weight": torch.randn(2, 1024),
        "fc2.bias": torch.zeros(2),
    }
    path = tmp_path / "r2plus1d_34-tsp_on_activitynet.pth"
    # TSP's train.py saves its options too, as an argparse.Namespace
    torch.save(
        {"model": state, "optimizer": {}, "epoch": 5, "args": argparse.Namespace(backbone="r2plus1d_34", lr=1e-4)}, path
    )
    ours = create_backbone("tsp-r2plus1d-34", resolve_weights("tsp-r2plus1d-34", str(path)))
    x = torch.randn(2, 3, 16, 112, 112)
    with torch.no_grad():
        want, got = ref(x), ours(x)
        assert want.shape == got.shape == (2, 512)
        assert float((got - want).abs().max() / want.abs().max()) < 1e-5
        x = x[:1, :, :8]  # float64 is slow on a CPU: one 8-frame clip
        want64, got64 = ref.double()(x.double()), ours.double()(x.double())
        assert float((got64 - want64).abs().max() / want64.abs().max()) < 1e-9
    assert all(m.eps == 1e-3 for m in ours.modules() if isinstance(m, nn.BatchNorm3d))


def test_tsp_frames_and_crop_equal_its_transform():
    """extract_features.py: /255, Resize((128, 171)) by F.interpolate, Normalize (Kinetics mean /
    std), CenterCrop((112, 112)) with round() offsets (i = 8, j = round(29.5) = 30); fsv's model
    input through the extraction's own StreamModel."""
    from fsv.pipeline.infer import StreamModel

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, 240, 320, 3), dtype=np.uint8)
    pre = BACKBONES["tsp-r2plus1d-34"].preprocess
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    mean, std = (
        torch.tensor([0.43216, 0.394666, 0.37645])[:, None, None, None],
        torch.tensor([0.22803, 0.22145, 0.216989])[:, None, None, None],
    )
    resized = F.interpolate(video, size=(128, 171), mode="bilinear", align_corners=False)
    want = ((resized - mean) / std)[:, :, 8:120, 30:142]
    model = StreamModel(
        make_recipe("tsp-r2plus1d-34", weights={"rgb": RANDOM}), "rgb", torch.device("cpu"), channels_last=False
    )
    views = model.views_of(resize_frames(frames, pre))  # (1, F, C, 112, 112)
    ours = model.normalise(views[:, :16])[0]  # (C, T, 112, 112)
    assert ours.shape == want.shape == (3, 16, 112, 112)
    assert float((ours - want).abs().max()) <= 0.5 / 255 / 0.216989 + 1e-5
    # the (h - crop) // 2 rule would take column 29: the crop arithmetic matters
    assert float((ours - ((resized - mean) / std)[:, :, 8:120, 29:141]).abs().max()) > 0.1


@pytest.mark.parametrize(("recipe", "stride"), [("activitynet", 16), ("thumos14", 1)])
@pytest.mark.parametrize("n", [200, 201, 63])
def test_tsp_clip_starts_equal_its_dataset(recipe, stride, n):
    """eval_video_dataset.py on a 30 fps video of n frames: every second frame (frames[::2], which
    keeps the last frame of an odd count), clip starts frame_idxs[arange(0, len - 16 + 1, stride)] / fps."""
    fps = 30.0
    plan = plan_video(make_recipe("tsp-r2plus1d-34", weights={"rgb": RANDOM}, recipe=recipe), np.arange(n) / fps, fps)
    frame_idxs = np.arange(n)[::2]
    starts = frame_idxs[np.arange(0, len(frame_idxs) - 16 + 1, stride)] / fps
    np.testing.assert_allclose(plan.spans[:, 0], starts)
    assert plan.frames.tolist() == frame_idxs.tolist()
