"""fsv: few-shot and weakly-supervised video action understanding.

Stage one (:mod:`fsv.pipeline`) turns raw videos described by dataset manifests into chunked Zarr
feature stores; stage two (:mod:`fsv.heads`) trains and scores small heads on those cached features.
"""

__version__ = "0.1.0"
