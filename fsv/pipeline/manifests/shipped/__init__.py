"""Shipped dataset definitions: few-shot split lists, annotations and benchmark episodes.

A resource package beside the code that reads it (:mod:`fsv.pipeline.manifests`); read through
:func:`fsv.pipeline.manifests.resources.resource_path`.
"""
