"""``fsv store import | export | info | verify`` from the command line, on files users already have."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.spec_presets import get_spec
from fsv.pipeline.store import FeatureStore

FSV = [sys.executable, "-m", "fsv"]


def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    records = [
        VideoRecord(
            f"video_test_{i:07d}", f"test/video_test_{i:07d}.mp4", "CricketShot", "test", fps=30.0, duration=10.0
        )
        for i in range(6)
    ]
    path = tmp_path / "m.csv"
    Manifest("thumos14", records, ["CricketShot"], "localization").write(path)
    return path


def features(i: int, dim: int = 1024) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((20 + i, dim)).astype(np.float32)


def test_import_npy_rgb_flow_concat_then_export_and_reimport_h5(tmp_path: Path, manifest: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    for i in range(5):
        np.savez(src / f"video_test_{i:07d}.npz", rgb=features(i), flow=features(100 + i + 0 * i)[: 20 + i])
    np.save(src / "not_in_manifest.npy", features(0, 2048))
    store = tmp_path / "th.zarr"
    proc = run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
        "--concat",
        "rgb,flow",
    )
    assert (
        "imported 5 videos" in proc.stdout
        and "1 not in the manifest" in proc.stdout
        and "1 manifest videos have no features" in proc.stdout
    )
    s = FeatureStore.open(store)
    x = s.get("video_test_0000003")
    np.testing.assert_array_equal(x, np.concatenate([features(3), features(103)[:23]], axis=1))
    spans = s.spans("video_test_0000003")
    np.testing.assert_allclose(spans[1], [16 / 25, 32 / 25])
    assert s.attrs["manifest_sha256"] == Manifest.read(manifest).sha256

    info = json.loads(run("store", "info", str(store), "--json").stdout)
    assert info["videos"] == 5 and info["spec_key"] == get_spec("i3d-kinetics400-rgbflow-25fps").key
    assert "all intact" in run("store", "verify", str(store)).stdout

    h5 = tmp_path / "out.h5"
    run("store", "export", str(store), "--h5", str(h5))
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["video_test_0000003"][()], x)
        np.testing.assert_allclose(f["video_test_0000003"].attrs["span_s"], spans)
        assert f.attrs["fsv_spec_key"] == s.spec.key
    again = tmp_path / "again.zarr"
    run(
        "store",
        "import",
        str(h5),
        "--store",
        str(again),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
    )
    np.testing.assert_array_equal(FeatureStore.open(again).get("video_test_0000003"), x)
    # a second import of the same source skips what is there
    assert (
        "skipped 5 already there"
        in run(
            "store",
            "import",
            str(h5),
            "--store",
            str(again),
            "--manifest",
            str(manifest),
            "--spec",
            "i3d-kinetics400-rgbflow-25fps",
        ).stdout
    )


def test_import_wrong_dims_names_the_file_and_keeps_earlier_videos(tmp_path: Path, manifest: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "video_test_0000000.npy", features(0, 2048))
    np.save(src / "video_test_0000001.npy", features(1, 1024))
    store = tmp_path / "th.zarr"
    proc = run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
        check=2,
    )
    assert "video_test_0000001.npy" in proc.stderr and "(T, 2048)" in proc.stderr
    np.testing.assert_array_equal(FeatureStore.open(store).get("video_test_0000000"), features(0, 2048))


def test_import_into_store_of_another_spec_is_refused(tmp_path: Path, manifest: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "video_test_0000000.npy", features(0, 2048))
    store = tmp_path / "th.zarr"
    run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
    )
    proc = run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "c3d-sports1m-fc6-16",
        check=2,
    )
    assert "refusing features of spec 'c3d-sports1m-fc6-16'" in proc.stderr


def test_pickled_npy_is_not_loaded(tmp_path: Path, manifest: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "video_test_0000000.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    store = tmp_path / "th.zarr"
    run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
        check=2,
    )  # a failed video: exit 2
    s = FeatureStore.open(store)
    assert "video_test_0000000" in s.failures and "pickle" in s.failures["video_test_0000000"].error.lower()


def test_verify_cli_exits_1_on_corruption(tmp_path: Path, manifest: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    for i in range(3):
        np.save(src / f"video_test_{i:07d}.npy", features(i, 2048))
    store = tmp_path / "th.zarr"
    run(
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "i3d-kinetics400-rgbflow-25fps",
    )
    shard = next(p for p in (store / "parts").rglob("features/c/*/*") if p.is_file())
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = run("store", "verify", str(store), check=1)
    assert "corrupt" in proc.stderr
