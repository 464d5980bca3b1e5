"""State dicts as `.npz` files: `np.savez` written atomically, read back without pickle.

A state dict here is a flat mapping of string keys to arrays (numpy arrays, torch tensors or
plain numbers, which become 0-d arrays). Nested payloads (model + optimizer + ...) are
flattened by `cnnlab.training.checkpoint` before they get here.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cnnlab.errors import DataError, ModelError
from cnnlab.utils import atomic_path

__all__ = ["save_npz", "load_npz"]


def _as_array(key: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested sequences
        array = np.asarray(value, dtype=object)
    if array.dtype.hasobject or array.dtype.kind == "V":
        raise ModelError(
            f"save_npz: entry {key!r} is {type(value).__name__} of dtype {array.dtype}; only "
            "numeric, boolean and string arrays can be stored without pickle."
        )
    return array


def save_npz(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> Path:
    """Write `state_dict` ({str: array-like}) to `path` as an uncompressed `.npz`, atomically.

    The file name is used as given (np.savez would append `.npz` to a bare name).
    """
    if not isinstance(state_dict, Mapping):
        raise ModelError(
            f"save_npz expects a mapping of names to arrays; got {type(state_dict).__name__}."
        )
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key:
            raise ModelError(f"save_npz: keys must be non-empty strings; got {key!r}.")
        arrays[key] = _as_array(key, value)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: savez names it nothing and adds no suffix
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a `.npz` written by `save_npz` into a dict of arrays (in file order); pickled
    (object) entries are refused. A missing or corrupt file raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No .npz file at {path}; check the path (a run folder holds best.npz "
                        "and last.npz).")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a .npz (zip) archive; it may be corrupt or truncated, "
                        "or another kind of file: re-create it with save_npz.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(
                f"{path} contains pickled (object) entries, which cnnlab never reads; it was not "
                "written by cnnlab's save_npz."
            ) from None
        raise DataError(f"{path} is not a readable .npz file ({err}); it may be corrupt or "
                        "truncated: re-create it.") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
        raise DataError(f"{path} is not a readable .npz file ({type(err).__name__}: {err}); it "
                        "may be corrupt or truncated: re-create it.") from None
