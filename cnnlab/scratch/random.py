"""The scratch engine's one random generator: weight init and dropout masks draw from it.

Keeping a single module-level generator makes a training run reproducible (`seed`) and
resumable (`get_state` / `set_state` round-trip through JSON).
"""

from __future__ import annotations

import numpy as np

_generator = np.random.Generator(np.random.PCG64(0))


def seed(value: int) -> None:
    """Restart the generator from `value` (any non-negative int)."""
    global _generator
    _generator = np.random.Generator(np.random.PCG64(int(value)))


def generator() -> np.random.Generator:
    """The generator layers draw from (do not keep it: `seed` replaces it)."""
    return _generator


def get_state() -> dict:
    """The generator's state as plain JSON-able data (dicts, strings, ints)."""
    state = _generator.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"])},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_state(state: dict) -> None:
    """Restore a state returned by `get_state` (also after a JSON round trip)."""
    global _generator
    bit_generator = np.random.PCG64()
    bit_generator.state = {
        "bit_generator": state["bit_generator"],
        "state": {"state": int(state["state"]["state"]), "inc": int(state["state"]["inc"])},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }
    _generator = np.random.Generator(bit_generator)
