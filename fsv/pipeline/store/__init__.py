"""The Zarr feature store (see :mod:`fsv.pipeline.store.layout` for its files and guarantees)."""

from fsv.pipeline.store.layout import Entry, StoreLayout
from fsv.pipeline.store.store import FeatureStore, PackedFeatures
from fsv.pipeline.store.writer import PartWriter

__all__ = ["Entry", "FeatureStore", "PackedFeatures", "PartWriter", "StoreLayout"]
