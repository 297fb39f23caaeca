"""``fsv demo`` end to end, and the ResNet-50 extraction path it runs on: resume, failures, weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.demo import write_video
from fsv.errors import FsvInputError
from fsv.pipeline.backbones import create_backbone
from fsv.pipeline.backbones.resnet50 import ResNet50
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.sampling import tsn_indices
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.backbones import resolve_weights
from fsv.pipeline.weights import WeightsRef

FSV = [sys.executable, "-m", "fsv"]


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [*FSV, "demo", "--out", str(out), "--per-class", "3"], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all intact" in proc.stdout and "protonet" in proc.stdout and "trx" in proc.stdout
    m = Manifest.read(out / "manifest.csv")
    assert len(m) == 36 and m.task == "fewshot" and m.splits == ["test", "train", "val"]
    assert all(r.fps == 25.0 and r.num_frames == 40 for r in m)
    store = FeatureStore.open(out / "store.zarr")
    assert sorted(store.video_ids()) == sorted(r.video_id for r in m)
    grid = store.get(m.records[0].video_id)
    assert grid.shape == (8, 2048, 7, 7) and grid.dtype == np.float16 and (grid >= 0).all()
    assert store.spec.weights == {"name": "random", "seed": 0}
    np.testing.assert_allclose(store.spans(m.records[0].video_id)[:, 1], np.arange(1, 9) * 1.6 / 8)
    for head in ("protonet", "trx"):
        assert (out / "runs" / head / "best.pt").is_file()
    again = subprocess.run(
        [*FSV, "demo", "--out", str(out), "--per-class", "3"], capture_output=True, text=True, timeout=1200
    )
    assert again.returncode == 0 and "0 written, 36 already done" in again.stdout


def test_extract_records_bad_videos_and_retries_them(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    write_video(root / "a" / "good.mp4", ("red",), seed=1, frames=20)
    (root / "a" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "a" / "empty.mp4").write_bytes(b"")
    rows = [VideoRecord(v, f"a/{v}.mp4", "a", "train") for v in ("good", "corrupt", "empty")]
    manifest = tmp_path / "m.csv"
    Manifest("folder", rows, ["a"], "classification").write(manifest)
    store = tmp_path / "s.zarr"
    args = [
        *FSV,
        "extract",
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--backbone",
        "resnet50",
        "--weights",
        "random",
    ]
    proc = subprocess.run([*args, "--strict"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "corrupt.mp4" in proc.stderr and "empty" in proc.stderr
    s = FeatureStore.open(store)
    assert s.video_ids() == ["good"] and set(s.failures) == {"corrupt", "empty"}
    assert "0 bytes" in s.failures["empty"].error
    write_video(root / "a" / "corrupt.mp4", ("green", "blue"), seed=2, frames=20)  # the user fixes the file
    assert subprocess.run(args, capture_output=True, text=True, timeout=300).returncode == 0
    s.refresh()
    assert "corrupt" in s.failures  # a plain re-run does not retry recorded failures
    proc = subprocess.run([*args, "--retry-failed"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    s.refresh()
    assert sorted(s.video_ids()) == ["corrupt", "good"] and set(s.failures) == {"empty"}


def test_resnet50_has_torchvision_parameter_names_and_loads_checkpoints(tmp_path: Path) -> None:
    state = ResNet50().state_dict()
    assert len(state) == 320  # torchvision's resnet50 state dict has 320 entries
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer3.5.conv2.weight",
        "layer4.2.bn3.num_batches_tracked",
        "fc.bias",
    ):
        assert key in state
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # stride on the 3x3 (v1.5)
    torch.manual_seed(3)
    source = ResNet50().eval()
    ckpt = tmp_path / "resnet50-0676ba61.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, ckpt)
    ref = resolve_weights("resnet50", str(ckpt))
    assert ref.to_spec()["sha256"] and len(ref.to_spec()["sha256"]) == 64
    model = create_backbone("resnet50", ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (2, 2048, 7, 7)
        torch.testing.assert_close(out, source(x))


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(FsvInputError, match="does not fit resnet50"):
        create_backbone("resnet50", WeightsRef("wrong.pth", wrong, "x"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FsvInputError, match="garbage.pth"):
        create_backbone("resnet50", WeightsRef("garbage.pth", garbage, "x"))
    with pytest.raises(FsvInputError, match="--weights random"):
        resolve_weights("resnet50", None)


def test_tsn_indices() -> None:
    np.testing.assert_array_equal(tsn_indices(80, 8), [5, 15, 25, 35, 45, 55, 65, 75])
    np.testing.assert_array_equal(tsn_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    r = tsn_indices(80, 8, mode="random", rng=np.random.default_rng(0))
    assert ((r >= np.arange(8) * 10) & (r < np.arange(1, 9) * 10)).all()
