"""Batched augmentations on the training device, with per-sample randomness.

Each augmentation is `fn(x, generator) -> x` on a batch `x: (B, C, H, W)`; the random
parameters for all B samples are drawn at once from a CPU `torch.Generator` (so a seed gives the
same batches on CPU and CUDA) and moved to `x.device`. `crop` and `flip` only move pixels and
work on uint8; `rotate` interpolates and needs float input in [0, 1].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from cnnlab.errors import ConfigError
from cnnlab.utils import did_you_mean

if TYPE_CHECKING:  # torch is imported by the functions, so checking names stays cheap
    import torch

ROTATE_MAX_DEGREES = 10.0


def crop_padding(height: int, width: int) -> int:
    """Zero padding for random crops: 4 pixels for inputs of 32 px or more, 2 for smaller."""
    return 4 if min(height, width) >= 32 else 2


def random_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pad with zeros and crop back to (H, W) at a random offset per sample. x: (B, C, H, W)."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = x.shape
    pad = crop_padding(height, width)
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(x.device)
    # every crop window as a view (B, C, 2p+1, 2p+1, H, W); pick one window per sample.
    # Measured 2.5x faster than gathering rows and columns.
    windows = F.pad(x, (pad, pad, pad, pad)).unfold(2, height, 1).unfold(3, width, 1)
    return windows[torch.arange(batch, device=x.device), :, offsets[0], offsets[1]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 0.5. x: (B, C, H, W)."""
    import torch

    chosen = (torch.rand(x.shape[0], generator=generator) < 0.5).nonzero().squeeze(1).to(x.device)
    # copy only the chosen half: twice as fast as torch.where over the whole batch
    return x.clone().index_copy_(0, chosen, x.index_select(0, chosen).flip(3))


def random_rotate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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
