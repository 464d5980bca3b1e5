"""Parameter matching: scale a spec's widths so its parameter count meets a target's."""

from __future__ import annotations

import copy

from cnnlab.errors import ModelError
from cnnlab.models.spec import _ALIASES, _WORD_ALIASES, resolve_spec

_WIDTH_WORDS = ("conv", "conv_transpose", "linear", "block")


def scale_widths(spec: list, factor: float) -> list:
    """A copy of `spec` with every hidden width (conv/linear/block `out`) multiplied by `factor`.

    The classifier (`out: classes`) keeps its size; widths are rounded and at least 1.
    """
    scaled = []
    for item in spec:
        if not isinstance(item, dict):
            scaled.append(item)
            continue
        item = copy.deepcopy(item)
        (word_key,) = [k for k in item if k != "name"]
        word, arg = _WORD_ALIASES.get(word_key, word_key), item[word_key]
        if word in ("seq",):
            if isinstance(arg, dict):
                arg["layers"] = scale_widths(arg["layers"], factor)
            else:
                item[word_key] = scale_widths(arg, factor)
        elif word in _WIDTH_WORDS:
            if isinstance(arg, dict):
                key = next((k for k in arg if _ALIASES.get(k) == "out"), None)
                if key is not None and arg[key] not in ("classes", "num_classes"):
                    arg[key] = max(1, round(int(arg[key]) * factor))
            elif arg not in ("classes", "num_classes"):
                item[word_key] = max(1, round(int(arg) * factor))
        scaled.append(item)
    return scaled


def match_widths(spec: list, target_params: int, input_shape: tuple, num_classes: int = 10,
                 tolerance: float = 0.05) -> tuple[list, float, int]:
    """Find a width factor whose scaled spec has `target_params` parameters within `tolerance`.

    Returns (scaled spec, factor, parameter count). Parameter count grows with the factor, so
    a bisection on log(factor) brackets the target; rounding makes it a step function, so the
    best of the bracket's neighbourhood is taken.
    """

    def count(factor: float) -> int:
        try:
            return resolve_spec(scale_widths(spec, factor), input_shape, num_classes).total_params()
        except ModelError:
            return -1

    lo, hi = 1 / 256, 256.0
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        if count(mid) < target_params:
            lo = mid
        else:
            hi = mid
    candidates = [lo * (hi / lo) ** (i / 8) for i in range(9)] + [lo * 0.98 ** i for i in range(1, 6)] + \
        [hi * 1.02 ** i for i in range(1, 6)]
    best = min(candidates, key=lambda f: abs(count(f) - target_params))
    params = count(best)
    if params < 0 or abs(params - target_params) > tolerance * target_params:
        raise ModelError(
            f"Could not scale the model's widths to {target_params:,} parameters within "
            f"{tolerance:.0%}: the closest is {params:,} (width factor {best:.3f})."
        )
    return scale_widths(spec, best), best, params
