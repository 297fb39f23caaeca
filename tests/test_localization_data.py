"""Localization data: step/second conversion, split roles, W-TALC pair batches, common-localization
class splits, queries and episodes, k-means pseudo classes, the Yang 2020 benchmark import, the
protocol tables and the random-proposal baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.heads.data.synthetic_loc import LocSyntheticConfig, write_synthetic_localization
from fsv.errors import FsvInputError
from fsv.heads.data import common_episodes as cm
from fsv.heads.data.benchmark import benchmark_path, load_benchmark
from fsv.heads.tasks.localization import LocConfig, random_proposals, summarize
from fsv.heads.data.videos import (
    VideoBank,
    carve_val,
    split_roles,
    to_seconds,
    to_steps,
)
from fsv.heads.tasks import config_for
from fsv.heads.tasks.common import COMMON, CommonObjective
from fsv.heads.tasks.localization import Scored, score
from fsv.heads.tasks.wtal import WTAL, WtalObjective
from fsv.heads.data.video_batches import perturb_indices
from fsv.pipeline.manifests import Manifest, Segment, VideoRecord


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic_localization(tmp_path_factory.mktemp("synth-loc"), LocSyntheticConfig(videos=(120, 20, 20)))


def test_steps_and_seconds_are_inverse_on_uneven_spans() -> None:
    spans = np.array([[0.0, 0.64], [0.64, 1.28], [1.28, 1.92], [1.92, 2.3]])
    t = np.array([0.0, 0.32, 1.0, 2.11, 2.3])
    s = to_steps(t, spans)
    np.testing.assert_allclose(s, [0.0, 0.5, 1 + 0.36 / 0.64, 3.5, 4.0])
    np.testing.assert_allclose(to_seconds(s, spans), t)
    assert to_steps(np.array([-1.0, 9.0]), spans).tolist() == [0.0, 4.0]


def test_split_roles_follow_the_standard_protocols() -> None:
    def m(splits: list[str]) -> Manifest:
        return Manifest(
            "x", [VideoRecord(f"v{i}", f"v{i}", "a", s) for i, s in enumerate(splits)], ["a"], "localization"
        )

    assert split_roles(m(["validation", "test"])) == split_roles(m(["test", "validation"]))
    assert (split_roles(m(["validation", "test"])).train, split_roles(m(["validation", "test"])).test) == (
        "validation",
        "test",
    )
    anet = split_roles(m(["training", "validation", "testing"]))
    assert (anet.train, anet.val, anet.test) == ("training", None, "validation")
    assert split_roles(m(["train", "val", "test"])).val == "val"
    with pytest.raises(FsvInputError, match="localization needs"):
        split_roles(m(["a", "b"]))
    recs = m(["validation"] * 50).records
    train, val = carve_val(recs, 0.1, 0)
    assert len(val) == 5 and not {r.video_id for r in train} & {r.video_id for r in val}
    assert carve_val(recs, 0.1, 0)[1] == val and carve_val(recs, 0.1, 1)[1] != val


def test_perturb_sampling_covers_each_interval() -> None:
    rng = np.random.default_rng(0)
    idx = perturb_indices(1000, 10, rng)
    assert ((idx >= np.arange(10) * 100) & (idx < np.arange(1, 11) * 100)).all()
    assert perturb_indices(5, 10, None).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_wtal_batches_have_pairs_sharing_a_class_and_are_reproducible(synth) -> None:
    manifest, store = synth
    task = WtalObjective(LocConfig(head="vqknet", task="wtal", num_segments=40), manifest, [store], None)
    assert {r.split for r in task.test_records} == {"test"} and {r.split for r in task.val_records} == {"val"}
    batches = task.batches()
    for i in range(20):
        x, y = batches.batch(i)
        assert x.shape == (10, 40, 64) and y.shape == (10, 20)
        rows = batches.rows(i)
        assert len(set(rows.tolist())) == 10
        pairs = sum(bool((y[2 * k] * y[2 * k + 1]).sum() > 0) for k in range(3))
        assert pairs == 3
    np.testing.assert_array_equal(batches.batch(3)[0], batches.batch(3)[0])
    assert not np.array_equal(batches.batch(3)[0], batches.batch(4)[0])


def test_class_split_is_80_10_10_disjoint_and_seeded() -> None:
    classes = [f"c{i}" for i in range(200)]
    split = cm.class_split(classes, 0)
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 160, "val": 20, "test": 20}
    assert split == cm.class_split(list(reversed(classes)), 0) and split != cm.class_split(classes, 1)
    fixed = cm.class_split(classes, 0, test_classes=["c1", "c2"])
    assert {c for c, s in fixed.items() if s == "test"} == {"c1", "c2"} and sum(
        s == "val" for s in fixed.values()
    ) == 22


def test_single_instance_queries_hold_one_instance_and_drop_long_ones() -> None:
    insts = [
        cm.Instance("v", 10, 20, "a"),
        cm.Instance("v", 30, 40, "b"),
        cm.Instance("v", 100, 110, "a"),
        cm.Instance("w", 0, 5, "a"),
    ]
    durations = {"v": 400.0, "w": 8.0}
    qs = cm.make_queries(insts, durations, "single", 256.0)
    windows = {(q.video, q.gt): q.window for q in qs}
    assert windows[("v", ((10, 20),))] == (0.0, 30)
    assert windows[("v", ((30, 40),))] == (20, 100)
    assert ("v", ((100, 110),)) not in windows  # 40 s .. 400 s is longer than 256 s
    assert windows[("w", ((0, 5),))] == (0.0, 8.0)
    multi = cm.make_queries(insts, durations, "multi", 256.0)
    assert {(q.video, q.label): q.gt for q in multi}[("v", "a")] == ((10, 20), (100, 110))


def test_common_episodes_take_supports_from_other_videos_of_the_class(synth) -> None:
    manifest, store = synth
    cfg = LocConfig(head="cdcca", task="common", frame_fps=2.0, num_pseudo_classes=8, shot=5)
    task = CommonObjective(cfg, manifest, [store], None)
    test = task.episodes("test")
    assert set(test.classes) <= {c for c, s in task.split_of.items() if s == "test"}
    eps = test.fixed(30, 0)
    assert [e.key for e in eps] == [e.key for e in test.fixed(30, 0)] and eps == test.fixed(30, 0)
    for ep in eps:
        assert len(ep.supports) == 5 and all(v != ep.video for v, _, _ in ep.supports)
        labels = {
            s.label for v, a, b in ep.supports for s in manifest.by_id()[v].segments if (s.start, s.end) == (a, b)
        }
        assert labels == {ep.label}
        t = cm.episode_tensors(task.bank, ep, 8)
        assert t.supports.shape == (5, 8, 64) and t.query.shape[1] == 64
        assert (t.gt[:, 0] >= 0).all() and (t.gt[:, 1] <= len(t.query)).all()
    train = task.episodes("train").episode(np.random.default_rng(0), "x")
    hot = cm.episode_tensors(task.bank, train, 8, pseudo=task.pseudo, num_pseudo=task.num_pseudo).pseudo
    assert hot is not None and 1 <= hot.sum() <= 5


def test_standardization_uses_the_training_classes_videos_only(synth) -> None:
    manifest, store = synth
    plain = CommonObjective(
        LocConfig(head="cdcca", task="common", frame_fps=2.0, num_pseudo_classes=8, shot=5), manifest, [store], None
    )
    task = CommonObjective(
        LocConfig(head="cdcca", task="common", frame_fps=2.0, num_pseudo_classes=8, shot=5, standardize=True),
        manifest,
        [store],
        None,
    )
    assert plain.standardize is None and task.standardize is not None
    train_videos = sorted({i.video for i in task.instances if task.split_of[i.label] == "train"})
    test_only = {i.video for i in task.instances if task.split_of[i.label] == "test"} - set(train_videos)
    assert test_only  # videos the statistics must not read
    x = np.concatenate([task.bank.features(v).astype(np.float64) for v in train_videos])
    np.testing.assert_allclose(task.standardize.mean, x.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(task.standardize.std, x.std(0), rtol=1e-4)
    ep = task.episodes("test").fixed(1, 0)[0]
    raw, scaled = (
        cm.episode_tensors(task.bank, ep, 8),
        cm.episode_tensors(task.bank, ep, 8, standardize=task.standardize),
    )
    torch.testing.assert_close(
        scaled.query, (raw.query - torch.from_numpy(task.standardize.mean)) / torch.from_numpy(task.standardize.std)
    )
    # supports are standardized step by step before their snippets are averaged (an affine map: the same)
    torch.testing.assert_close(
        scaled.supports,
        (raw.supports - torch.from_numpy(task.standardize.mean)) / torch.from_numpy(task.standardize.std),
        rtol=1e-4,
        atol=1e-4,
    )
    assert (
        config_for("cdcca", dataset="activitynet13").standardize
        and not config_for("protomatch", dataset="activitynet13").standardize
    )


def test_a_run_keeps_the_standardization_it_trained_with(synth, tmp_path: Path) -> None:
    """Written at training into the run's cache, read back by eval and predict even when the store
    (and so the training videos with features) changed since; a damaged file is an input error."""
    manifest, store = synth
    task = CommonObjective(
        LocConfig(head="cdcca", task="common", frame_fps=2.0, num_pseudo_classes=8, standardize=True),
        manifest,
        [store],
        None,
    )
    videos = sorted({i.video for i in task.instances if task.split_of[i.label] == "train"})
    first = cm.Standardizer.for_run(task.bank, videos, tmp_path / "cache")
    assert (tmp_path / "cache" / "standardize.npz").is_file()
    again = cm.Standardizer.for_run(task.bank, videos[: len(videos) // 2], tmp_path / "cache")
    np.testing.assert_array_equal(again.mean, first.mean)
    np.testing.assert_array_equal(again.std, first.std)
    assert not np.allclose(cm.Standardizer.fit(task.bank, videos[: len(videos) // 2]).mean, first.mean)
    (tmp_path / "cache" / "standardize.npz").write_bytes(b"not an npz")
    with pytest.raises(FsvInputError, match="standardize.npz: unreadable"):
        cm.Standardizer.for_run(task.bank, videos, tmp_path / "cache")


@pytest.mark.parametrize(("head", "k"), [("protomatch", 16), ("cdcca", 0)])
def test_pseudo_classes_must_fit_the_head(synth, head: str, k: int) -> None:

    manifest, store = synth
    with pytest.raises(FsvInputError, match=f"{head} needs num_pseudo_classes"):
        COMMON.check_data(LocConfig(head=head, task="common", num_pseudo_classes=k), manifest, [store])


def test_training_crop_keeps_a_ground_truth_instance() -> None:
    spans = np.stack([np.arange(300), np.arange(1, 301)], 1).astype(float)
    bank = VideoBank(
        np.zeros((300, 4), np.float16), spans, np.array([0]), np.array([300]), [VideoRecord("v", "v", "a", "train")]
    )
    ep = cm.CommonEpisode("k", "a", "v", (0.0, 300.0), ((200.0, 230.0),), (("v", 0.0, 10.0),))
    for seed in range(20):
        t = cm.episode_tensors(bank, ep, 4, crop_steps=64, rng=np.random.default_rng(seed))
        assert len(t.query) == 64 and len(t.gt) == 1 and t.gt[0, 1] - t.gt[0, 0] == pytest.approx(30)
        assert 200 - t.offset == pytest.approx(float(t.gt[0, 0]))
    # other classes' instances travel as distractors in the query's (cropped) step coordinates
    t = cm.episode_tensors(bank, ep, 4, others=[(150.0, 170.0), (20.0, 30.0)])
    assert t.distractors.tolist() == [[150.0, 170.0], [20.0, 30.0]] and t.gt.tolist() == [[200.0, 230.0]]
    cropped = cm.episode_tensors(
        bank, ep, 4, crop_steps=64, rng=np.random.default_rng(0), others=[(150.0, 170.0), (20.0, 30.0)]
    )
    assert all(0 <= a < b <= 64 for a, b in cropped.distractors.tolist()) and len(cropped.distractors) <= 1


def test_kmeans_recovers_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (4, 8))
    labels = np.repeat(np.arange(4), 25)
    ids = cm.kmeans(centres[labels] + rng.normal(0, 0.1, (100, 8)), 4, 0)
    assert len({(a, b) for a, b in zip(labels, ids, strict=True)}) == 4


def test_support_snippets_split_uniformly() -> None:
    x = np.arange(12, dtype=np.float32).reshape(12, 1)
    assert cm.support_snippets(x, 4)[:, 0].tolist() == [1.0, 4.0, 7.0, 10.0]
    assert cm.support_snippets(x[:2], 4)[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_yang2020_benchmark_imports_frames_as_seconds_and_flags_leaks() -> None:
    raw = json.loads(benchmark_path("yang2020").read_text())
    assert raw["fps"] == 3 and len(raw["episodes"]) == 1000
    assert sum(bool(e["supports_from_query_video"]) for e in raw["episodes"]) == 104
    ep0 = raw["episodes"][0]
    videos = {ep0["query"]["video"]} | {s["video"] for s in ep0["supports"]}
    records = [
        VideoRecord(
            v.split("/")[1], v, "Surfing", v.split("/")[0], duration=300.0, segments=(Segment(100.0, 157.0, "Surfing"),)
        )
        for v in sorted(videos)
    ]
    manifest = Manifest("activitynet13", records, ["Surfing"], "localization")
    eps, skipped = load_benchmark("yang2020", manifest, 5, {r.video_id for r in records})
    assert skipped == 999 and len(eps) == 1
    e = eps[0]
    assert e.window == (0.0, 537 / 3) and e.gt == ((302 / 3, 469 / 3),) and e.leak and e.label == "Surfing"
    one, _ = load_benchmark("yang2020", manifest, 1, {r.video_id for r in records})
    assert one[0].leak and len(one[0].supports) == 1  # the query video is its first support
    with pytest.raises(FsvInputError, match="none of the 1000"):
        load_benchmark("yang2020", manifest, 5, set())


def test_protocol_tables_and_random_baseline_is_low() -> None:
    p = WTAL.protocol("thumos14")
    table = summarize({t: t for t in p.tious}, p)
    assert table["averages"]["0.1:0.5"] == pytest.approx(0.3) and table["averages"]["0.3:0.7"] == pytest.approx(0.5)
    assert list(table["map"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    assert WTAL.protocol("activitynet13").tious[-1] == 0.95 and COMMON.protocol("thumos14").tious == (0.5,)
    gt = {f"v{i}": [(10.0 + i, 20.0 + i, "a")] for i in range(50)}
    perfect = Scored(
        {k: [(s, e, 1.0, lab) for s, e, lab in v] for k, v in gt.items()},
        gt,
        windows={k: (0.0, 100.0) for k in gt},
        items=50,
    )
    assert score(perfect, WTAL.protocol("thumos14"))["average_map"] == pytest.approx(1.0)
    assert score(random_proposals(perfect, seed=0), WTAL.protocol("thumos14"))["average_map"] < 0.2


def test_presets_follow_the_dataset() -> None:
    thumos, anet = (
        config_for("cdcca", dataset="thumos14"),
        config_for("cdcca", dataset="activitynet13", overrides={"shot": 1}),
    )
    assert (thumos.frame_fps, anet.frame_fps, anet.shot, thumos.task) == (25.0, 3.0, 1, "common")
    v_thumos, v_anet12 = config_for("vqknet", dataset="thumos14"), config_for("vqknet", dataset="activitynet12")
    assert (v_thumos.num_segments, v_anet12.num_segments) == (500, 60)
    assert (
        v_thumos.head_args["topk_m"],
        v_anet12.head_args["topk_m"],
        config_for("vqknet", dataset="activitynet13").head_args["topk_m"],
    ) == (7, 4, 6)
    assert v_thumos.train_steps == 5000 and v_thumos.batch_videos == 10 and v_thumos.min_pairs == 3
    with pytest.raises(FsvInputError, match="unknown setting 'bogus'"):
        config_for("vqknet", dataset="thumos14", overrides={"bogus": 1})
    assert (
        config_for("vqknet", dataset="thumos14", overrides={"head_args.dropout": 0.5, "topk_m": 8}).head_args["topk_m"]
        == 8
    )


def test_bad_inputs_get_clear_errors(synth, tmp_path: Path) -> None:
    manifest, store = synth
    fewshot = Manifest(
        "x", [VideoRecord(r.video_id, r.path, r.label, r.split) for r in manifest], list(manifest.classes), "fewshot"
    )
    with pytest.raises(FsvInputError, match="no annotated segments"):
        WtalObjective(LocConfig(head="vqknet", task="wtal"), fewshot, [store], None)
    with pytest.raises(FsvInputError, match="common localization needs segments"):
        CommonObjective(LocConfig(head="cdcca", task="common"), fewshot, [store], None)
    from fsv.pipeline.spec import FeatureSpec, FieldSpec
    from fsv.pipeline.store import FeatureStore

    grid = FeatureStore.create(
        tmp_path / "grid.zarr",
        FeatureSpec(
            name="g",
            backbone="x",
            weights={"name": "none"},
            sampling={"kind": "tsn"},
            fields={"grid": FieldSpec((4, 7, 7), "float16")},
        ),
    )
    with grid.writer() as w:
        w.write(
            manifest.records[0].video_id, np.zeros((2, 4, 7, 7), np.float32), spans=np.array([[0.0, 1.0], [1.0, 2.0]])
        )
    with pytest.raises(FsvInputError, match="need snippet features"):
        VideoBank.load([grid], manifest.records[:1])
    with pytest.raises(FsvInputError, match="no features"):
        VideoBank.load([grid], manifest.records[:2])


def test_support_control_refuses_test_videos_too_few_to_swap_supports(tmp_path) -> None:
    from fsv.heads.data.synthetic_loc import write_support_control
    from fsv.errors import FsvInputError

    manifest, _ = write_synthetic_localization(tmp_path, LocSyntheticConfig(videos=(10, 3, 3)))
    with pytest.raises(FsvInputError, match="support control needs test videos holding two classes"):
        write_support_control(tmp_path / "episodes", manifest)
