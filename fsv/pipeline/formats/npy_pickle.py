"""Object arrays written as the published W-TALC files are: ``.npy`` files whose pickle any NumPy
reads, 1.x on old Pythons included.

``np.save`` under NumPy 2 pickles an object array with protocol 4 and the globals of NumPy 2
(``numpy._core.multiarray._reconstruct``), which NumPy 1 cannot import (``No module named
'numpy._core'``): the pinned environments of the W-TALC lineage (CO2-Net: NumPy 1.18, Python 3.7)
could not read fsv's export. The release files are protocol 2 with ``numpy.core`` names, and
:func:`save_object_array` writes them so: NumPy 2 maps those names back when it loads them. (A
protocol-2 pickle written by Python 3 stores ``bytes`` as ``_codecs.encode`` of a latin-1 string,
so the file is not byte-identical to the Python 2 release, and is up to twice the raw size.)
"""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fsv.files import atomic_path

# NumPy 2's package of the core modules -> NumPy 1's name (NumPy 2 reads both)
NUMPY2_CORE, NUMPY1_CORE = "numpy._core", "numpy.core"


def write_numpy1_pickle(obj: object, f: BinaryIO) -> None:
    """``obj`` pickled with protocol 2 into ``f``, its ``numpy._core`` globals named ``numpy.core``.

    Python 3's pickler names every global with the GLOBAL opcode (``module\\nname\\n``) at
    protocol 2: it never writes INST or OBJ, and EXT codes only for a registered copyreg
    extension (NumPy registers none). Protocol 2 has no frames, so no length covers a rewritten
    name."""
    data = pickle.dumps(obj, protocol=2)
    view, start = memoryview(data), 0
    for op, arg, pos in pickletools.genops(data):
        if op.name != "GLOBAL":
            continue
        module, name = arg.split(" ", 1)
        if module == NUMPY2_CORE or module.startswith(NUMPY2_CORE + "."):
            f.write(view[start:pos])
            f.write(b"c" + f"{NUMPY1_CORE + module[len(NUMPY2_CORE) :]}\n{name}\n".encode("ascii"))
            start = pos + 1 + len(module) + 1 + len(name) + 1
    f.write(view[start:])


def save_object_array(path: Path, array: np.ndarray) -> None:
    """``np.save(path, array, allow_pickle=True)`` as NumPy 1 wrote it: format 1.0 header, then
    :func:`write_numpy1_pickle` of ``array`` (an object array), atomically."""
    if array.dtype != object:
        raise ValueError(f"save_object_array writes object arrays; got {array.dtype}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        write_numpy1_pickle(array, f)
