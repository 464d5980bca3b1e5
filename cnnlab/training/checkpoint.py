"""Checkpoint files: nested payload dicts of tensors/arrays and plain data, never pickled objects.

`.pt`: `torch.save` of the payload; read back with `torch.load(weights_only=True)`, which refuses
anything but tensors and plain containers.

`.npz`: the payload flattened to `/`-joined keys. Arrays become npz entries; every other leaf
(numbers, strings, booleans, None, empty containers) goes into one JSON string entry,
`__meta__`. Path components encode the container: a str key as itself, an int key as `#N`, a
list index as `@N`; a str key that starts with `#`, `@` or `\\` gets a leading `\\`.
Read back with `allow_pickle=False`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError, ModelError
from cnnlab.utils import atomic_write_bytes

META_KEY = "__meta__"


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` atomically as `.pt` or `.npz`, chosen by the file's suffix."""
    path = Path(path)
    if path.suffix == ".pt":
        import torch

        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return atomic_write_bytes(path, buffer.getvalue())
    if path.suffix == ".npz":
        arrays, meta = flatten(payload)
        arrays[META_KEY] = np.array(json.dumps(meta))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return atomic_write_bytes(path, buffer.getvalue())
    raise CnnlabError(f"Checkpoint '{path}' must end in .pt or .npz, got suffix '{path.suffix}'.")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors come back on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"Checkpoint '{path}' does not exist.")
    try:
        if path.suffix == ".pt":
            import torch

            return torch.load(path, map_location="cpu", weights_only=True)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files if k != META_KEY}
                meta = json.loads(str(npz[META_KEY])) if META_KEY in npz.files else {}
            return unflatten(arrays, meta)
    except CnnlabError:
        raise
    except pickle.UnpicklingError:
        # torch's own text here advises weights_only=False, i.e. running the file's code: never
        # passed on; a checkpoint of ours holds only tensors and plain data
        raise CnnlabError(
            f"Checkpoint '{path}' holds pickled Python objects besides tensors and plain data, so "
            "it was not written by cnnlab (or was altered); cnnlab does not load such files, "
            "because loading them can run code. Use a checkpoint written by `cnnlab train`, or "
            "train the run again."
        ) from None
    except Exception as err:
        raise CnnlabError(
            f"Checkpoint '{path}' could not be read ({type(err).__name__}: {_first_line(err)}); the "
            "file is corrupt or was not written by cnnlab. Use another checkpoint of the run "
            "(best or last) or train it again."
        ) from None
    raise CnnlabError(f"Checkpoint '{path}' must end in .pt or .npz, got suffix '{path.suffix}'.")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


@contextlib.contextmanager
def checkpoint_fits(checkpoint: str | os.PathLike, built_from: str | os.PathLike):
    """Loading `checkpoint`'s state into a model built from `built_from` (config.yaml or
    model.json) inside the block: a model that no longer fits it (an edited width or `out`, a
    layer added or removed, an optimiser changed) is one ModelError naming both files."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, ModelError) as err:
        built_from = Path(built_from)
        fix = (f"restore its model, optim and train sections as they were, or start a new run from "
               f"the edited file: cnnlab train {built_from}" if built_from.suffix in (".yaml", ".yml")
               else "restore it as training wrote it")
        raise ModelError(
            f"The model built from '{built_from}' does not fit the checkpoint '{checkpoint}': "
            f"{_mismatch_detail(err)}. '{built_from.name}' was probably edited after training; {fix}."
        ) from None


def _mismatch_detail(err: Exception) -> str:
    """The gist of torch's, the NumPy engine's or an optimiser's load error, on one line."""
    if isinstance(err, KeyError):
        return f"the checkpoint has no entry {err}"
    text = str(err).strip()
    # torch: "Error(s) in loading state_dict for X:\n\tMissing key(s) in state_dict: "a", "b".
    # \n\tsize mismatch for 0.weight: copying a param with shape torch.Size([16, 1, 3, 3]) ..."
    lines = [line.strip().rstrip(".") for line in text.splitlines()[1:] if line.strip()] or [text.rstrip(".")]
    parts = []
    for line in lines:
        line = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", line)
        head, sep, keys = line.partition(" in state_dict: ")
        if sep:  # long key lists: the first few and a count
            names = [k.strip() for k in keys.split(",")]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            line = f"{head}: {', '.join(names[:3])}{more}"
        parts.append(line)
    detail = "; ".join(parts)
    return detail[:600] + (" ..." if len(detail) > 600 else "")


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().numpy()


def _encode_key(key) -> str:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise CnnlabError(f"Checkpoint keys must be str or int, got {type(key).__name__} {key!r}.")
    if isinstance(key, int):
        return f"#{key}"
    if "/" in key:
        raise CnnlabError(f"Checkpoint key {key!r} contains '/', which .npz checkpoints reserve.")
    return "\\" + key if key[:1] in ("#", "@", "\\") else key


def _decode_key(component: str):
    if component.startswith("\\"):
        return component[1:]
    if component.startswith("#"):
        return int(component[1:])
    return component


def flatten(payload, prefix: str = "") -> tuple[dict, dict]:
    """Nested dicts/lists -> ({flat_key: ndarray}, {flat_key: JSON leaf})."""
    arrays: dict = {}
    meta: dict = {}

    def walk(value, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}/{_encode_key(k)}" if key else _encode_key(k))
        elif isinstance(value, (list, tuple)) and value:
            for i, v in enumerate(value):
                walk(v, f"{key}/@{i}" if key else f"@{i}")
        elif _is_array(value):
            arrays[key] = _to_numpy(value)
        elif isinstance(value, np.generic):
            meta[key] = value.item()
        elif value is None or isinstance(value, (bool, int, float, str, dict, list, tuple)):
            meta[key] = list(value) if isinstance(value, tuple) else value
        else:
            raise CnnlabError(
                f"Checkpoint entry '{key}' is a {type(value).__name__}; only arrays, tensors, "
                "numbers, strings, None, lists and dicts can be saved."
            )

    walk(payload, prefix)
    return arrays, meta


def unflatten(arrays: dict, meta: dict):
    """Inverse of `flatten`: lists come back as lists, int keys as ints."""
    root: dict = {}
    for flat_key, value in [*arrays.items(), *meta.items()]:
        parts = flat_key.split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _rebuild(root)


def _rebuild(node):
    if not isinstance(node, dict) or not node:
        return node
    if all(k.startswith("@") for k in node):
        return [_rebuild(node[f"@{i}"]) for i in range(len(node))]
    return {_decode_key(k): _rebuild(v) for k, v in node.items()}
