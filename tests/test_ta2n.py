"""TA2N head: shapes, gradients, the TTM's identity start and warp, train-only perturbations, support
order invariance, temporal order sensitivity, seeding and a small overfit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.heads.models.registry import HEADS, create_head
from fsv.heads.models.ta2n import TA2N, offset_mask, temporal_warp

D, T, WAY = 16, 8, 5
SMALL = {"feature_dim": D, "seq_len": T, "ttm_channels": (4, 8), "ttm_hidden": 8, "sc_channels": 8, "sc_hidden": 8}


def make_head(seed: int = 0, **kwargs: object) -> TA2N:
    torch.manual_seed(seed)
    return TA2N(**{**SMALL, **kwargs})  # type: ignore[arg-type]


def episode(
    shot: int, queries: int = 5, seed: int = 0, shuffle: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Support ``[5*shot, T, D, 7, 7]`` with labels in shuffled order, queries ``[queries, T, D, 7, 7]`` and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAY).repeat(shot)
    if shuffle:
        labels = labels[torch.randperm(len(labels), generator=g)]
    support = torch.randn(len(labels), T, D, 7, 7, generator=g)
    query = torch.randn(queries, T, D, 7, 7, generator=g)
    query_labels = torch.arange(queries) % WAY
    return support, labels, query, query_labels


@pytest.mark.parametrize("shot", [1, 5])
@pytest.mark.parametrize("train", [True, False])
def test_output_shapes(shot: int, train: bool) -> None:
    head = make_head().train(train)
    support, labels, query, _ = episode(shot, queries=7)
    with torch.no_grad():
        out = head(support, labels, query, WAY)
    assert out.logits.shape == (7, WAY)
    assert torch.isfinite(out.logits).all()
    assert (out.logits <= 0).all() and (out.logits >= -2 * T).all()  # -d, d = sum over T of (1 - cos) (Eq. 8)
    assert out.extra["phi_support"].shape == (WAY * shot, 2)
    assert out.extra["phi_query"].shape == (7, 2)
    assert out.extra["offsets"].shape == (7, WAY, T, 2)


@pytest.mark.parametrize("shot", [1, 5])
def test_every_parameter_gets_a_gradient(shot: int) -> None:
    """Every parameter is wired into the loss. At the exact (zero-initialised) start the layers before the
    TTM's and the offset predictor's last layers have zero gradient by construction; one step moves them."""
    head = make_head().train()
    support, labels, query, query_labels = episode(shot)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    unused = {"prototype_tc.W_k.weight", "prototype_tc.W_q.weight", "prototype_tc.W_v.weight"} if shot == 1 else set()
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        loss = head.loss(head(support, labels, query, WAY), query_labels)["loss"]
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        for name, p in head.named_parameters():
            if name in unused:
                assert p.grad is None, name  # the k-shot prototype TC is not used for K = 1 (paper)
                continue
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            if step == 1:
                assert p.grad.abs().sum() > 0, name
        opt.step()


@pytest.mark.parametrize("train", [True, False])
def test_ttm_is_the_identity_at_init(train: bool) -> None:
    head = make_head().train(train)
    f = torch.randn(6, T, D, 7, 7)
    f_hat, phi = head.ttm(f)
    assert torch.equal(phi, torch.tensor([[1.0, 0.0]]).expand(6, 2))
    assert torch.equal(f_hat, f)


def test_warp_with_known_phi() -> None:
    f = torch.randn(2, T, 3, 2, 2)
    # a = 0.5, b = 0: source index i -> 1.75 + 0.5 i, e.g. frame 0 = 0.25 f[1] + 0.75 f[2].
    out = temporal_warp(f, torch.tensor([[0.5, 0.0], [0.5, 0.0]]))
    torch.testing.assert_close(out[:, 0], 0.25 * f[:, 1] + 0.75 * f[:, 2])
    torch.testing.assert_close(out[:, 7], 0.75 * f[:, 5] + 0.25 * f[:, 6])
    # a = 1, b = 2/7 shifts by one frame; the last frame reads past the clip and is zero.
    out = temporal_warp(f, torch.tensor([[1.0, 2 / 7], [1.0, 2 / 7]]))
    torch.testing.assert_close(out[:, :7], f[:, 1:])
    assert torch.equal(out[:, 7], torch.zeros_like(out[:, 7]))
    # Generic (a, b) against numpy's linear interpolation with zero padding.
    phi = torch.tensor([[0.7, -0.2], [1.3, 0.1]])
    out = temporal_warp(f, phi)
    grid = np.arange(-1, T + 1)
    for v in range(2):
        a, b = phi[v].tolist()
        src = (a * np.linspace(-1, 1, T) + b + 1) * (T - 1) / 2
        padded = np.concatenate([np.zeros((1, 12)), f[v].reshape(T, -1).numpy(), np.zeros((1, 12))])
        want = np.stack([np.interp(src, grid, padded[:, c], left=0.0, right=0.0) for c in range(12)], axis=1)
        np.testing.assert_allclose(out[v].reshape(T, -1).numpy(), want, rtol=1e-5, atol=1e-6)


def test_warp_gradient() -> None:
    f = torch.randn(2, T, 3, dtype=torch.float64, requires_grad=True)
    phi = torch.tensor([[0.7, -0.13], [1.21, 0.05]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(temporal_warp, (f, phi))
    # At the identity the derivative is the one-sided difference f[i+1] - f[i] (as grid_sample's).
    phi0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, T, 1, dtype=torch.float64)
    temporal_warp(x, phi0).sum().backward()
    diff = torch.cat([x[0, 1:, 0], torch.zeros(1, dtype=torch.float64)]) - x[0, :, 0]
    torch.testing.assert_close(phi0.grad[0, 1], (diff * (T - 1) / 2).sum())


def test_offset_mask_eq11() -> None:
    ones = offset_mask(torch.zeros(2), 7, 7, gamma=3.0)
    assert torch.equal(ones, torch.ones(7, 7))
    # o_x = one cell (1/3): the window |x - o_x| < 1 drops the left column (one cell of margin at slope 3).
    m = offset_mask(torch.tensor([1 / 3, 0.0]), 7, 7, gamma=3.0)
    torch.testing.assert_close(m[:, 0], torch.zeros(7))
    torch.testing.assert_close(m[:, 1:], torch.ones(7, 6))
    # Half a cell past the window: 1 - 3 * (1/6) = 0.5.
    m = offset_mask(torch.tensor([0.0, -1 / 6]), 7, 7, gamma=3.0)
    torch.testing.assert_close(m[-1], torch.full((7,), 0.5))


def test_perturbations_in_training_only_and_decaying() -> None:
    head = make_head(dropout=0.0)
    head.eval()
    assert torch.equal(head.perturbations(), torch.zeros(1, 2))
    head.train()
    delta = head.perturbations()
    assert delta.shape == (9, 2)
    torch.testing.assert_close(delta.abs().amax(), torch.tensor(0.2))
    assert {tuple(v) for v in (delta / 0.2).round().int().tolist()} == {(x, y) for x in (-1, 0, 1) for y in (-1, 0, 1)}
    # 0.2 * 0.5 ** floor(episodes / 8000), 40,000 episodes by default.
    for fraction, amplitude in [(0.0, 0.2), (0.19, 0.2), (0.2, 0.1), (0.5, 0.05), (1.0, 0.2 / 32)]:
        head.set_progress(fraction)
        assert math.isclose(head.perturbation_amplitude, amplitude)
    head.set_progress(0.5, train_episodes=120_000)  # SSv2: 60,000 episodes = 7 decays
    assert math.isclose(head.perturbation_amplitude, 0.2 / 128)
    with pytest.raises(FsvInputError):
        head.set_progress(1.5)
    # The amplitude changes training outputs, never evaluation ones.
    support, labels, query, _ = episode(1)
    with torch.no_grad():
        head.sc.head[-2].bias.fill_(0.3)  # non-zero offsets, so that the masks are not trivially full
        outs = {}
        for mode in ("train", "eval"):
            head.train(mode == "train")
            for amp in (0.2, 0.0):
                head.perturbation_amplitude = amp
                outs[mode, amp] = head(support, labels, query, WAY).logits
    assert not torch.allclose(outs["train", 0.2], outs["train", 0.0])
    assert torch.equal(outs["eval", 0.2], outs["eval", 0.0])


def test_eval_is_deterministic_and_train_is_not() -> None:
    head = make_head()
    support, labels, query, _ = episode(5)
    with torch.no_grad():
        head.eval()
        assert torch.equal(head(support, labels, query, WAY).logits, head(support, labels, query, WAY).logits)
        head.train()
        assert not torch.allclose(head(support, labels, query, WAY).logits, head(support, labels, query, WAY).logits)


@pytest.mark.parametrize("shot", [1, 5])
def test_support_order_does_not_matter_in_eval(shot: int) -> None:
    head = make_head().eval()
    support, labels, query, _ = episode(shot, shuffle=False)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = head(support, labels, query, WAY).logits
        b = head(support[perm], labels[perm], query, WAY).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_reversing_query_frames_changes_logits() -> None:
    head = make_head().eval()
    support, labels, query, _ = episode(1)
    with torch.no_grad():
        a = head(support, labels, query, WAY).logits
        b = head(support, labels, query.flip(1), WAY).logits
    assert (a - b).abs().max() > 1e-3  # through the TC residual (default, authors' code), even at init


def test_pure_eq3_reading_loses_query_order_at_init() -> None:
    """``tc_residual=False`` (Eq. 3 at every cell): TC is attention without positions, so at the identity
    TTM a query's frame order does not matter. This is documented in the module docstring."""
    head = make_head(tc_residual=False).eval()
    support, labels, query, _ = episode(5)
    with torch.no_grad():
        a = head(support, labels, query, WAY).logits
        b = head(support, labels, query.flip(1), WAY).logits
    assert a.shape == (5, WAY)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_same_seed_same_results() -> None:
    results = []
    for _ in range(2):
        head = make_head(seed=7).train()
        support, labels, query, query_labels = episode(5)
        torch.manual_seed(11)  # dropout and the random k-shot reference
        out = head(support, labels, query, WAY)
        head.loss(out, query_labels)["loss"].backward()
        results.append((out.logits.detach(), [p.grad.clone() for p in head.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(g0, g1) for g0, g1 in zip(results[0][1], results[1][1], strict=True))


def test_overfits_a_fixed_episode() -> None:
    head = make_head(dropout=0.0).train()
    support, labels, query, query_labels = episode(1, queries=10)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = head.loss(head(support, labels, query, WAY), query_labels)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses


def test_bad_inputs_are_refused() -> None:
    head = make_head()
    support, labels, query, _ = episode(2)
    with pytest.raises(FsvInputError, match="exactly"):
        head(support, torch.zeros_like(labels), query, WAY)
    with pytest.raises(FsvInputError, match="support must be"):
        head(support[:, :, :8], labels, query, WAY)


def test_registered_with_a_json_preset() -> None:
    entry = HEADS["ta2n"]
    preset = json.loads(json.dumps(entry.preset))
    assert preset["optimizer"] == "sgd" and preset["lr"] == 1e-3 and preset["momentum"] == 0.9
    assert preset["seq_len"] == 8 and preset["view"] == "grid" and preset["train_episodes"] == 40_000
    assert {"weight_decay", "episodes_per_update", "lr_milestones", "lr_gamma"} <= preset.keys()
    head = create_head("ta2n", **SMALL)
    assert isinstance(head, TA2N) and head.view == "grid"
