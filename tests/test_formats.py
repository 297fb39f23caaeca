"""Published feature formats: files written here in each layout the anchors' code reads, imported
through the CLI, checked against their time base, and exported back to the same layout."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fsv.pipeline.formats.npy_pickle import write_numpy1_pickle
from fsv.pipeline.store import FeatureStore
from old_numpy import old_numpy_reads  # tests/old_numpy.py

FSV = [sys.executable, "-m", "fsv"]
CLASSES = ["BaseballPitch", "CricketBowling", "CricketShot"]


def fsv(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*FSV, *map(str, args)], capture_output=True, text=True, timeout=300)


def save_protocol2(path: Path, array: np.ndarray) -> None:
    """An object array as the W-TALC files hold it: an .npy header, then a protocol-2 pickle (their
    files were written by Python 2 NumPy; under Python 3, protocol 2 carries bytes as
    ``_codecs.encode``, which the reader must admit)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        pickle.dump(array, f, protocol=2)


def objects(items: list) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    a[:] = items
    return a


# ------------------------------------------------------------------------------------------ wtalc
WTALC_VIDEOS = {  # name: subset, duration, fps, segments, labels_all
    "video_validation_0000051": ("validation", 10.0, 30.0, [[1.0, 2.5, "BaseballPitch"]], ["BaseballPitch"]),
    "video_validation_0000052": (
        "validation",
        7.04,
        25.0,
        [[0.5, 3.0, "CricketBowling"], [4.0, 5.0, "CricketShot"]],
        ["CricketBowling"],
    ),
    "video_test_0000004": ("test", 12.8, 30.0, [[2.0, 6.0, "CricketShot"]], ["CricketShot"]),
}


def write_wtalc(
    root: Path, *, rng: np.random.Generator, lengths: dict[str, int] | None = None
) -> tuple[Path, list[np.ndarray]]:
    """``Thumos14reduced-I3D-JOINTFeatures.npy`` and ``Thumos14reduced-Annotations/`` in the published
    dtypes and shapes; ``lengths`` overrides the rows of some videos (default: duration · 25/16)."""
    ann = root / "Thumos14reduced-Annotations"
    ann.mkdir(parents=True)
    names = list(WTALC_VIDEOS)
    v = WTALC_VIDEOS
    np.save(ann / "videoname.npy", np.array([n.encode() for n in names]))
    np.save(ann / "subset.npy", np.array([v[n][0].encode() for n in names]))
    np.save(ann / "classlist.npy", np.array([c.encode() for c in CLASSES]))
    np.save(ann / "duration.npy", np.array([[v[n][1]] for n in names]))
    np.save(ann / "original_fps.npy", np.array([v[n][2] for n in names]))
    save_protocol2(ann / "segments.npy", objects([[[s, e] for s, e, _ in v[n][3]] for n in names]))
    save_protocol2(ann / "labels.npy", objects([[lab for _, _, lab in v[n][3]] for n in names]))
    save_protocol2(ann / "labels_all.npy", objects([v[n][4] for n in names]))
    (ann / "Ambiguous_test.txt").write_text("video_test_0000004  7.0 8.0\n")
    lengths = lengths or {}
    feats = [rng.standard_normal((lengths.get(n, int(v[n][1] * 25 / 16)), 2048)).astype(np.float32) for n in names]
    save_protocol2(root / "Thumos14reduced-I3D-JOINTFeatures.npy", objects(feats))
    return root / "Thumos14reduced-I3D-JOINTFeatures.npy", feats


def test_wtalc_bundle_imports_with_its_time_base_and_exports_the_same_layout(tmp_path: Path) -> None:
    src, feats = write_wtalc(tmp_path / "src", rng=np.random.default_rng(0))
    manifest, store = tmp_path / "thumos.csv", tmp_path / "s.zarr"
    proc = fsv(
        "manifest", "build", "wtalc", "--annotations", src.parent / "Thumos14reduced-Annotations", "--out", manifest
    )
    assert proc.returncode == 0, proc.stderr
    proc = fsv("store", "import", src, "--format", "wtalc", "--manifest", manifest, "--store", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imported 3 videos" in proc.stdout
    s = FeatureStore.open(store)
    assert s.spec.name == "wtalc-i3d-rgbflow-25fps"
    from fsv.heads.tasks.wtal import stream_count
    from fsv.pipeline.spec_presets import get_spec

    assert stream_count([s]) == 2 and get_spec("i3d-kinetics400-rgbflow-25fps").streams == (
        "rgb",
        "flow",
    )  # VQK-Net's two branches
    for name, x in zip(WTALC_VIDEOS, feats, strict=True):
        np.testing.assert_array_equal(s.get(name), x)
        i = np.arange(len(x))
        np.testing.assert_allclose(
            s.spans(name), np.minimum(np.stack([0.64 * i, 0.64 * (i + 1)], 1), WTALC_VIDEOS[name][1])
        )
    from fsv.pipeline.manifests import Manifest

    m = Manifest.read(manifest)
    r = m.by_id()["video_validation_0000052"]
    assert (r.split, r.fps, r.duration, r.labels) == ("validation", 25.0, 7.04, ("CricketBowling",))
    assert [(g.start, g.end, g.label) for g in r.segments] == [(0.5, 3.0, "CricketBowling"), (4.0, 5.0, "CricketShot")]
    assert m.by_id()["video_test_0000004"].ambiguous == ((7.0, 8.0),)

    out = tmp_path / "export"
    proc = fsv("store", "export", store, "--format", "wtalc", "--manifest", manifest, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # read back the way the lineage's code reads it (np.load with encoding="bytes" / default)
    back = np.load(out / "Thumos14reduced-I3D-JOINTFeatures.npy", encoding="bytes", allow_pickle=True)
    for x, y in zip(feats, back, strict=True):
        np.testing.assert_array_equal(x, y)
    ann, orig = out / "Thumos14reduced-Annotations", src.parent / "Thumos14reduced-Annotations"
    for name in ("videoname", "subset", "classlist", "duration", "original_fps"):
        a, b = np.load(orig / f"{name}.npy"), np.load(ann / f"{name}.npy")
        assert a.dtype.kind == b.dtype.kind and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b)
    for name in ("segments", "labels", "labels_all"):
        assert list(np.load(orig / f"{name}.npy", allow_pickle=True)) == list(
            np.load(ann / f"{name}.npy", allow_pickle=True)
        ), name
    assert (ann / "Ambiguous_test.txt").read_text().split() == ["video_test_0000004", "7", "8"]
    # NumPy 1.23.5 in its own environment (the lineage pins NumPy 1) reads every file of the export
    # and fsv reads its own export (protocol-2 pickles with NumPy 1's names) back to the same store
    proc = fsv(
        "store",
        "import",
        out / "Thumos14reduced-I3D-JOINTFeatures.npy",
        "--format",
        "wtalc",
        "--manifest",
        manifest,
        "--store",
        tmp_path / "again.zarr",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = FeatureStore.open(tmp_path / "again.zarr")
    for name in WTALC_VIDEOS:
        np.testing.assert_array_equal(again.get(name), s.get(name))
        np.testing.assert_array_equal(again.spans(name), s.spans(name))
    numeric = ("videoname", "subset", "classlist", "duration", "original_fps")
    lists = ("segments", "labels", "labels_all")
    old_numpy_reads(
        tmp_path / "old-numpy",
        [
            ("npy-pickle", out / "Thumos14reduced-I3D-JOINTFeatures.npy", None, list(feats)),
            *[("npy", ann / f"{n}.npy", None, np.load(orig / f"{n}.npy")) for n in numeric],
            *[
                (
                    "npy-pickle",
                    ann / f"{n}.npy",
                    None,
                    [np.asarray(v) for v in np.load(orig / f"{n}.npy", allow_pickle=True)],
                )
                for n in lists
            ],
        ],
    )


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    src, _ = write_wtalc(tmp_path / "src", rng=np.random.default_rng(1))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    save_protocol2(src, objects([np.zeros((4, 2048), np.float32), Payload(), np.zeros((4, 2048), np.float32)]))
    manifest = tmp_path / "m.csv"
    assert (
        fsv(
            "manifest", "build", "wtalc", "--annotations", src.parent / "Thumos14reduced-Annotations", "--out", manifest
        ).returncode
        == 0
    )
    proc = fsv("store", "import", src, "--format", "wtalc", "--manifest", manifest, "--store", tmp_path / "s.zarr")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to load posix.system" in proc.stderr and str(src) in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "s.zarr").exists()  # the source is checked before a store is created


def test_wtalc_arrays_that_disagree_with_the_annotations_are_named(tmp_path: Path) -> None:
    src, _ = write_wtalc(tmp_path / "src", rng=np.random.default_rng(2), lengths={"video_test_0000004": 40})
    manifest = tmp_path / "m.csv"
    assert (
        fsv(
            "manifest", "build", "wtalc", "--annotations", src.parent / "Thumos14reduced-Annotations", "--out", manifest
        ).returncode
        == 0
    )
    proc = fsv("store", "import", src, "--format", "wtalc", "--manifest", manifest, "--store", tmp_path / "s.zarr")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "video_test_0000004" in proc.stderr and "40 steps" in proc.stderr
    s = FeatureStore.open(tmp_path / "s.zarr")
    assert sorted(s.video_ids()) == ["video_validation_0000051", "video_validation_0000052"]  # the others carry on
    assert "video_test_0000004" in s.failures

    save_protocol2(src, objects([np.zeros((16, 2048), np.float32)] * 2))  # one array short of videoname.npy
    proc = fsv("store", "import", src, "--format", "wtalc", "--manifest", manifest, "--store", tmp_path / "t.zarr")
    assert proc.returncode == 2 and "names 3 videos" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------------- actionformer
def write_actionformer(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``i3d_features/<id>.npy`` (T = (N - 16) // 4 + 1 at the video's fps) and ``thumos14.json``."""
    videos = {"video_validation_0000051": ("Validation", 10.0, 30.0), "video_test_0000004": ("Test", 8.0, 25.0)}
    (root / "i3d_features").mkdir(parents=True)
    (root / "annotations").mkdir()
    feats, database = {}, {}
    for k, (vid, (subset, duration, fps)) in enumerate(videos.items()):
        feats[vid] = rng.standard_normal(((int(duration * fps) - 16) // 4 + 1, 2048)).astype(np.float32)
        np.save(root / "i3d_features" / f"{vid}.npy", feats[vid])
        label = CLASSES[k]
        database[vid] = {
            "subset": subset,
            "duration": duration,
            "fps": fps,
            "annotations": [{"label": label, "segment": [1.0, 3.0], "segment(frames)": [fps, 3 * fps], "label_id": k}],
        }
    (root / "annotations" / "thumos14.json").write_text(json.dumps({"version": "Thumos14-30fps", "database": database}))
    return feats


def test_actionformer_features_get_their_overlapping_spans_and_export_back(tmp_path: Path) -> None:
    feats = write_actionformer(tmp_path / "src", np.random.default_rng(3))
    manifest, store = tmp_path / "m.csv", tmp_path / "s.zarr"
    proc = fsv(
        "manifest",
        "build",
        "actionformer",
        "--annotations",
        tmp_path / "src" / "annotations" / "thumos14.json",
        "--out",
        manifest,
    )
    assert proc.returncode == 0, proc.stderr
    proc = fsv(
        "store",
        "import",
        tmp_path / "src" / "i3d_features",
        "--format",
        "actionformer",
        "--manifest",
        manifest,
        "--store",
        store,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    for vid, fps in (("video_validation_0000051", 30.0), ("video_test_0000004", 25.0)):
        np.testing.assert_array_equal(s.get(vid), feats[vid])
        spans, i = s.spans(vid), np.arange(len(feats[vid]))
        np.testing.assert_allclose(spans, np.stack([4 * i / fps, (4 * i + 16) / fps], 1))
        np.testing.assert_allclose(spans.mean(1), (i * 4 + 0.5 * 16) / fps)  # where their decoder puts row i
    from fsv.pipeline.manifests import Manifest

    assert Manifest.read(manifest).splits == ["validation", "test"]

    out = tmp_path / "export"
    proc = fsv("store", "export", store, "--format", "actionformer", "--manifest", manifest, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "feat_stride: 4" in proc.stdout and "num_frames: 16" in proc.stdout
    for vid, x in feats.items():
        np.testing.assert_array_equal(np.load(out / "i3d_features" / f"{vid}.npy"), x)
    # the W-TALC lineage assumes 16 frames every 16 at 25 fps: a stride-4 store is refused, nothing written
    proc = fsv("store", "export", store, "--format", "wtalc", "--manifest", manifest, "--out", tmp_path / "as-wtalc")
    assert proc.returncode == 2 and "W-TALC time base" in proc.stderr and not (tmp_path / "as-wtalc").exists(), (
        proc.stderr
    )
    orig = json.loads((tmp_path / "src" / "annotations" / "thumos14.json").read_text())["database"]
    back = json.loads((out / "annotations" / "thumos14.json").read_text())["database"]
    for vid, entry in orig.items():  # the keys their loader and evaluator read
        assert {k: back[vid][k] for k in ("subset", "duration", "fps")} == {
            k: entry[k] for k in ("subset", "duration", "fps")
        }
        assert [(a["label"], a["segment"], a["label_id"]) for a in back[vid]["annotations"]] == [
            (a["label"], a["segment"], a["label_id"]) for a in entry["annotations"]
        ]
    old_numpy_reads(
        tmp_path / "old-numpy", [("npy", out / "i3d_features" / f"{v}.npy", None, x) for v, x in feats.items()]
    )


# -------------------------------------------------------------------------------------- anet-c3d
def write_anet(root: Path, rng: np.random.Generator) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """An official-style ``activity_net.v1-3.min.json`` and the C3D HDF5 (``v_<id>/c3d_features``)."""
    root.mkdir(parents=True)
    durations = {"QOlSCBRmfWY": 20.0, "ehGHCYKzyZ8": 9.6}
    database = {
        vid: {
            "subset": "validation",
            "duration": d,
            "url": f"https://www.youtube.com/watch?v={vid}",
            "resolution": "640x360",
            "annotations": [{"segment": [1.0, 4.0], "label": "Long jump"}],
        }
        for vid, d in durations.items()
    }
    (root / "activity_net.v1-3.min.json").write_text(
        json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database})
    )
    feats = {
        vid: rng.standard_normal((int(d * 30 / 8) - 1, 500)).astype(np.float32) for vid, d in durations.items()
    }  # 30 fps video
    with h5py.File(root / "sub_activitynet_v1-3.c3d.hdf5", "w") as f:
        for vid, x in feats.items():
            f.create_group(f"v_{vid}").create_dataset("c3d_features", data=x.astype(np.float64))
    return root / "activity_net.v1-3.min.json", root / "sub_activitynet_v1-3.c3d.hdf5", feats


def test_anet_c3d_hdf5_imports_by_youtube_id_and_exports_back(tmp_path: Path) -> None:
    ann, h5, feats = write_anet(tmp_path / "src", np.random.default_rng(4))
    manifest, store = tmp_path / "m.csv", tmp_path / "s.zarr"
    assert fsv("manifest", "build", "activitynet13", "--annotations", ann, "--out", manifest).returncode == 0
    proc = fsv("store", "import", h5, "--format", "anet-c3d", "--manifest", manifest, "--store", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    assert sorted(s.video_ids()) == sorted(feats)
    for vid, x in feats.items():
        np.testing.assert_allclose(s.get(vid), x)
        fps = (
            8 * len(x) / {"QOlSCBRmfWY": 20.0, "ehGHCYKzyZ8": 9.6}[vid]
        )  # no fps in ActivityNet's JSON: T · 8 / duration
        i = np.arange(len(x))
        np.testing.assert_allclose(s.spans(vid)[:-1], np.stack([8 * i / fps, (8 * i + 16) / fps], 1)[:-1])
    out = tmp_path / "back.hdf5"
    proc = fsv("store", "export", store, "--format", "anet-c3d", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(out, "r") as f:
        assert sorted(f) == sorted(f"v_{v}" for v in feats)
        for vid, x in feats.items():
            np.testing.assert_array_equal(f[f"v_{vid}"]["c3d_features"][()], x)
    old_numpy_reads(
        tmp_path / "old-numpy",
        [("h5", out, f"v_{vid}/c3d_features", np.asarray(s.get(vid), np.float32)) for vid in feats],
    )


# -------------------------------------------------------------------------------- video-features
def write_video_features(
    folder: Path, rng: np.random.Generator, *, fps: float = 29.97, frames: int = 300
) -> dict[str, np.ndarray]:
    """video_features i3d outputs of video ``clip01``: 64-frame windows every 64 frames."""
    folder.mkdir(parents=True)
    n = (frames - 1 - 64) // 64 + 1
    arrays = {k: rng.standard_normal((n, 1024)) for k in ("rgb", "flow")}  # float64, as np.array(tensor.tolist()) gives
    for k, a in arrays.items():
        np.save(folder / f"clip01_{k}.npy", a)
    np.save(folder / "clip01_fps.npy", np.float64(fps))
    np.save(folder / "clip01_timestamps_ms.npy", (np.arange(n) * 64 + 64) / fps * 1000)
    return arrays


def test_video_features_spans_come_from_the_real_timestamps(tmp_path: Path) -> None:
    arrays = write_video_features(tmp_path / "output" / "i3d", np.random.default_rng(5))
    manifest, store = tmp_path / "m.csv", tmp_path / "s.zarr"
    from fsv.pipeline.manifests import Manifest, VideoRecord

    Manifest(
        "mine",
        [VideoRecord("clip01", "clip01.mp4", "a", "test", fps=29.97, duration=300 / 29.97)],
        ["a"],
        "classification",
    ).write(manifest)
    proc = fsv(
        "store",
        "import",
        tmp_path / "output" / "i3d",
        "--format",
        "video-features",
        "--manifest",
        manifest,
        "--store",
        store,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    x = s.get("clip01")
    np.testing.assert_allclose(
        x, np.concatenate([arrays["rgb"], arrays["flow"]], 1), rtol=1e-6, atol=1e-6
    )  # rgb then flow
    i = np.arange(len(x))
    np.testing.assert_allclose(s.spans("clip01"), np.stack([i * 64 / 29.97, (i * 64 + 64) / 29.97], 1))
    out = tmp_path / "back"
    assert fsv("store", "export", store, "--format", "video-features", "--out", out).returncode == 0
    np.testing.assert_allclose(
        np.load(out / "clip01_timestamps_ms.npy"), np.load(tmp_path / "output" / "i3d" / "clip01_timestamps_ms.npy")
    )
    assert np.load(out / "clip01_fps.npy").shape == () and np.load(out / "clip01_rgb.npy").shape == (len(x), 1024)

    np.save(
        tmp_path / "output" / "i3d" / "clip01_timestamps_ms.npy", np.arange(len(x) + 1) * 1000.0
    )  # one timestamp too many
    proc = fsv(
        "store",
        "import",
        tmp_path / "output" / "i3d",
        "--format",
        "video-features",
        "--manifest",
        manifest,
        "--store",
        tmp_path / "t.zarr",
    )
    assert proc.returncode == 2 and "clip01" in proc.stderr and "timestamps" in proc.stderr, proc.stdout + proc.stderr
    old_numpy_reads(tmp_path / "old-numpy", [("npy", f, None, np.load(f)) for f in sorted(out.glob("*.npy"))])


def test_a_pickled_dtype_state_that_would_forge_pointers_is_refused(tmp_path: Path) -> None:
    """An object dtype whose pickled state clears its "holds objects" flag would make raw bytes
    pointers (a crash, or worse, on first touch): the unpickler refuses it before any array exists."""
    from fsv.errors import FsvInputError
    from fsv.safe_pickle.arrays import load_npy

    reconstruct = np.empty(0).__reduce__()[0]

    class ForgedDtype:
        def __reduce__(self):
            return (np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))

    class ForgedArray:
        def __reduce__(self):
            return (reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), ForgedDtype(), False, b"A" * 8))

    path = tmp_path / "forged.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        pickle.dump(ForgedArray(), f, protocol=2)
    with pytest.raises(FsvInputError, match="refusing dtype"):
        load_npy(path)
    honest = tmp_path / "honest.npy"  # the same layout with NumPy's own object dtype still loads
    np.save(honest, objects([np.zeros((2, 3), np.float32), ["label"]]), allow_pickle=True)
    assert load_npy(honest)[1] == ["label"]


# ------------------------------------------------------------------------------- videomaev2-tad
def test_videomaev2_tad_features_get_their_native_windows_and_export_back(tmp_path: Path) -> None:
    """th14_mae_g_16_4: <stem>.npy of (T, 1408) float32, T = len(range(0, N - 15, 4)) for N native frames."""
    feats, src = {}, tmp_path / "th14_mae_g_16_4"
    src.mkdir()
    rng = np.random.default_rng(6)
    videos = {"video_validation_0000051": (30.0, 300), "video_test_0000004": (25.0, 320)}  # fps, frames
    for vid, (fps, n) in videos.items():
        feats[vid] = rng.standard_normal((len(range(0, n - 15, 4)), 1408)).astype(np.float32)
        np.save(src / f"{vid}.npy", feats[vid])
    from fsv.pipeline.manifests import Manifest, VideoRecord

    records = [
        VideoRecord(vid, f"{vid}.mp4", "BaseballPitch", "test", duration=n / fps, fps=fps)
        for vid, (fps, n) in videos.items()
    ]
    manifest, store = tmp_path / "m.csv", tmp_path / "s.zarr"
    Manifest("thumos14", records, ["BaseballPitch"], "localization").write(manifest)
    proc = fsv("store", "import", src, "--format", "videomaev2-tad", "--manifest", manifest, "--store", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    assert s.spec.name == "videomaev2-tad-th14-mae-g-16-4" and s.spec.fields["features"].shape == (1408,)
    for vid, (fps, _) in videos.items():
        np.testing.assert_array_equal(s.get(vid), feats[vid])
        i = np.arange(len(feats[vid]))
        np.testing.assert_allclose(
            s.spans(vid), np.minimum(np.stack([4 * i / fps, (4 * i + 16) / fps], 1), videos[vid][1] / fps)
        )
    out = tmp_path / "export"
    proc = fsv("store", "export", store, "--format", "videomaev2-tad", "--manifest", manifest, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for vid, x in feats.items():
        back = np.load(out / f"{vid}.npy")
        assert back.dtype == np.float32 and np.array_equal(back, x)
    # a release of another length (FineAction's stride 16 under the THUMOS14 preset) is named, not imported
    proc = fsv("store", "export", store, "--format", "tsp-h5", "--manifest", manifest, "--out", tmp_path / "as-tsp.h5")
    assert proc.returncode == 2 and "not TSP's time base" in proc.stderr and not (tmp_path / "as-tsp.h5").exists(), (
        proc.stderr
    )
    np.save(src / "video_validation_0000051.npy", feats["video_validation_0000051"][::4])
    proc = fsv(
        "store", "import", src, "--format", "videomaev2-tad", "--manifest", manifest, "--store", tmp_path / "s2.zarr"
    )
    assert proc.returncode == 2 and "video_validation_0000051" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    old_numpy_reads(tmp_path / "old-numpy", [("npy", out / f"{v}.npy", None, x) for v, x in feats.items()])


# ------------------------------------------------------------------------------------------ tsp-h5
def test_tsp_h5_imports_by_activitynet_id_and_exports_back(tmp_path: Path) -> None:
    ann, _, _ = write_anet(tmp_path / "src", np.random.default_rng(7))
    durations = {"QOlSCBRmfWY": 20.0, "ehGHCYKzyZ8": 9.6}
    rng = np.random.default_rng(8)
    feats = {
        vid: rng.standard_normal((len(range(0, int(d * 15) - 16 + 1, 16)), 512)).astype(np.float32)
        for vid, d in durations.items()
    }
    h5 = tmp_path / "r2plus1d_34-max_gvf.h5"
    with h5py.File(h5, "w") as f:
        for vid, x in feats.items():
            f.create_dataset(
                f"v_{vid}", data=x, chunks=True, compression="gzip", compression_opts=9
            )  # as TSP's merge script writes
    manifest, store = tmp_path / "m.csv", tmp_path / "s.zarr"
    assert fsv("manifest", "build", "activitynet13", "--annotations", ann, "--out", manifest).returncode == 0
    proc = fsv("store", "import", h5, "--format", "tsp-h5", "--manifest", manifest, "--store", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    assert s.spec.backbone == "tsp-r2plus1d-34" and sorted(s.video_ids()) == sorted(feats)
    for vid, x in feats.items():
        np.testing.assert_array_equal(s.get(vid), x)
        i = np.arange(len(x))
        np.testing.assert_allclose(
            s.spans(vid), np.minimum(np.stack([16 * i / 15, (16 * i + 16) / 15], 1), durations[vid])
        )
    out = tmp_path / "back.h5"
    proc = fsv("store", "export", store, "--format", "tsp-h5", "--manifest", manifest, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(out, "r") as f:
        assert sorted(f) == sorted(f"v_{v}" for v in feats)
        for vid, x in feats.items():
            np.testing.assert_array_equal(f[f"v_{vid}"][()], x)
    # another time base is refused, nothing written: TSP's clips are not VideoMAE V2's windows
    proc = fsv(
        "store", "export", store, "--format", "videomaev2-tad", "--manifest", manifest, "--out", tmp_path / "as-vmae"
    )
    assert (
        proc.returncode == 2 and "not VideoMAE V2's time base" in proc.stderr and not (tmp_path / "as-vmae").exists()
    ), proc.stderr
    old_numpy_reads(tmp_path / "old-numpy", [("h5", out, f"v_{v}", x) for v, x in feats.items()])


def test_object_arrays_are_pickled_as_numpy_1_wrote_them() -> None:
    """Protocol 2 and NumPy 1's module names only (what NumPy 1 imports), and NumPy 2 reads it back."""
    array = objects([np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((1, 2), np.float32)])
    out = io.BytesIO()
    write_numpy1_pickle(array, out)
    ops = list(pickletools.genops(out.getvalue()))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    names = {arg.split(" ")[0] for op, arg, _ in ops if op.name == "GLOBAL"}
    assert "numpy.core.multiarray" in names and not any(n.startswith("numpy._core") for n in names), names
    back = pickle.loads(out.getvalue())
    assert all(np.array_equal(a, b) for a, b in zip(back, array, strict=True))
