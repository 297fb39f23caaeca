"""Both localization heads train, predict and evaluate from the CLI on a store written by
``fsv extract`` (I3D snippets of real encoded videos with annotated instances) and on the same
features brought in by ``fsv store import``; ``fsv score detections`` on the predicted results file
reproduces the mAP that ``fsv eval`` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.pipeline.manifests import Manifest, Segment, VideoRecord
from fsv.pipeline.store import FeatureStore

FSV = [sys.executable, "-m", "fsv"]
COLOURS = {"red": (230, 30, 30), "green": (30, 230, 30), "blue": (30, 30, 230)}
FPS = 25


def _video(path: Path, colour: tuple[int, int, int], start: int, end: int, frames: int, seed: int) -> None:
    """Grey noise with a block of ``colour`` on frames ``[start, end)``."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = rng.integers(90, 160, (48, 64, 3), dtype=np.uint8)
            if start <= i < end:
                img[8:40, 12:52] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    pytest.importorskip("av")
    out = tmp_path_factory.mktemp("loc-cli")
    records = []
    splits = ["train", "train", "val", "test"]
    for c, (name, colour) in enumerate(COLOURS.items()):
        for k, split in enumerate(splits):
            start, end = 16 + 8 * k, 56 + 8 * k
            vid = f"{name}_{k}"
            _video(out / "videos" / f"{vid}.mp4", colour, start, end, 96, seed=10 * c + k)
            records.append(
                VideoRecord(vid, f"{vid}.mp4", name, split, segments=(Segment(start / FPS, end / FPS, name),))
            )
    Manifest("colours", records, list(COLOURS), "localization").write(out / "m.csv")
    run(
        "extract",
        "--backbone",
        "i3d",
        "--manifest",
        str(out / "m.csv"),
        "--root",
        str(out / "videos"),
        "--store",
        str(out / "extracted"),
        "--weights",
        "random",
        "--device",
        "cpu",
    )
    run("store", "export", str(out / "extracted"), "--h5", str(out / "features.h5"))
    (out / "spec.json").write_text(json.dumps(FeatureStore.open(out / "extracted").spec.to_dict()))
    run(
        "store",
        "import",
        str(out / "features.h5"),
        "--store",
        str(out / "imported"),
        "--manifest",
        str(out / "m.csv"),
        "--spec",
        str(out / "spec.json"),
    )
    gt = {
        "database": {
            r.video_id: {
                "subset": r.split,
                "annotations": [{"segment": [s.start, s.end], "label": s.label} for s in r.segments],
            }
            for r in records
        }
    }
    (out / "gt.json").write_text(json.dumps(gt))
    return out, out / "extracted", out / "imported", out / "gt.json"


TINY = {
    "vqknet": [
        "--set",
        "batch_videos=4",
        "--set",
        "min_pairs=1",
        "--set",
        "num_segments=8",
        "--set",
        "train_steps=2",
        "--set",
        "val_every=2",
    ],
    "cdcca": [
        "--shot",
        "1",
        "--set",
        "train_steps=2",
        "--set",
        "val_every=2",
        "--set",
        "val_episodes=2",
        "--set",
        "test_episodes=3",
        "--set",
        "frame_fps=25",
        "--set",
        "num_pseudo_classes=2",
    ],
    "protomatch": [
        "--shot",
        "1",
        "--set",
        "train_steps=2",
        "--set",
        "val_every=2",
        "--set",
        "val_episodes=2",
        "--set",
        "test_episodes=3",
        "--set",
        "frame_fps=25",
    ],
}
COMMON = ("cdcca", "protomatch")


@pytest.mark.parametrize("head", ["vqknet", "cdcca", "protomatch"])
def test_head_trains_predicts_and_evaluates_on_extracted_and_imported_stores(
    data: tuple[Path, Path, Path, Path], head: str
) -> None:
    out, extracted, imported, gt = data
    vid = FeatureStore.open(extracted).video_ids()[0]
    np.testing.assert_array_equal(FeatureStore.open(extracted).get(vid), FeatureStore.open(imported).get(vid))
    tables = []
    for store in (extracted, imported):
        rundir = out / f"run-{head}-{store.name}"
        run(
            "train-head",
            head,
            "--store",
            str(store),
            "--manifest",
            str(out / "m.csv"),
            "--out",
            str(rundir),
            "--device",
            "cpu",
            *TINY[head],
        )
        assert (rundir / "best.pt").is_file() and (rundir / "metrics.csv").read_text().count("\n") == 2
        table = json.loads(run("eval", str(rundir), "--json", "--device", "cpu").stdout)
        assert (
            table["head"] == head
            and table["dataset"] == "colours"
            and set(table["map"]) == ({"0.5"} if head in COMMON else {f"0.{i}" for i in range(1, 8)})
        )
        assert 0.0 <= table["average_map"] <= 1.0 and "random_proposals" in table
        tables.append(table)
        if store == imported:
            continue  # the same features: equal tables (asserted below) stand for equal detections
        preds = out / f"preds-{head}-{store.name}.json"
        run("predict", str(rundir), "--out", str(preds), "--device", "cpu")
        results = json.loads(preds.read_text())["results"]
        for dets in results.values():
            for d in dets:
                assert 0 <= d["segment"][0] < d["segment"][1] <= 96 / FPS + 1e-6 and np.isfinite(d["score"])
        truth = preds.with_name(preds.name.removesuffix(".json") + ".gt.json") if head in COMMON else gt
        tiou = "0.5" if head in COMMON else "0.1:0.7:0.1"
        args = ["score", "detections", "--gt", str(truth), "--pred", str(preds), "--tiou", tiou, "--json"] + (
            [] if head in COMMON else ["--subset", "test"]
        )
        scored = json.loads(run(*args).stdout)
        for k, v in table["map"].items():
            assert scored["map"][k] == pytest.approx(v, abs=1e-3)
    assert tables[0]["map"] == tables[1]["map"]  # same features, same run settings
