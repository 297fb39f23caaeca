"""Stage one: manifests, decoding, sampling, backbones and the Zarr feature store.

The pipeline never imports :mod:`fsv.heads`.
"""
