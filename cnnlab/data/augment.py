"""Batched augmentations on the training device, with per-sample randomness.

Each augmentation is `fn(x, generator, context=None) -> x` on a batch `x: (B, C, H, W)`; the
random parameters for all B samples are drawn at once from a CPU `torch.Generator` (so a seed
gives the same batches on CPU and CUDA) and moved to `x.device`. `context` (a `BatchContext`)
tells the ones that need it which images the batch holds, the epoch and their sizes.

- `crop`: zero-pad 4 px (2 below 32 px) and crop back at a random offset;
- `flip`: mirror left-right with probability 0.5;
- `rotate`: a uniform angle in ±10 degrees (interpolates: needs float input in [0, 1]);
- `translate`: a random shift of up to `data.translate` px with reflection padding (no black
  borders, unlike `crop`);
- `cutout`: a `data.cutout` x `data.cutout` black square at a random centre (clipped at the
  edges);
- `flip_alternate`: the derandomised flip: a seeded random half of the images is flipped in
  odd epochs and the other half in even ones, so every image is seen both ways every two
  epochs (airbench's "alternating flip").

All but `rotate` only move or blank pixels and work on uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from cnnlab.errors import ConfigError
from cnnlab.utils import did_you_mean

if TYPE_CHECKING:  # torch is imported by the functions, so checking names stays cheap
    import torch

ROTATE_MAX_DEGREES = 10.0
DEFAULT_TRANSLATE = 2
DEFAULT_CUTOUT = 12


@dataclass(frozen=True)
class BatchContext:
    """What some augmentations need beyond the pixels.

    indices: int64 (B,) positions of the batch's images in the dataset; epoch: the loader's
    epoch (1-based in training); flip_half: bool (N,) the images `flip_alternate` flips in odd
    epochs (fixed by the loader's seed); translate, cutout: sizes in pixels.
    """

    indices: "torch.Tensor"
    epoch: int = 1
    flip_half: Optional["torch.Tensor"] = None
    translate: int = DEFAULT_TRANSLATE
    cutout: int = DEFAULT_CUTOUT


def crop_padding(height: int, width: int) -> int:
    """Zero padding for random crops: 4 pixels for inputs of 32 px or more, 2 for smaller."""
    return 4 if min(height, width) >= 32 else 2


def random_crop(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Pad with zeros and crop back to (H, W) at a random offset per sample. x: (B, C, H, W)."""
    return _shifted(x, crop_padding(*x.shape[2:]), generator, mode="constant")


def random_translate(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Shift each sample by up to `context.translate` px per axis, reflecting at the borders."""
    pad = context.translate if context is not None else DEFAULT_TRANSLATE
    return _shifted(x, pad, generator, mode="reflect") if pad > 0 else x


def _shifted(x, pad: int, generator, mode: str):
    """Pad by `pad` and take an (H, W) window at a random offset per sample."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(x.device)
    # every window as a view (B, C, 2p+1, 2p+1, H, W); pick one per sample. Measured 2.5x
    # faster than gathering rows and columns.
    windows = F.pad(x, (pad, pad, pad, pad), mode=mode).unfold(2, height, 1).unfold(3, width, 1)
    return windows[torch.arange(batch, device=x.device), :, offsets[0], offsets[1]]


def random_flip(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Mirror each sample left-right with probability 0.5. x: (B, C, H, W)."""
    import torch

    return _flip_where(x, torch.rand(x.shape[0], generator=generator) < 0.5)


def alternate_flip(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Flip `context.flip_half` of the images in odd epochs and the other half in even ones."""
    if context is None or context.flip_half is None:
        raise TypeError("flip_alternate needs the batch's indices and the loader's flip_half")
    chosen = context.flip_half.to(context.indices.device)[context.indices]
    return _flip_where(x, chosen if context.epoch % 2 == 1 else ~chosen)


def _flip_where(x, chosen_mask):
    chosen = chosen_mask.nonzero().squeeze(1).to(x.device)
    # copy only the chosen ones: twice as fast as torch.where over the whole batch
    return x.clone().index_copy_(0, chosen, x.index_select(0, chosen).flip(3))


def random_cutout(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Blank a `context.cutout`-pixel square at a uniformly random centre of each sample."""
    import torch

    size = context.cutout if context is not None else DEFAULT_CUTOUT
    batch, _, height, width = x.shape
    centres = torch.rand(2, batch, generator=generator)
    cy = (centres[0] * height).long().to(x.device)[:, None]
    cx = (centres[1] * width).long().to(x.device)[:, None]
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(height, device=x.device)[None, :]
    cols = torch.arange(width, device=x.device)[None, :]
    inside_rows = (rows >= top) & (rows < top + size)  # (B, H)
    inside_cols = (cols >= left) & (cols < left + size)  # (B, W)
    keep = ~(inside_rows[:, :, None] & inside_cols[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


def random_rotate(x: torch.Tensor, generator: torch.Generator, context=None) -> torch.Tensor:
    """Rotate each sample by a uniform angle in ±10 degrees, zeros outside. x: float (B, C, H, W)."""
    import torch
    import torch.nn.functional as F

    if not x.is_floating_point():
        raise TypeError("random_rotate needs float input in [0, 1]")
    batch, _, height, width = x.shape
    angles = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1)
    angles = (angles * math.radians(ROTATE_MAX_DEGREES)).to(device=x.device, dtype=x.dtype)
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    # the sampling grid affine_grid would build (align_corners=False), written out: it is
    # several times faster on CPU than affine_grid's batched matmul
    xs = (torch.arange(width, device=x.device, dtype=x.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=x.device, dtype=x.dtype) * 2 + 1) / height - 1
    xs, ys = xs[None, None, :], ys[None, :, None]
    grid = torch.stack([cos * xs - sin * ys, sin * xs + cos * ys], dim=3)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# name -> (function, needs float input)
AUGMENTATIONS: dict[str, tuple[Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"], bool]] = {
    "crop": (random_crop, False),
    "flip": (random_flip, False),
    "rotate": (random_rotate, True),
    "translate": (random_translate, False),
    "cutout": (random_cutout, False),
    "flip_alternate": (alternate_flip, False),
}


def check_augment(names) -> tuple[str, ...]:
    """Validate augmentation names -> tuple; an unknown name raises ConfigError listing the valid ones."""
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for name in names:
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r} in data.augment={list(names)}. Valid "
                              f"names: {', '.join(AUGMENTATIONS)}.{did_you_mean(str(name), AUGMENTATIONS)}")
    return names


# --- test-time augmentation --------------------------------------------------------------

TTA_VIEWS = ("flip", "translate")
TTA_SHIFT = 1  # pixels: the translated views are shifted one pixel up-left and down-right


def check_tta(names) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name not in TTA_VIEWS:
            raise ConfigError(f"unknown test-time augmentation {name!r} in eval.tta={list(names)}. "
                              f"Valid names: {', '.join(TTA_VIEWS)}.{did_you_mean(str(name), TTA_VIEWS)}")
    return names


def tta_views(x: torch.Tensor, names) -> list:
    """The views of a (normalised) batch whose logits test-time augmentation averages.

    `[]`: x itself. `flip`: x and its mirror. `translate`: each of those also shifted by one
    pixel up-left and down-right, with reflection padding (so `[flip, translate]` is 6 views,
    all weighted equally). Both commute with per-channel normalisation, so they apply to the
    loader's output.
    """
    import torch.nn.functional as F

    names = check_tta(names)
    views = [x, x.flip(3)] if "flip" in names else [x]
    if "translate" in names:
        s = TTA_SHIFT
        padded = [F.pad(v, (s, s, s, s), mode="reflect") for v in views]
        height, width = x.shape[2:]
        views += [p[:, :, :height, :width] for p in padded]  # content moves down-right
        views += [p[:, :, 2 * s:, 2 * s:] for p in padded]  # content moves up-left
    return views
