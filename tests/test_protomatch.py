"""Prototype matching (fsv.heads.models.protomatch): the registered trivial baseline of common localization."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.heads.models import HEADS, create_head
from fsv.heads.models.cdcca import CDCCA
from fsv.heads.models.protomatch import PRESET, ProtoMatch
from fsv.heads.models.proposals import inside_bounds, mean_over_steps
from fsv.metrics import temporal_iou

D, NS = 16, 8


def test_registered_as_a_common_localization_head_with_only_a_proposal_subnet() -> None:
    entry = HEADS["protomatch"]
    assert entry.task == "common" and entry.build is ProtoMatch and PRESET["num_pseudo_classes"] == 0
    head = create_head("protomatch", feature_dim=D, num_snippets=NS, proposal_hidden=8, anchor_scales=(2, 4))
    assert {n.split(".")[0] for n, _ in head.named_parameters()} == {"proposal_subnet"}
    # the same subnet as CDC-CA's, built from the same constructor arguments
    cdc = CDCCA(D, 4, num_snippets=NS, proposal_hidden=8, anchor_scales=(2, 4), d=8)
    assert {k: v.shape for k, v in head.state_dict().items()} == {
        f"proposal_subnet.{k}": v.shape for k, v in cdc.proposal_subnet.state_dict().items()
    }
    shared = set(inspect.signature(ProtoMatch).parameters) - {"feature_dim"}
    assert shared <= set(inspect.signature(CDCCA).parameters)


def test_mean_over_steps_is_the_mean_of_the_overlapped_steps() -> None:
    x = torch.randn(20, D)
    segments = torch.tensor([[0.0, 1.0], [2.5, 7.2], [19.2, 20.0], [3.0, 3.0], [-2.0, 4.0]])
    expected = [x[0:1].mean(0), x[2:8].mean(0), x[19:20].mean(0), x[3:4].mean(0), x[0:4].mean(0)]
    torch.testing.assert_close(
        mean_over_steps(x, inside_bounds(segments, 20)), torch.stack(expected), rtol=1e-5, atol=1e-5
    )


def test_the_supports_decide_which_instance_ranks_first() -> None:
    torch.manual_seed(0)
    a, b, shared = (torch.randn(D) for _ in range(3))
    query = torch.randn(60, D) * 0.3
    query[10:20] += a + shared
    query[35:45] += b + shared
    head = ProtoMatch(D, num_snippets=NS, proposal_hidden=8, anchor_scales=(4, 10, 16))
    for supports_of, where in ((a, (10, 20)), (b, (35, 45))):
        supports = supports_of + shared + 0.3 * torch.randn(3, NS, D)
        proposals = torch.tensor([[10.0, 20.0], [35.0, 45.0], [0.0, 8.0], [50.0, 60.0]])
        scores = head.score(query, supports, proposals)
        assert proposals[scores.argmax()].tolist() == list(map(float, where)) and bool(
            ((scores >= 0) & (scores <= 1)).all()
        )
        detections, probs = head.detect(query, supports, max_detections=5)
        assert len(detections) <= 5 and (np.diff(probs) <= 0).all()
    # any proposals: the best detection lies on the supports' instance, not the other one
    best = detections[0]
    assert temporal_iou(best, np.array([[35.0, 45.0]]))[0] > temporal_iou(best, np.array([[10.0, 20.0]]))[0]


def test_training_reads_only_the_support_agnostic_terms() -> None:
    torch.manual_seed(0)
    head = ProtoMatch(D, num_snippets=NS, proposal_hidden=8, anchor_scales=(2, 4, 8))
    query, supports = torch.randn(30, D), torch.randn(2, NS, D)
    gt, others = torch.tensor([[5.0, 11.0]]), torch.tensor([[18.0, 24.0]])
    out = head(query, supports, None, gt, others)
    assert out.actions.tolist() == [[5.0, 11.0], [18.0, 24.0]]
    parts = head.loss(out, gt)
    total, terms = parts["loss"], {k: float(v.detach()) for k, v in parts.items()}
    assert set(terms) == {"loss", "cls_ag", "reg_ag"} and terms["loss"] == pytest.approx(
        terms["cls_ag"] + terms["reg_ag"], rel=1e-6
    )
    total.backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(FsvInputError, match="needs gt"):
        head(query, supports)
    with pytest.raises(FsvInputError, match="supports have shape"):
        head.detect(query, torch.randn(2, NS + 1, D))
