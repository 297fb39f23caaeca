"""Few-shot recognition heads: ProtoNet, TRX and STRM on small synthetic episodes (CPU, D = 64)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import fsv.heads.models.protonet as protonet_mod
import fsv.heads.models.strm as strm_mod
import fsv.heads.models.trx as trx_mod
from fsv.errors import FsvInputError
from fsv.heads.models import HEADS, RecognitionHead

D = 64  # feature dim for the tests
T = 8  # frames
P = 16  # patches (STRM)
WAY = 5
N_QUERY = 2  # per class

HEAD_KWARGS = {
    # protonet's default has no parameters; the gradient/overfit tests use a projection
    "protonet": {"feature_dim": D, "seq_len": T, "projection_dim": 32},
    "protonet_cosine": {
        "feature_dim": D,
        "seq_len": T,
        "distance": "cosine",
        "learn_scale": True,
        "projection_dim": 32,
    },
    "trx": {"feature_dim": D, "seq_len": T, "out_dim": 32},
    "strm": {"feature_dim": D, "seq_len": T, "out_dim": 32},
}
BUILDERS = {
    "protonet": protonet_mod.ProtoNetHead,
    "protonet_cosine": protonet_mod.ProtoNetHead,
    "trx": trx_mod.TRXHead,
    "strm": strm_mod.STRMHead,
}
PRESET_KEYS = {
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "episodes_per_update",
    "train_episodes",
    "lr_milestones",
    "lr_gamma",
    "seq_len",
    "view",
}


def build(name: str, seed: int = 0, **overrides: object) -> RecognitionHead:
    torch.manual_seed(seed)
    return BUILDERS[name](**{**HEAD_KWARGS[name], **overrides})


def feat_shape(head: RecognitionHead) -> tuple[int, ...]:
    return (T, P, D) if head.view == "patches" else (T, D)


def episode(
    head: RecognitionHead, shot: int, seed: int = 1, signal: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A shuffled ``WAY``-way ``shot``-shot episode: class means (scaled by ``signal``) plus noise;
    labels unsorted. ``signal=0`` gives pure noise that a head can only fit by learning."""
    g = torch.Generator().manual_seed(seed)
    shape = feat_shape(head)
    means = signal * torch.randn(WAY, *shape, generator=g)
    s_labels = torch.arange(WAY).repeat(shot)[torch.randperm(WAY * shot, generator=g)]
    q_labels = torch.arange(WAY).repeat(N_QUERY)[torch.randperm(WAY * N_QUERY, generator=g)]
    support = means[s_labels] + 0.5 * torch.randn(WAY * shot, *shape, generator=g)
    query = means[q_labels] + 0.5 * torch.randn(WAY * N_QUERY, *shape, generator=g)
    return support, s_labels, query, q_labels


ALL = list(BUILDERS)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shot", [1, 5])
def test_output_shapes(name: str, shot: int) -> None:
    head = build(name)
    support, s_labels, query, _ = episode(head, shot)
    out = head(support, s_labels, query, WAY)
    assert out.logits.shape == (WAY * N_QUERY, WAY)
    assert torch.isfinite(out.logits).all()
    if name == "strm":
        assert out.extra["tm_logits"].shape == out.extra["qc_logits"].shape == (WAY * N_QUERY, WAY)
        assert torch.equal(out.logits, out.extra["tm_logits"])  # inference on the TRM (paper)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shot", [1, 5])
def test_every_parameter_gets_a_gradient(name: str, shot: int) -> None:
    head = build(name)
    head.train()
    support, s_labels, query, q_labels = episode(head, shot)
    loss = head.loss(head(support, s_labels, query, WAY), q_labels)["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    params = dict(head.named_parameters())
    assert params
    for pname, p in params.items():
        assert p.grad is not None, f"{name}: {pname} got no gradient (unused or unregistered)"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize("name", ALL)
def test_deterministic_given_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        head = build(name, seed=123)
        head.train()  # dropout included
        support, s_labels, query, _ = episode(head, 5)
        torch.manual_seed(7)
        outs.append(head(support, s_labels, query, WAY).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shot", [1, 5])
def test_support_permutation_invariance(name: str, shot: int) -> None:
    head = build(name).eval()
    support, s_labels, query, _ = episode(head, shot)
    perm = torch.randperm(support.shape[0], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = head(support, s_labels, query, WAY).logits
        b = head(support[perm], s_labels[perm], query, WAY).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


@pytest.mark.parametrize("name", ["trx", "strm"])
def test_temporal_order_matters(name: str) -> None:
    head = build(name).eval()
    support, s_labels, query, _ = episode(head, 5)
    with torch.no_grad():
        a = head(support, s_labels, query, WAY).logits
        b = head(support, s_labels, query.flip(1), WAY).logits
    assert not torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def test_protonet_ignores_temporal_order() -> None:
    head = protonet_mod.ProtoNetHead(feature_dim=D, seq_len=T)
    support, s_labels, query, _ = episode(head, 5)
    a = head(support, s_labels, query, WAY).logits
    b = head(support, s_labels, query.flip(1), WAY).logits
    torch.testing.assert_close(a, b)


def test_trx_tuples_are_ordered_and_counted() -> None:
    head = trx_mod.TRXHead(feature_dim=D, seq_len=T, out_dim=32)
    assert head.cardinalities == (2, 3)
    counts = {t.cardinality: t.num_tuples for t in head.transformers}
    assert counts == {2: math.comb(8, 2), 3: math.comb(8, 3)} == {2: 28, 3: 56}
    for t in head.transformers:
        tup = t.tuples
        assert (tup[:, 1:] > tup[:, :-1]).all()  # t1 < t2 < ...
        assert len({tuple(r) for r in tup.tolist()}) == tup.shape[0]
    # the tuple representation concatenates the frames in time order
    x = torch.arange(T, dtype=torch.float32).reshape(1, T, 1).expand(1, T, D)
    t2 = head.transformers[0]
    rep = t2.tuple_features(x)  # [1, 28, 2D]
    assert rep.shape == (1, 28, 2 * D)
    assert rep[0, 0, 0] == 0 and rep[0, 0, D] == 1 and rep[0, -1, 0] == 6 and rep[0, -1, D] == 7


def _reference_tct(
    tct: trx_mod.TemporalCrossTransformer, support: torch.Tensor, labels: torch.Tensor, query: torch.Tensor, way: int
) -> torch.Tensor:
    """Loop-by-loop TRX distances (eval mode), written independently of the vectorised module."""

    def reps(x: torch.Tensor) -> list[list[torch.Tensor]]:
        x = x + tct.pe.pe[: x.shape[1]]
        return [[torch.cat([v[i] for i in tup]) for tup in tct.tuples.tolist()] for v in x]

    s_reps, q_reps = reps(support), reps(query)
    logits = torch.zeros(query.shape[0], way)
    for qi, q_tuples in enumerate(q_reps):
        for c in range(way):
            members = [i for i in range(len(labels)) if int(labels[i]) == c]
            keys = torch.stack([tct.norm_k(tct.k_linear(t)) for i in members for t in s_reps[i]])
            vals = torch.stack([tct.v_linear(t) for i in members for t in s_reps[i]])
            total = 0.0
            for qt in q_tuples:
                att = torch.softmax(keys @ tct.norm_k(tct.k_linear(qt)) / math.sqrt(tct.out_dim), dim=0)
                proto = (att[:, None] * vals).sum(0)
                sq = float(((tct.v_linear(qt) - proto) ** 2).sum())
                total += sq if tct.squared_distance else math.sqrt(sq)
            logits[qi, c] = -total / len(q_tuples)
    return logits


@pytest.mark.parametrize("squared", [False, True])
def test_trx_matches_loop_reference(squared: bool) -> None:
    torch.manual_seed(0)
    tct = trx_mod.TemporalCrossTransformer(
        feature_dim=16, seq_len=5, cardinality=2, out_dim=8, squared_distance=squared
    ).eval()
    support = torch.randn(6, 5, 16)
    labels = torch.tensor([2, 0, 1, 1, 0, 2])
    query = torch.randn(4, 5, 16)
    with torch.no_grad():
        got = tct(support, labels, query, 3)
        want = _reference_tct(tct, support, labels, query, 3)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_trx_sums_cardinalities() -> None:
    head = build("trx").eval()
    support, s_labels, query, _ = episode(head, 2)
    with torch.no_grad():
        total = head(support, s_labels, query, WAY).logits
        parts = [t(support, s_labels, query, WAY) for t in head.transformers]
    torch.testing.assert_close(total, parts[0] + parts[1])


def test_temporal_cross_transformer_standalone() -> None:
    tct = trx_mod.TemporalCrossTransformer(feature_dim=32, seq_len=8, cardinality=3, out_dim=16)
    logits = tct(torch.randn(10, 8, 32), torch.arange(5).repeat(2), torch.randn(7, 8, 32), way=5)
    assert logits.shape == (7, 5) and (logits <= 0).all()


def test_protonet_default_has_no_parameters_and_groups_by_label() -> None:
    head = protonet_mod.ProtoNetHead(feature_dim=D, seq_len=T)
    assert not head.has_parameters and not list(head.parameters())
    assert build("protonet").has_parameters
    support, s_labels, query, q_labels = episode(head, 5)
    logits = head(support, s_labels, query, WAY).logits
    assert (logits.argmax(-1) == q_labels).all()
    # explicit formula: prototypes are per-label means of time-averaged features
    protos = torch.stack([support[s_labels == c].mean(dim=(0, 1)) for c in range(WAY)])
    torch.testing.assert_close(logits, -(torch.cdist(query.mean(1), protos) ** 2), rtol=1e-4, atol=1e-3)
    cos = protonet_mod.ProtoNetHead(feature_dim=D, seq_len=T, distance="cosine", cosine_scale=5.0)
    assert not cos.has_parameters
    want = 5.0 * torch.nn.functional.cosine_similarity(query.mean(1)[:, None], protos[None], dim=-1)
    torch.testing.assert_close(cos(support, s_labels, query, WAY).logits, want, rtol=1e-4, atol=1e-4)


def test_strm_loss_weights_and_options() -> None:
    head = build("strm").eval()
    support, s_labels, query, q_labels = episode(head, 2)
    with torch.no_grad():
        out = head(support, s_labels, query, WAY)
        ce = torch.nn.functional.cross_entropy
        want = ce(out.extra["tm_logits"], q_labels, reduction="sum") + 0.1 * ce(
            out.extra["qc_logits"], q_labels, reduction="sum"
        )
        torch.testing.assert_close(head.loss(out, q_labels)["loss"], want)
        head.eval_with_qc = True
        out2 = head(support, s_labels, query, WAY)
        torch.testing.assert_close(out2.logits, out.extra["tm_logits"] + 0.1 * out.extra["qc_logits"])
    # QC is a max-similarity match: registered projection, never a plain list
    names = {n for n, _ in head.named_parameters()}
    assert "qc.projections.0.w_cls.weight" in names
    assert [t.cardinality for t in head.trm] == [2]


def test_bad_episodes_raise() -> None:
    for name in ("protonet", "trx", "strm"):
        head = build(name)
        support, s_labels, query, _ = episode(head, 1)
        with pytest.raises(FsvInputError):
            head(support, s_labels, query, WAY + 1)  # class 5 has no support
        with pytest.raises(FsvInputError):
            head(support[..., :-1], s_labels, query, WAY)


@pytest.mark.parametrize("name", ALL)
def test_overfits_a_fixed_episode(name: str) -> None:
    head = build(name).eval()  # no dropout: a fixed objective
    support, s_labels, query, q_labels = episode(head, 2, seed=5, signal=0.0)
    # protonet's only weights are a linear projection: it needs a larger step to fit noise in 30 steps
    opt = torch.optim.Adam(head.parameters(), lr=1e-2 if name.startswith("protonet") else 1e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = head.loss(head(support, s_labels, query, WAY), q_labels)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_registry_and_presets() -> None:
    for key, view in (("protonet", "pooled"), ("trx", "pooled"), ("strm", "patches")):
        entry = HEADS[key]
        preset = entry.preset
        assert set(preset) == PRESET_KEYS, key
        json.dumps(preset)  # flat and JSON-serialisable
        assert preset["view"] == view == entry.build.view
        assert preset["seq_len"] == 8 and preset["optimizer"] in ("sgd", "adam")
    assert HEADS["trx"].preset["episodes_per_update"] == HEADS["strm"].preset["episodes_per_update"] == 16
    assert HEADS["strm"].preset["lr"] == 1e-3 and HEADS["strm"].preset["train_episodes"] == 75000
    head = HEADS["strm"].build(feature_dim=D, seq_len=T, out_dim=32)
    assert isinstance(head, strm_mod.STRMHead)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name: str) -> None:
    head = build(name).eval()
    support, s_labels, query, q_labels = episode(head, 5)
    with torch.no_grad():
        cpu = head(support, s_labels, query, WAY).logits
        head = head.to("cuda")
        gpu = head(support.cuda(), s_labels.cuda(), query.cuda(), WAY).logits.cpu()
    torch.testing.assert_close(cpu, gpu, rtol=1e-3, atol=1e-3 * float(cpu.abs().max()))
    head.train()
    loss = head.loss(head(support.cuda(), s_labels.cuda(), query.cuda(), WAY), q_labels.cuda())["loss"]
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
