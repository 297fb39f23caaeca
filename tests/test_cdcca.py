"""CDC-CA (fsv.heads.models.cdcca): shapes, the three cross-attention stages, Eq. 8/9 losses, windowed
inference and an overfit check on a synthetic query. Small dimensions, CPU, a few seconds."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.heads.models import HEADS, create_head
from fsv.heads.models.cdcca import (
    CDCCA,
    PRESET,
    cross_correlation,
    pairwise_ranking_loss,
    temporal_roi_pool,
)
from fsv.heads.models.proposals import decode_offsets, encode_offsets, max_over_steps, mean_over_steps, window_starts
from fsv.metrics import temporal_iou

D, C, NS = 24, 10, 8
TRAINER_KEYS = {"lr", "weight_decay", "optimizer", "momentum", "train_episodes", "val_every", "shot", "standardize"}


def small(**kwargs: object) -> CDCCA:
    """A small CDC-CA whose QtoS gate is open (0.5, as after some training; it starts at zero) so
    that every stage computes something."""
    options: dict[str, object] = {"num_snippets": NS, "d": 16, "proposal_hidden": 16, "anchor_scales": (2, 4, 8, 16)}
    options.update(kwargs)
    model = CDCCA(D, C, **options)
    if model.cdc.qtos_gate is not None:
        with torch.no_grad():
            model.cdc.qtos_gate.fill_(0.5)
    return model


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors run faster on one thread (and do not fight the other tests for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def episode(
    shots: int, length: int = 40, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pseudo = torch.zeros(C)
    pseudo[[1, 4]] = 1
    gt = torch.tensor([[10.0, 19.0], [25.0, 31.5]])
    return torch.randn(length, D, generator=g), torch.randn(shots, NS, D, generator=g), pseudo, gt


def test_registered_with_a_preset_the_constructor_accepts() -> None:
    entry = HEADS["cdcca"]
    assert entry.task == "common" and entry.build is CDCCA
    assert {
        "lr",
        "weight_decay",
        "optimizer",
        "momentum",
        "train_episodes",
        "val_every",
        "shot",
        "num_snippets",
    } <= set(PRESET)
    assert PRESET["optimizer"] in ("sgd", "adam") and PRESET["shot"] == 5
    parameters = inspect.signature(CDCCA).parameters
    constructor_keys = set(PRESET) - TRAINER_KEYS
    assert constructor_keys <= set(parameters), constructor_keys - set(parameters)
    head = create_head("cdcca", feature_dim=D, **{k: PRESET[k] for k in constructor_keys})
    assert head.cdc.tuple_conv.kernel_size == (PRESET["tuple_kernel"],)


@pytest.mark.parametrize("shots", [1, 5])
def test_shapes_training_and_inference(shots: int) -> None:
    torch.manual_seed(0)
    model = small()
    query, supports, pseudo, gt = episode(shots)
    out = model(query, supports, pseudo, gt)
    anchors = 40 * 4
    assert (
        out.anchors.shape == (anchors, 2)
        and out.actionness.shape == (anchors,)
        and out.anchor_offsets.shape == (anchors, 2)
    )
    steps = model.step_actionness(query)  # per step: its best anchor's probability (anchors are laid out step-major)
    torch.testing.assert_close(steps, out.actionness.detach().view(40, 4).sigmoid().max(1).values)
    assert out.proposals.shape == (128, 2) and out.co_logits.shape == (128, 2) and out.co_offsets.shape == (128, 2)
    assert out.aux_logits is not None and out.aux_logits.shape == (128,)
    assert out.anchor_index is not None and out.anchor_label is not None
    assert out.anchor_index.shape == out.anchor_label.shape and len(out.anchor_index) <= 64
    assert 0 < out.anchor_label.sum() <= 32  # positives exist, at most half the anchor batch
    ious = temporal_iou_matrix(out.proposals, gt).max(dim=1).values
    assert (ious >= 0.5).sum() <= 32 and (ious >= 0.5).any()  # at most 25% foreground
    # anchors: K per step, centred on t + 0.5
    assert torch.allclose(out.anchors[4 * 3 + 2], torch.tensor([3.5 - 4, 3.5 + 4]))

    test = model(query, supports)
    assert test.aux_logits is None and test.anchor_index is None
    p = len(test.proposals)
    assert 0 < p <= model.post_nms_top and test.co_logits.shape == (p, 2) and test.co_offsets.shape == (p, 2)
    assert test.proposals.min() >= 0 and test.proposals.max() <= 40


def temporal_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.stack([temporal_iou(seg, b.numpy()) for seg in a.detach().numpy()]))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(FsvInputError):
        small(tuple_kernel=NS + 1)
    query, supports, _, _ = episode(5)
    with pytest.raises(FsvInputError):
        small()(query, supports[:, :5])


def test_roi_pooling_stages_and_offsets() -> None:
    features = torch.arange(10.0)[:, None].repeat(1, 3)  # step t holds t
    segments = torch.tensor([[2.0, 4.0], [0.0, 2.0], [6.5, 9.9]])
    pooled = temporal_roi_pool(features, segments, "max")
    assert pooled.shape == (3, 3, 3)
    assert pooled[0, :, 0].tolist() == [1.0, 3.0, 4.0]  # [1, 2) | [2, 4) | [4, 5)
    assert pooled[1, :, 0].tolist() == [0.0, 1.0, 2.0]  # starting context before the query: zeros
    assert pooled[2, :, 0].tolist() == [6.0, 9.0, 9.0]  # [4.8, 6.5) | [6.5, 9.9) | clipped [9.9, 10)
    mean = temporal_roi_pool(features, segments)  # the default: means over the same steps
    assert (
        mean[0, :, 0].tolist() == [1.0, 2.5, 4.0]
        and mean[1, :, 0].tolist() == [0.0, 0.5, 2.0]
        and mean[2, :, 0].tolist() == [5.0, 7.5, 9.0]
    )
    boxes = torch.tensor([[0.0, 4.0], [3.0, 5.5]])
    targets = torch.tensor([[1.0, 3.0], [2.0, 9.0]])
    offsets = encode_offsets(boxes, targets)
    assert torch.allclose(offsets[0], torch.tensor([0.0, float(np.log(0.5))]))
    assert torch.allclose(decode_offsets(boxes, offsets), targets, atol=1e-5)


def test_qtos_l2_normalised_shared_and_individual() -> None:
    torch.manual_seed(0)
    start = CDCCA(D, C, num_snippets=NS, d=16).cdc
    pooled, supports = torch.randn(7, 3, D), torch.randn(5, NS, D)
    x_q, x_s = start.encode(pooled, supports)
    assert (
        start.qtos_gate is not None and float(start.qtos_gate.detach()) == 0.0
    )  # deviation 8: no query context at the start
    assert torch.equal(start.qtos(x_q, x_s), x_s)
    model = small()
    cdc = model.cdc
    x_q, x_s = cdc.encode(pooled, supports)
    assert torch.allclose(x_q.norm(dim=-1), torch.ones(7)) and torch.allclose(x_s.norm(dim=-1), torch.ones(5, NS))
    # the correlation of Eqs. 2/5/7 normalises rows: rescaling any row changes nothing
    a, b, w = torch.randn(6, 16), torch.randn(4, 16), torch.randn(16, 16)
    assert torch.allclose(
        cross_correlation(a * torch.rand(6, 1) * 5 + a * 0.1, b * 3, w), cross_correlation(a, b, w), atol=1e-5
    )
    # one W_QS and one linear layer for every support; each support attended on its own
    assert [n for n, _ in cdc.named_parameters() if n.startswith("w_qs")] == ["w_qs"]
    together = cdc.qtos(x_q, x_s)
    for k in range(5):
        assert torch.allclose(together[k], cdc.qtos(x_q, x_s[k : k + 1])[0], atol=1e-6)
    changed = x_s.clone()
    changed[1] = torch.nn.functional.normalize(torch.randn(NS, 16), dim=-1)
    assert torch.allclose(cdc.qtos(x_q, changed)[0], together[0])
    for k in range(5):  # the same W_QS receives the gradient of every support's attention
        cdc.zero_grad()
        x_q2, x_s2 = cdc.encode(pooled, supports)
        cdc.qtos(x_q2, x_s2)[k].pow(2).sum().backward()
        assert cdc.w_qs.grad is not None and cdc.w_qs.grad.abs().sum() > 0
        assert cdc.encoder.weight.grad is not None and cdc.encoder.weight.grad.abs().sum() > 0
        assert cdc.qtos_gate.grad is not None and cdc.qtos_gate.grad.abs() > 0


def test_one_linear_layer_encodes_proposals_and_support_snippets() -> None:
    """Sec. 3.2 encodes the proposals and the support snippets "with a linear layer": at the start
    (the contexts' layer at zero) a proposal pooling to a support snippet's feature is encoded as that
    snippet, so the cross-correlations compare like with like; the contexts are learned on top."""
    torch.manual_seed(0)
    cdc = small().cdc
    supports = torch.randn(2, NS, D)
    pooled = torch.stack(
        [torch.randn(NS, D), supports[1], torch.randn(NS, D)], dim=1
    )  # [NS, 3, D]: contexts, the snippets, contexts
    x_q, x_s = cdc.encode(pooled, supports)
    torch.testing.assert_close(x_q, x_s[1])
    assert [n for n, _ in cdc.named_parameters() if "encoder" in n] == ["encoder.weight", "encoder.bias"]
    x_q.sum().backward()
    assert cdc.context.weight.grad is not None and cdc.context.weight.grad.abs().sum() > 0


def test_dynamics_attends_each_support_with_all_supports() -> None:
    torch.manual_seed(0)
    cdc = small().cdc
    x_s = torch.randn(5, NS, 16)
    out = cdc.dynamics(x_s)
    assert out.shape == (5, NS, 16)
    changed = x_s.clone()
    changed[1] += torch.randn(NS, 16)  # support 2 changes support 1's output
    assert not torch.allclose(cdc.dynamics(changed)[0], out[0], atol=1e-4)
    assert not torch.allclose(cdc.dynamics(changed)[2:], out[2:], atol=1e-4)
    # one support alone is not the same as that support among five (individual-to-all, not to-self)
    assert not torch.allclose(cdc.dynamics(x_s[:1])[0], out[0], atol=1e-4)
    # StoQ (Eq. 7) sees all supports at once
    x_q = torch.randn(9, 16)
    changed_last = out.clone()
    changed_last[4] += 1
    assert not torch.allclose(cdc.stoq(changed_last, x_q), cdc.stoq(out, x_q), atol=1e-4)


def test_losses_finite_and_reach_their_parameters() -> None:
    torch.manual_seed(0)
    model = small()
    query, supports, pseudo, gt = episode(5)
    parts = model.loss(model(query, supports, pseudo, gt), gt)
    total, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    assert set(terms) == {"loss", "cls_ag", "reg_ag", "cls_co", "reg_co", "aux", "rank"}
    assert all(np.isfinite(v) for v in terms.values()) and all(terms[k] > 0 for k in terms)
    rank_weight = model.rank_weight
    expected = sum(v for k, v in terms.items() if k not in ("loss", "rank")) + rank_weight * terms["rank"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    # each module below is reached by its own terms only: actionness <- cls_ag, subnet offsets <- reg_ag,
    # classifier reg <- reg_co, aux <- aux, classifier cls <- cls_co + rank, CDC-CA <- all co terms
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # without the pseudo indicator the auxiliary module is skipped
    parts = model.loss(model(query, supports, None, gt), gt)
    _, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    assert terms["aux"] == 0.0
    with pytest.raises(FsvInputError):
        model.loss(model(query, supports), gt)


def test_support_agnostic_and_conditioned_terms_train_disjoint_parameters() -> None:
    """The proposal subnet learns from L_cls^ag + L_reg^ag only and everything else from the
    support-conditioned terms only: with Adam (per-parameter scale-free steps) a weight on the
    support-agnostic share of Eq. 9 changes only Adam's epsilon and the subnet's weight decay
    relative to its gradients."""
    torch.manual_seed(0)
    model = small()
    query, supports, pseudo, gt = episode(5)
    out = model(query, supports, pseudo, gt)
    cls_ag, reg_ag = model.proposal_subnet.loss(
        out.anchors, out.actionness, out.anchor_offsets, out.anchor_index, out.anchor_label, out.actions
    )
    total = model.loss(out, gt)["loss"]
    agnostic = dict(model.named_parameters())
    grads_ag = torch.autograd.grad(cls_ag + reg_ag, list(agnostic.values()), allow_unused=True, retain_graph=True)
    grads_co = torch.autograd.grad(total - cls_ag - reg_ag, list(agnostic.values()), allow_unused=True)
    for (name, _), g_ag, g_co in zip(agnostic.items(), grads_ag, grads_co, strict=True):
        in_subnet = name.startswith("proposal_subnet.")
        assert (g_ag is not None and g_ag.abs().sum() > 0) == in_subnet, name
        assert (g_co is None or g_co.abs().sum() == 0) == in_subnet, name


def test_a_checkpoint_of_other_layers_is_refused_with_what_to_do(tmp_path) -> None:
    from fsv.heads.engine.run_folder import restore_model

    model = small()
    state = {
        k.replace("cdc.encoder.", "cdc.support_encoder."): v for k, v in model.state_dict().items()
    }  # an earlier fsv's layer names
    with pytest.raises(
        FsvInputError, match=r"best.pt: its layers do not match CDCCA .*missing \['cdc.encoder.bias'.*train again"
    ):
        restore_model(model, state, tmp_path / "best.pt")
    restore_model(model, model.state_dict(), tmp_path / "best.pt")  # its own state loads


def test_ranking_loss_zero_iff_dp_equals_diou() -> None:
    ious = torch.tensor([0.9, 0.7, 0.55, 0.3, 0.1, 0.05])
    positive = ious >= 0.5
    temperature = 2.0
    p = ious + 0.04  # same differences as the IoUs
    logits = torch.stack([torch.zeros(6), temperature * torch.log(p / (1 - p))], dim=1).requires_grad_()
    assert pairwise_ranking_loss(logits, ious, positive, temperature).item() == pytest.approx(0.0, abs=1e-10)
    # the temperature matters: without it the same logits no longer match
    assert pairwise_ranking_loss(logits, ious, positive, 1.0).item() > 1e-4
    bumped = logits.detach().clone()
    bumped[3, 1] += 1.0
    bumped.requires_grad_()
    loss = pairwise_ranking_loss(bumped, ious, positive, temperature)
    assert loss.item() > 1e-4
    loss.backward()
    assert bumped.grad is not None and bumped.grad[3, 1] != 0
    # the mean runs over pairs with at least one positive: 15 pairs minus the 3 negative-negative ones
    q = torch.softmax(bumped.detach() / temperature, dim=1)[:, 1]
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6) if positive[i] or positive[j]]
    assert len(pairs) == 12
    manual = sum(float((ious[i] - ious[j]) - (q[i] - q[j])) ** 2 for i, j in pairs) / len(pairs)
    assert loss.item() == pytest.approx(manual, rel=1e-5)
    assert pairwise_ranking_loss(bumped, ious, torch.zeros(6, dtype=torch.bool), temperature).item() == 0.0


def test_window_starts_cover_the_query() -> None:
    assert window_starts(200, 32, 0.75) == [*range(0, 169, 8)]
    starts = window_starts(203, 48, 0.75)
    assert starts[0] == 0 and starts[-1] == 203 - 48 and all(b - a <= 12 for a, b in itertools.pairwise(starts))


def test_detect_with_windows_on_a_long_query() -> None:
    torch.manual_seed(0)
    model = small()
    length, windows = 200, (32, 48)
    query, supports, _, _ = episode(5, length=length)
    calls: list[tuple[int, ...]] = []
    model.proposal_subnet.register_forward_hook(lambda _m, args, _o: calls.append(tuple(args[0].shape[:-1])))
    seen: list[torch.Tensor] = []
    relate = model.relate
    model.relate = lambda q, s, proposals, pseudo: (seen.append(proposals), relate(q, s, proposals, pseudo))[1]  # type: ignore[method-assign]
    with one_thread():
        detections, scores = model.detect(query, supports, windows=windows, max_detections=50)
    # one batched subnet pass per window size, every window of that size in the batch
    assert sorted(calls, key=lambda c: c[1]) == [
        (len(window_starts(length, 32, 0.75)), 32),
        (len(window_starts(length, 48, 0.75)), 48),
    ]
    logits, _ = model.proposal_subnet(torch.stack([query[8:40], query[16:48]]))
    torch.testing.assert_close(logits[1], model.proposal_subnet(query[16:48])[0], rtol=1e-5, atol=1e-5)
    proposals = seen[0].numpy()  # all windows' proposals, in query coordinates, one CDC-CA pass
    assert len(seen) == 1 and proposals.min() >= 0 and proposals.max() <= length and proposals[:, 1].max() > 48
    for i in range(len(proposals)):  # NMS 0.7 across windows
        assert temporal_iou(proposals[i], np.delete(proposals, i, axis=0)).max() <= 0.7 + 1e-9
    assert detections.shape == (len(scores), 2) and 0 < len(scores) <= 50
    assert detections.min() >= 0 and detections.max() <= length and (detections[:, 1] > detections[:, 0]).all()
    assert (np.diff(scores) <= 0).all() and ((scores >= 0) & (scores <= 1)).all()
    for i in range(len(detections)):  # NMS 0.3 on the final detections
        assert temporal_iou(detections[i], np.delete(detections, i, axis=0)).max() <= 0.3 + 1e-9
    calls.clear()
    model.detect(query[:40], supports, windows=windows)  # short query: one pass, no windows
    assert calls == [(1, 40)]


def test_range_max_pooling_matches_a_loop_over_ranges() -> None:
    rng = np.random.default_rng(0)
    features = torch.randn(57, 6, requires_grad=True)
    bounds = np.sort(rng.uniform(-5, 62, (300, 2)), axis=1)
    bounds[:5] = [[3, 3.2], [10, 10], [-4, -1], [57, 60], [0, 57]]
    pooled = max_over_steps(features, bounds)
    for (a, b), row in zip(bounds, pooled, strict=True):
        lo, hi = int(np.clip(np.floor(a), 0, 57)), int(np.clip(np.ceil(b), 0, 57))
        expect = features[lo:hi].amax(0) if hi > lo else torch.zeros(6)
        torch.testing.assert_close(row, expect)
    pooled.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_range_mean_pooling_matches_a_loop_over_ranges() -> None:
    rng = np.random.default_rng(1)
    features = torch.randn(57, 6, requires_grad=True)
    bounds = np.sort(rng.uniform(-5, 62, (300, 2)), axis=1)
    bounds[:4] = [[3, 3.2], [10, 10], [-4, -1], [0, 57]]
    pooled = mean_over_steps(features, bounds)
    for (a, b), row in zip(bounds, pooled, strict=True):
        lo, hi = int(np.clip(np.floor(a), 0, 57)), int(np.clip(np.ceil(b), 0, 57))
        expect = features[lo:hi].mean(0) if hi > lo else torch.zeros(6)
        torch.testing.assert_close(row, expect, rtol=1e-5, atol=1e-6)
    pooled.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_overfits_a_planted_common_action() -> None:
    torch.manual_seed(0)
    action = torch.randn(D) * 2
    query = torch.randn(48, D)  # background noise
    gt = torch.tensor([[18.0, 30.0]])
    query[18:30] = action + 0.3 * torch.randn(12, D)
    supports = action + 0.3 * torch.randn(5, NS, D)
    pseudo = torch.zeros(C)
    pseudo[3] = 1
    model = small(d=32, proposal_hidden=32, anchor_scales=(2, 4, 8, 12, 16, 24))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    with one_thread():
        for _ in range(300):
            total = model.loss(model(query, supports, pseudo, gt), gt)["loss"]
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
        detections, scores = model.detect(query, supports)
    assert temporal_iou(detections[0], gt.numpy())[0] > 0.5, (detections[:3], scores[:3])
    assert scores[0] > 0.5


def test_every_attention_stage_is_independent_of_how_many_proposals_and_shots() -> None:
    """Eqs. 3, 6, 7 with unit mean mass: repeating every proposal (P -> 2P, as when more proposals
    survive at test) or every support (L -> 2L) leaves each stage's output per row unchanged."""
    torch.manual_seed(0)
    cdc = small().cdc
    x_q, x_s = cdc.encode(torch.randn(7, 3, D), torch.randn(3, NS, D))
    twice_q, twice_s = torch.cat([x_q, x_q]), torch.cat([x_s, x_s])
    torch.testing.assert_close(cdc.qtos(twice_q, x_s), cdc.qtos(x_q, x_s))
    torch.testing.assert_close(cdc.dynamics(twice_s)[:3], cdc.dynamics(x_s))
    y_s = cdc.dynamics(cdc.qtos(x_q, x_s))
    torch.testing.assert_close(cdc.stoq(y_s, twice_q)[:7], cdc.stoq(y_s, x_q))
    torch.testing.assert_close(cdc.stoq(torch.cat([y_s, y_s]), x_q), cdc.stoq(y_s, x_q))
    # without the factor the attended term would scale with the sources per target: here it is a
    # weighted mean whose weights average one over the targets
    attention = cross_correlation(y_s.reshape(-1, 16), x_q, cdc.w_sq).softmax(dim=-1)
    mass = attention.sum(dim=0) * (7 / (3 * NS))
    assert mass.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert mass.max() / mass.min() > 1.5  # W starts at attention_scale * I: the weights are not flat


@pytest.mark.parametrize("switch", ["qtos", "dynamics", "stoq"])
def test_each_cross_attention_ablation_changes_the_computation(switch: str) -> None:
    torch.manual_seed(0)
    full = small()
    ablated = small(**{switch: False})
    ablated.load_state_dict(full.state_dict())
    query, supports, _, _ = episode(5)
    proposals = torch.tensor([[4.0, 12.0], [10.0, 19.0], [22.0, 33.0]])
    a = full.relate(query, supports, proposals, None)[0]
    b = ablated.relate(query, supports, proposals, None)[0]
    assert not torch.allclose(a, b, atol=1e-5)
    other = torch.randn_like(supports)
    follows = not torch.allclose(ablated.relate(query, other, proposals, None)[0], b, atol=1e-6)
    assert follows == (switch != "stoq")  # without StoQ the classifier never sees the supports


def test_r0_drops_the_ranking_loss_and_the_auxiliary_module() -> None:
    torch.manual_seed(0)
    model = small(rank_weight=0.0, aux=False)
    assert model.aux is None and not any(n.startswith("aux") for n, _ in model.named_parameters())
    query, supports, pseudo, gt = episode(5)
    parts = model.loss(model(query, supports, pseudo, gt), gt)
    total, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    assert terms["aux"] == 0.0 and terms["rank"] > 0
    assert total.item() == pytest.approx(
        terms["cls_ag"] + terms["reg_ag"] + terms["cls_co"] + terms["reg_co"], rel=1e-5
    )


def test_any_action_is_positive_for_the_agnostic_branch_and_a_hard_negative_for_the_classifier() -> None:
    torch.manual_seed(0)
    model = small()
    query, supports, pseudo, _ = episode(5, length=60)
    gt, distractor = torch.tensor([[10.0, 19.0]]), torch.tensor([[35.0, 47.0]])
    out = model(query, supports, pseudo, gt, distractor)
    assert out.actions is not None and out.actions.tolist() == [[10.0, 19.0], [35.0, 47.0]]
    assert out.anchor_index is not None and out.anchor_label is not None
    positive = out.anchors[out.anchor_index[out.anchor_label > 0.5]]
    on_distractor = temporal_iou_matrix(positive, distractor)[:, 0] >= 0.7
    assert on_distractor.any() and not (temporal_iou_matrix(positive, gt)[:, 0] >= 0.7)[on_distractor].any()
    ious_gt = temporal_iou_matrix(out.proposals, gt)[:, 0]
    hard = (ious_gt < 0.5) & (temporal_iou_matrix(out.proposals, distractor)[:, 0] >= 0.5)
    assert int(hard.sum()) == round(128 * model.roi_hard_fraction)  # the stated share of the batch
    assert 0 < int((ious_gt >= 0.5).sum()) <= 32
    without = model(query, supports, pseudo, gt)  # no distractors given: no hard negatives sampled
    assert (
        not (
            (temporal_iou_matrix(without.proposals, distractor)[:, 0] >= 0.5)
            & (temporal_iou_matrix(without.proposals, gt)[:, 0] < 0.5)
        ).sum()
        > 32
    )
    with pytest.raises(FsvInputError):
        small(roi_fg_fraction=0.5, roi_hard_fraction=0.6)


def test_k_pseudo_classes_are_what_the_auxiliary_module_reads() -> None:
    """Table 6's k: the auxiliary module takes a k-hot indicator of the supports' pseudo classes."""
    torch.manual_seed(0)
    for k in (4, 16):
        head = CDCCA(D, k, num_snippets=NS, d=16, proposal_hidden=16, anchor_scales=(2, 4, 8, 16))
        assert head.aux is not None and head.aux[0].in_features == 2 * 16 + k  # [X~_Q_i, prototype, k-hot]
    model = small()
    query, supports, pseudo, _ = episode(5)
    proposals = torch.tensor([[4.0, 12.0], [10.0, 19.0]])
    other = torch.zeros(C)
    other[7] = 1
    a = model.relate(query, supports, proposals, pseudo)[2]
    b = model.relate(query, supports, proposals, other)[2]
    assert a is not None and b is not None and not torch.allclose(a, b)
