"""Shipped dataset definitions: few-shot split lists, annotations and benchmark episodes.

Installed as the ``fsv.manifests`` resource package (``fsv/manifests`` links here); read through
:func:`fsv.pipeline.manifests.resources.resource_path`.
"""
