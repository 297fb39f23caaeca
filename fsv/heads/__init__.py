"""Stage two: few-shot heads on cached features, registered by name (see :mod:`fsv.heads.base`)."""

from fsv.heads import cdcca, protomatch, protonet, strm, ta2n, trx, vqknet  # noqa: F401  (register the heads)
from fsv.heads.base import HEADS, FewShotHead, HeadOutput, create_head

__all__ = ["HEADS", "FewShotHead", "HeadOutput", "create_head"]
