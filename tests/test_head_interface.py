"""One head interface over the registry: every registered head is the interface class of its
kind of run, its ``loss`` returns a dict of named scalar terms with the total under ``"loss"``
(first), the total trains, and localization heads detect by a method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsv.heads.models import CommonHead, RecognitionHead, WtalHead, create_head, head_card, head_cards

D, T, WAY = 16, 8, 2
KINDS = {"recognition": RecognitionHead, "common": CommonHead, "wtal": WtalHead}
# small constructions (the kind's required arguments, narrower layers where a head takes them)
ARGS = {
    "recognition": {"feature_dim": D, "seq_len": T},
    "common": {"feature_dim": D, "proposal_hidden": 8, "anchor_scales": [2, 4, 8]},
    "wtal": {"feature_dim": D, "num_classes": 3, "attention_dim": 8},
}
NARROW = {"cdcca": {"d": 8, "num_pseudo_classes": 4}, "trx": {"out_dim": 16}, "strm": {"out_dim": 16}}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_head(name, **ARGS[head_card(name).task], **NARROW.get(name, {}))


def recognition_step(head: RecognitionHead) -> tuple[object, torch.Tensor]:
    per = {"pooled": (T, D), "patches": (T, 16, D), "grid": (T, D, 7, 7)}[head.view]
    support, query = torch.randn(WAY, *per), torch.randn(WAY, *per)
    labels = torch.arange(WAY)
    return head(support, labels, query, WAY), labels


def common_step(head: CommonHead) -> tuple[object, torch.Tensor]:
    query, supports = torch.randn(40, D), torch.randn(2, head.num_snippets, D)
    pseudo = torch.zeros(4)
    pseudo[1] = 1
    gt = torch.tensor([[10.0, 19.0]])
    return head(query, supports, pseudo, gt, torch.zeros(0, 2)), gt


def wtal_step(head: WtalHead) -> tuple[object, torch.Tensor]:
    return head(torch.randn(2, 20, D)), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])


STEPS = {"recognition": recognition_step, "common": common_step, "wtal": wtal_step}


@pytest.mark.parametrize("name", sorted(head_cards()))
def test_every_head_offers_the_interface_of_its_kind(name: str) -> None:
    kind = head_card(name).task
    head = build(name)
    assert isinstance(head, KINDS[kind])
    terms = head.loss(*STEPS[kind](head))
    assert isinstance(terms, dict) and next(iter(terms)) == "loss", list(terms)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and torch.isfinite(v) for v in terms.values()), terms
    if len(terms) > 1:  # named terms beside the total: none of them repeats it under another name
        assert "total" not in terms
    params = [p for p in head.parameters() if p.requires_grad]
    if params:
        terms["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
    head.eval()
    with torch.no_grad():
        if kind == "common":
            segments, scores = head.detect(torch.randn(40, D), torch.randn(2, head.num_snippets, D))
            assert segments.shape[1:] == (2,) and len(scores) == len(segments) and np.all(np.diff(scores) <= 0)
        if kind == "wtal":
            for start, end, score, label in head.detect(head(torch.randn(1, 20, D))):
                assert 0 <= start < end <= 20 and 0 <= label < 3 and np.isfinite(score)
