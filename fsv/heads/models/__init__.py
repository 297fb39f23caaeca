"""The heads of stage two and their registry; importing this package registers every head, the
built-in ones and those of installed plugins (entry point group ``fsv.heads``, :mod:`fsv.plugins`)."""

from fsv.heads.models import cdcca, protomatch, protonet, strm, ta2n, trx, vqknet  # noqa: F401  (register the heads)
from fsv.heads.models.interface import CommonHead, Head, HeadOutput, RecognitionHead, WtalHead
from fsv.heads.models.registry import HEADS, HeadCard, create_head, head_card, register_head
from fsv.plugins import load_plugins

load_plugins("fsv.heads")

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
    "register_head",
]
