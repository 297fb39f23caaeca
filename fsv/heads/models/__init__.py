"""The heads of stage two and their registry; importing this package registers every head, the
built-in ones; :func:`head_cards` and :func:`head_card` also load installed plugins' heads (entry
point group ``fsv.heads``, :mod:`fsv.plugins`) the first time they are asked."""

from fsv.heads.models import cdcca, protomatch, protonet, strm, ta2n, trx, vqknet  # noqa: F401  (register the heads)
from fsv.heads.models.interface import CommonHead, Head, HeadOutput, RecognitionHead, WtalHead
from fsv.heads.models.registry import HEADS, HeadCard, create_head, head_card, head_cards, register_head

__all__ = [
    "HEADS",
    "CommonHead",
    "Head",
    "HeadCard",
    "HeadOutput",
    "RecognitionHead",
    "WtalHead",
    "create_head",
    "head_card",
    "head_cards",
    "register_head",
]
