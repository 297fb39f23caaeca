"""VQK-Net head: shapes for one and two streams, each loss term against hand computations, gradients
of every term, the top-k count, the preset's keys, localization's output contract and an overfit on
planted action intervals."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsv.errors import FsvInputError
from fsv.heads.models.registry import HEADS
from fsv.heads.models.vqknet import (
    ATTENTION_THRESHOLDS,
    DATASET_PRESETS,
    PRESET,
    VQKNet,
    VQKOutput,
    attention_proposals,
    co_activity_loss,
    outer_inner_score,
    query_similarity_loss,
    topk_count,
    topk_mil_loss,
    video_logits,
)
from fsv.metrics import temporal_iou

D, C, T, B = 16, 3, 24, 4
SMALL = {"attention_dim": 8}
# The trainer's own keys; every other preset key must be a constructor argument.
TRAINER_KEYS = {
    "lr",
    "weight_decay",
    "optimizer",
    "batch_videos",
    "min_pairs",
    "train_iterations",
    "num_segments",
    "val_every",
}


def make_head(seed: int = 0, **kwargs: object) -> VQKNet:
    torch.manual_seed(seed)
    return VQKNet(D, C, **{**SMALL, **kwargs})  # type: ignore[arg-type]


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, D]`` features and ``[B, C]`` labels in which videos 0 and 1 share class 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=torch.float32)
    return torch.randn(B, T, D, generator=g), labels


@pytest.mark.parametrize("streams", [1, 2])
def test_output_shapes_and_definitions(streams: int) -> None:
    head = make_head(streams=streams)
    x, _ = batch()
    out = head(x)
    assert out.cas.shape == (B, T, C + 1)
    assert out.suppressed_cas.shape == (B, T, C + 1)
    assert out.attention.shape == (B, T)
    assert out.stream_attention.shape == (B, streams, T)
    assert out.queries.shape == (B, C + 1, D)
    assert out.keys.shape == (B, T, D)
    assert out.features.shape == (B, T, D)
    assert ((out.attention > 0) & (out.attention < 1)).all()
    torch.testing.assert_close(out.attention, out.stream_attention.mean(dim=1))
    # Eq. 7: A = Q_hat K_hat^T / sqrt(D); A_hat = s (x) A
    torch.testing.assert_close(out.cas, torch.einsum("btd,bcd->btc", out.keys, out.queries) / math.sqrt(D))
    torch.testing.assert_close(out.suppressed_cas, out.attention[..., None] * out.cas)
    assert head.video_scores(out).shape == (B, C)


def test_streams_split_the_feature_axis_rgb_first() -> None:
    """The first stream's attention depends only on the first half of the features."""
    head = make_head(streams=2).eval()
    x, _ = batch()
    y = x.clone()
    y[..., D // 2 :] += 3.0
    a, b = head(x), head(y)
    torch.testing.assert_close(a.stream_attention[:, 0], b.stream_attention[:, 0])
    assert not torch.allclose(a.stream_attention[:, 1], b.stream_attention[:, 1])


def test_video_order_does_not_matter() -> None:
    head = make_head().eval()
    x, labels = batch()
    perm = torch.tensor([2, 0, 3, 1])
    loss = head.loss(head(x), labels)["loss"]
    loss_perm = head.loss(head(x[perm]), labels[perm])["loss"]
    torch.testing.assert_close(loss, loss_perm)


def test_bad_inputs_raise() -> None:
    with pytest.raises(FsvInputError):
        VQKNet(15, C, streams=2)
    head = make_head()
    with pytest.raises(FsvInputError):
        head(torch.randn(2, T, D + 1))
    x, labels = batch()
    with pytest.raises(FsvInputError):
        head.loss(head(x), labels[:, :2])
    with pytest.raises(FsvInputError):
        head.detect(head(x))


def test_topk_count_and_video_logits() -> None:
    assert topk_count(500, 7) == 71
    assert topk_count(60, 4) == 15
    assert topk_count(6, 7) == 1
    # T = 20, m = 7 -> k = 2: the top-2 mean, not the top-1 or top-3 one
    cas = torch.zeros(1, 20, 2)
    cas[0, :4, 0] = torch.tensor([9.0, 5.0, 3.0, 1.0])
    cas[0, :, 1] = torch.arange(20.0)
    torch.testing.assert_close(video_logits(cas, 7), torch.tensor([[7.0, 18.5]]))


def test_topk_mil_loss_by_hand() -> None:
    """Eqs. 8-10 with k = 1: cross-entropy against the normalised target; an all-zero target adds 0."""
    cas = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])  # [2, T=2, 3]
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    logp = F.log_softmax(torch.tensor([1.0, 3.0, 2.0]), dim=0)
    expected = -(0.5 * logp[0] + 0.5 * logp[2]) / 2
    torch.testing.assert_close(topk_mil_loss(cas, target, m=2), expected)


def test_query_similarity_by_hand() -> None:
    """Eq. 4 with C = 2: class 0 has the pair (0, 1), class 1 one video only, the background the
    three pairs."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 3, 5, generator=g)
    labels = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.float32)

    def d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(a, b, dim=0)

    background = (d(q[0, 2], q[1, 2]) + d(q[0, 2], q[2, 2]) + d(q[1, 2], q[2, 2])) / 3
    expected = (d(q[0, 0], q[1, 0]) + 0 + background) / 3
    torch.testing.assert_close(query_similarity_loss(q, labels), expected)


def test_query_similarity_without_shared_classes() -> None:
    """No pair shares an action class: only the background queries count. One video adds 0."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 3, 5, generator=g)
    q[1, 2] = 4 * q[0, 2]  # same background direction
    labels = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.float32)
    loss = query_similarity_loss(q, labels)
    assert torch.isfinite(loss) and loss.abs() < 1e-6
    assert query_similarity_loss(q[:1], labels[:1]) == 0
    q[1, 2] = -q[0, 2]  # opposite background queries: distance 2, averaged over C + 1 = 3 classes
    torch.testing.assert_close(query_similarity_loss(q, labels), torch.tensor(2.0 / 3))


def test_co_activity_loss() -> None:
    """W-TALC's hinge by hand. Attention on steps 0-1 gives ``H ~ e0`` and ``L ~ (1, 2)``
    (``(1 - a) / (T - 1)`` is 1/6 on steps 0-1 and 1/3 on steps 2-3), so ``d(H, L) = 1 - 1/sqrt(5)``.
    Two such videos: ``d(H_i, H_j) = 0`` and both hinges are inactive. When video 1 attends to steps
    2-3: ``d(H_0, H_1) = 1`` and ``d(H_0, L_1) = d(L_0, H_1) = 1 - 2/sqrt(5)``. With no shared class
    the loss is 0."""
    feats = torch.zeros(2, 4, 2)
    feats[:, :2, 0] = 1.0  # steps 0-1 along e0
    feats[:, 2:, 1] = 1.0  # steps 2-3 along e1
    cas = torch.zeros(2, 4, 1)
    cas[:, :2, 0] = 50.0  # attention on steps 0-1
    labels = torch.ones(2, 1)
    assert co_activity_loss(feats, cas, labels, 0.5) < 1e-6
    cas_swapped = cas.clone()
    cas_swapped[1] = 50.0 - cas[1]  # video 1 attends to steps 2-3 instead
    expected = 1.0 - (1.0 - 2.0 / math.sqrt(5.0)) + 0.5
    torch.testing.assert_close(
        co_activity_loss(feats, cas_swapped, labels, 0.5), torch.tensor(expected), atol=1e-4, rtol=0
    )
    assert co_activity_loss(feats, cas_swapped, torch.tensor([[1.0], [0.0]]), 0.5) == 0


def test_co_activity_loss_matches_a_loop_over_pairs() -> None:
    """The batched loss equals W-TALC's formula written pair by pair, class by class."""
    g = torch.Generator().manual_seed(4)
    feats, cas = torch.randn(4, 6, 5, generator=g), 2 * torch.randn(4, 6, 3, generator=g)
    labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0]], dtype=torch.float32)

    def d(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(u, v, dim=0)

    terms = []
    for i in range(4):
        for j in range(i + 1, 4):
            for c in range(3):
                if labels[i, c] and labels[j, c]:
                    ai, aj = torch.softmax(cas[i, :, c], 0), torch.softmax(cas[j, :, c], 0)
                    hi, hj = feats[i].t() @ ai, feats[j].t() @ aj
                    li, lj = feats[i].t() @ (1 - ai) / 5, feats[j].t() @ (1 - aj) / 5
                    terms.append(0.5 * F.relu(d(hi, hj) - d(hi, lj) + 0.5) + 0.5 * F.relu(d(hi, hj) - d(li, hj) + 0.5))
    assert len(terms) == 6
    torch.testing.assert_close(co_activity_loss(feats, cas, labels, 0.5), torch.stack(terms).mean())


@pytest.mark.parametrize("streams", [1, 2])
def test_every_loss_term_is_finite_and_has_gradients(streams: int) -> None:
    head = make_head(streams=streams)
    x, labels = batch()
    out = head(x)
    parts = head.loss(out, labels)
    total, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    expected_total = (
        terms["vcls"]
        + 5.0 * terms["query_similarity"]
        + terms["mutual"]
        + 0.8 * terms["guide"]
        + terms["co_activity"]
        + 0.8 * terms["sparsity"]
    )  # Eq. 14 with the THUMOS14 weights
    assert math.isclose(terms["loss"], expected_total, rel_tol=1e-5)
    assert math.isclose(float(total.detach()), terms["loss"], rel_tol=1e-6)
    assert all(math.isfinite(v) for v in terms.values())
    assert math.isclose(terms["vcls"], terms["vcls_cas"] + terms["vcls_suppressed"], rel_tol=1e-6)
    params = dict(head.named_parameters())
    # Recompute each term as a tensor (loss returns floats) and check what it reaches.
    s_list = [*out.stream_attention.unbind(1), out.attention]
    y = labels
    ones, zeros = torch.ones(B, 1), torch.zeros(B, 1)
    term_tensors = {
        "vcls": topk_mil_loss(out.cas, torch.cat([y, ones], 1), 7)
        + topk_mil_loss(out.suppressed_cas, torch.cat([y, zeros], 1), 7),
        "query_similarity": query_similarity_loss(out.queries, torch.cat([y, ones], 1)),
        "guide": torch.stack([(1 - torch.softmax(out.cas, -1)[..., -1] - s).abs().mean() for s in s_list]).mean(),
        "sparsity": torch.stack([s.mean() for s in s_list]).mean(),
        "co_activity": co_activity_loss(out.features, out.suppressed_cas[..., :-1], y, 0.5),
    }
    reaches = {
        "vcls": ["query_learner.initial", "key.1.weight", "fusion.0.weight", "stream_attention.0.0.weight"],
        "query_similarity": ["query_learner.cross_attention.w_q.weight", "fusion.3.weight"],
        "guide": ["stream_attention.0.0.weight", "query_learner.initial", "key.1.weight"],
        "sparsity": ["stream_attention.0.5.weight"],
        "co_activity": ["fusion.0.weight", "stream_attention.0.0.weight", "query_learner.initial"],
    }
    if streams == 2:
        s_rgb, s_f = out.stream_attention.unbind(1)
        term_tensors["mutual"] = 0.5 * (F.mse_loss(s_rgb, s_f.detach()) + F.mse_loss(s_f, s_rgb.detach()))
        reaches["mutual"] = ["stream_attention.0.0.weight", "stream_attention.1.0.weight"]
        reaches["sparsity"].append("stream_attention.1.5.weight")
    else:
        assert terms["mutual"] == 0.0
    for name, value in term_tensors.items():
        assert math.isclose(float(value.detach()), terms[name], rel_tol=1e-5, abs_tol=1e-7), name
        grads = torch.autograd.grad(value, list(params.values()), retain_graph=True, allow_unused=True)
        by_name = dict(zip(params, grads, strict=True))
        for p in reaches[name]:
            g = by_name[p]
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, f"{name} does not reach {p}"
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_preset_matches_the_constructor() -> None:
    entry = HEADS["vqknet"]
    assert entry.task == "wtal" and entry.build is VQKNet
    accepted = set(inspect.signature(VQKNet).parameters)
    for preset in (entry.preset, *DATASET_PRESETS.values()):
        assert set(preset) - TRAINER_KEYS <= accepted, set(preset) - TRAINER_KEYS - accepted
    assert (PRESET["lr"], PRESET["weight_decay"], PRESET["num_segments"], PRESET["topk_m"], PRESET["alpha"]) == (
        5e-5,
        1e-3,
        500,
        7,
        5.0,
    )
    assert (PRESET["beta"], PRESET["gamma"], PRESET["batch_videos"], PRESET["min_pairs"], PRESET["optimizer"]) == (
        0.8,
        0.8,
        10,
        3,
        "adam",
    )
    assert DATASET_PRESETS["activitynet12"]["topk_m"] == 4 and DATASET_PRESETS["activitynet13"]["topk_m"] == 6
    for name in ("activitynet", "activitynet12", "activitynet13"):
        p = DATASET_PRESETS[name]
        assert (p["lr"], p["weight_decay"], p["num_segments"], p["alpha"]) == (3e-5, 5e-4, 60, 10.0)
    defaults = {k: v.default for k, v in inspect.signature(VQKNet).parameters.items()}
    assert all(defaults[k] == v for k, v in PRESET.items() if k not in TRAINER_KEYS)
    head_args = {k: v for k, v in {**PRESET, **DATASET_PRESETS["activitynet"]}.items() if k not in TRAINER_KEYS}
    assert VQKNet(D, C, **head_args).alpha == 10.0


def test_attention_thresholds_and_proposals() -> None:
    assert len(ATTENTION_THRESHOLDS) == 11 and ATTENTION_THRESHOLDS[0] == 0.1 and ATTENTION_THRESHOLDS[-1] == 0.9
    np.testing.assert_allclose(np.diff(ATTENTION_THRESHOLDS), 0.08)
    s = np.array([0.05, 0.5, 0.6, 0.05, 0.95, 0.95])
    assert attention_proposals(s, (0.1, 0.55, 0.9)) == [(1, 3), (4, 6), (2, 3)]
    assert attention_proposals(s, (0.96,)) == []


def test_outer_inner_score() -> None:
    scores = np.array([1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 3.0, 0.0, 0.0])
    # [2, 6): inner 5, ceil(0.25 * 4) = 1 step each side: (1 + 3) / 2
    assert outer_inner_score(scores, 2, 6, 0.25) == pytest.approx(5.0 - 2.0)
    # at the video's start only the right side exists
    assert outer_inner_score(scores, 0, 2, 0.25) == pytest.approx(1.0 - 5.0)
    # the whole video: no outer steps
    assert outer_inner_score(scores, 0, 9, 0.25) == pytest.approx(scores.mean())


def test_localize_output_contract() -> None:
    head = make_head().eval()
    x, _ = batch(3)
    out = head(x[:1])
    probs = head.video_scores(out)[0].detach().numpy()
    threshold = float(np.sort(probs)[-2])  # exactly two classes pass
    dets = head.detect(out, class_threshold=threshold)
    assert dets, "a random head still yields proposals"
    allowed = set(np.flatnonzero(probs >= threshold).tolist())
    assert len(allowed) == 2
    assert {d[3] for d in dets} <= allowed
    for start, end, score, c in dets:
        assert isinstance(start, int) and isinstance(end, int) and isinstance(c, int)
        assert 0 <= start < end <= T and math.isfinite(score)
    scores = [d[2] for d in dets]
    assert scores == sorted(scores, reverse=True)
    assert head.detect(out, class_threshold=1.01) == []


def hand_output(attention: np.ndarray, cas: np.ndarray) -> VQKOutput:
    """A one-video :class:`VQKOutput` from ``s`` ``[T]`` and ``A`` ``[T, C+1]``; only the fields
    that localization reads are meaningful."""
    s = torch.tensor(attention, dtype=torch.float32)[None]
    a = torch.tensor(cas, dtype=torch.float32)[None]
    steps = a.shape[1]
    return VQKOutput(
        cas=a,
        suppressed_cas=s[..., None] * a,
        attention=s,
        stream_attention=s[:, None],
        queries=torch.zeros(1, a.shape[2], D),
        keys=torch.zeros(1, steps, D),
        features=torch.zeros(1, steps, D),
    )


def test_mutual_learning_uses_each_stream_as_the_others_detached_target() -> None:
    """Eq. 11 (as per-segment means): value ``mse(s_rgb, s_f)`` and gradient ``(s_rgb - s_f) / N``
    on ``s_rgb`` (and the reverse on ``s_f``); without the stop-gradient it would be twice that.
    ``beta = gamma = 0`` leave the mutual loss as the only path from the stream attentions."""
    head = make_head(beta=0.0, gamma=0.0)
    g = torch.Generator().manual_seed(5)
    streams = torch.rand(2, 2, T, generator=g).requires_grad_()
    out = hand_output(np.full(T, 0.5), np.random.default_rng(0).normal(size=(T, C + 1)))
    out = VQKOutput(
        cas=out.cas.expand(2, -1, -1),
        suppressed_cas=out.suppressed_cas.expand(2, -1, -1),
        attention=streams.mean(1),
        stream_attention=streams,
        queries=torch.randn(2, C + 1, D, generator=g),
        keys=torch.zeros(2, T, D),
        features=torch.randn(2, T, D, generator=g),
    )
    parts = head.loss(out, torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    total, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    s_rgb, s_f = streams.detach().unbind(1)
    assert terms["mutual"] == pytest.approx(float(F.mse_loss(s_rgb, s_f)), rel=1e-5)
    total.backward()
    torch.testing.assert_close(streams.grad[:, 0], (s_rgb - s_f) / s_rgb.numel())
    torch.testing.assert_close(streams.grad[:, 1], (s_f - s_rgb) / s_rgb.numel())


def test_video_scores_use_the_suppressed_cas() -> None:
    """Eqs. 8-9 on A_hat = s (x) A: with k = 1 (T < m), class 0's peak lies where s = 0, so it
    counts for nothing."""
    head = make_head()
    attention = np.array([0.0, 1.0, 1.0, 0.5])
    cas = np.zeros((4, C + 1))
    cas[0, 0] = 10.0  # suppressed
    cas[1, 1] = 2.0
    cas[3, 2] = 4.0  # A_hat = 2
    logits = torch.tensor([0.0, 2.0, 2.0, 0.0])
    torch.testing.assert_close(head.video_scores(hand_output(attention, cas))[0], torch.softmax(logits, 0)[:3])


def test_localize_by_hand() -> None:
    """Nested runs of s give two proposals: [6, 10) from the thresholds 0.5 to 0.9 and [4, 12) from
    0.1 to 0.42. Each counts once. Scores are outer-inner on A_hat plus 0.2 p_c. Gaussian soft-NMS
    (sigma 0.3) decays the weaker one by exp(-0.5^2 / 0.3), since tIoU = 4 / 8."""
    head = make_head(topk_m=1)  # k = T: p_c from the mean over time
    steps = 16
    attention = np.full(steps, 0.05)
    attention[4:12] = 0.45
    attention[6:10] = 0.95
    cas = np.zeros((steps, C + 1))
    cas[:, 0] = 1.0
    cas[6:10, 0] = 3.0
    out = hand_output(attention, cas)
    p = head.video_scores(out)[0].numpy()
    assert p[0] >= 0.2 and (p[1:] < 0.2).all()
    a_hat = attention * cas[:, 0]
    inner_score = a_hat[6:10].mean() - np.r_[a_hat[5], a_hat[10]].mean() + 0.2 * p[0]
    outer_score = a_hat[4:12].mean() - np.r_[a_hat[2:4], a_hat[12:14]].mean() + 0.2 * p[0]
    assert inner_score > outer_score
    dets = head.detect(out)
    assert [(d[0], d[1], d[3]) for d in dets] == [(6, 10, 0), (4, 12, 0)]
    np.testing.assert_allclose([d[2] for d in dets], [inner_score, outer_score * math.exp(-0.25 / 0.3)], rtol=1e-5)


def test_overfit_recovers_planted_intervals() -> None:
    """Class ``c``'s feature pattern is planted in a known interval of three videos per class. On
    two of them, 300 Adam steps at the paper's defaults (m = 7, dropout 0.7 / 0.5) make localize
    return only class ``c``, with its best detection on the interval (tIoU > 0.5). This holds on
    the training videos and on the held-out third. Without the dropout the objective also admits
    degenerate solutions, spikes on the pattern's edges, which this data would expose."""
    t, classes = 40, 3
    g = torch.Generator().manual_seed(0)
    patterns = 4 * torch.linalg.qr(torch.randn(D, classes, generator=g))[0].T  # orthogonal, norm 4
    rng = np.random.default_rng(0)
    plan = []
    for c in range(classes):
        for _ in range(3):
            length = int(rng.integers(8, 13))
            start = int(rng.integers(1, t - length - 1))
            plan.append((c, start, start + length))
    x = 0.5 * torch.randn(len(plan), t, D, generator=g)
    labels = torch.zeros(len(plan), classes)
    for i, (c, s, e) in enumerate(plan):
        x[i, s:e] += patterns[c]
        labels[i, c] = 1
    train = [i for i in range(len(plan)) if i % 3 != 2]  # two videos of each class: three pairs
    torch.manual_seed(0)
    head = VQKNet(D, classes, streams=2, attention_dim=16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(300):
        loss = head.loss(head(x[train]), labels[train])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    for i, (c, s, e) in enumerate(plan):
        dets = head.detect(head(x[i : i + 1]))
        assert dets and {d[3] for d in dets} == {c}, (i, c, dets[:3])
        top = dets[0]
        assert temporal_iou(np.array([s, e]), np.array([[top[0], top[1]]]))[0] > 0.5, (i, c, (s, e), dets[:3])
