"""Batched augmentations on the training device, with per-sample randomness.

Each augmentation is `fn(x, generator) -> x` on a batch `x: (B, C, H, W)`; the random
parameters for all B samples are drawn at once from a CPU `torch.Generator` (so a seed gives the
same batches on CPU and CUDA) and moved to `x.device`. `crop` and `flip` only move pixels and
work on uint8; `rotate` interpolates and needs float input in [0, 1].
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.utils import did_you_mean

ROTATE_MAX_DEGREES = 10.0


def crop_padding(height: int, width: int) -> int:
    """Zero padding for random crops: 4 pixels for inputs of 32 px or more, 2 for smaller."""
    return 4 if min(height, width) >= 32 else 2


def random_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pad with zeros and crop back to (H, W) at a random offset per sample. x: (B, C, H, W)."""
    batch, _, height, width = x.shape
    pad = crop_padding(height, width)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator).to(x.device)
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)   # (B, W)
    # gather rows, then columns: two cheap index passes instead of one 4-D fancy index
    by_rows = padded.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, padded.shape[3]))
    return by_rows.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], height, -1))


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 0.5. x: (B, C, H, W)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_rotate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each sample by a uniform angle in ±10 degrees, zeros outside. x: float (B, C, H, W)."""
    if not x.is_floating_point():
        raise TypeError("random_rotate needs float input in [0, 1]")
    angles = (torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 2 - 1)
    angles = (angles * math.radians(ROTATE_MAX_DEGREES)).to(device=x.device, dtype=x.dtype)
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# name -> (function, needs float input)
AUGMENTATIONS: dict[str, tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], bool]] = {
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
