"""The one place where layer costs are defined: parameters, buffers and MACs per layer.

Costs are per sample (batch size 1) and follow from the layer's kind (its torch class name),
its constructor arguments and its input/output shapes (without the batch dimension).

What is counted as MACs (multiply-accumulates); FLOPs = 2 x MACs:
- Conv2d: one MAC per weight tap per output element, `out_elems * in_channels/groups * kh*kw`
  (the bias add is not counted, as in `torch.utils.flop_counter`).
- ConvTranspose2d: one MAC per weight tap per *input* element,
  `in_elems * out_channels/groups * kh*kw` (the same count torch's flop counter uses).
- Linear: `in_features * out_features` (bias not counted).
- BatchNorm1d/2d: one MAC per element (in inference form BN is `x * scale + shift`).
- LayerNorm, GroupNorm: one MAC per element, as BN (the scale-and-shift; their statistics are
  per sample, so unlike BN's they cannot be folded away, but they are additions and one
  multiply per element, the same order).
- Upsample: bilinear, 4 MACs per output element (a weighted sum of four source pixels);
  nearest, 0 (a copy).
- Pooling, activations, dropout, flatten and the residual add: 0 MACs (they are comparisons,
  element-wise maps or additions without multiplies).
"""

from __future__ import annotations

from math import prod

from cnnlab.utils import pair

CONV_LINEAR = ("Conv2d", "ConvTranspose2d", "Linear")


def layer_params(kind: str, args: dict) -> int:
    """Number of trainable values the layer itself holds (children excluded)."""
    if kind in ("Conv2d", "ConvTranspose2d"):
        kh, kw = pair(args["kernel_size"])
        groups = args.get("groups", 1)
        weight = args["in_channels"] * args["out_channels"] // groups * kh * kw
        return weight + (args["out_channels"] if args.get("bias", True) else 0)
    if kind == "Linear":
        weight = args["in_features"] * args["out_features"]
        return weight + (args["out_features"] if args.get("bias", True) else 0)
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        return 2 * args["num_features"] if args.get("affine", True) else 0
    if kind == "LayerNorm" and args.get("elementwise_affine", True):
        return (2 if args.get("bias", True) else 1) * prod(_as_shape(args["normalized_shape"]))
    if kind == "GroupNorm" and args.get("affine", True):
        return 2 * args["num_channels"]
    return 0


def _as_shape(shape) -> tuple:
    """LayerNorm's normalized_shape (an int or a tuple of ints) as a tuple."""
    return (shape,) if isinstance(shape, int) else tuple(shape)


def layer_buffers(kind: str, args: dict) -> int:
    """Running statistics the layer keeps (BN mean and variance; `num_batches_tracked` excluded)."""
    if kind in ("BatchNorm1d", "BatchNorm2d") and args.get("track_running_stats", True):
        return 2 * args["num_features"]
    return 0


def layer_macs(kind: str, args: dict, in_shape: tuple, out_shape: tuple) -> int:
    """MACs of one forward pass of the layer for one sample; see the module docstring."""
    if kind == "Conv2d":
        kh, kw = pair(args["kernel_size"])
        return prod(out_shape) * (args["in_channels"] // args.get("groups", 1)) * kh * kw
    if kind == "ConvTranspose2d":
        kh, kw = pair(args["kernel_size"])
        return prod(in_shape) * (args["out_channels"] // args.get("groups", 1)) * kh * kw
    if kind == "Linear":
        return args["in_features"] * args["out_features"]
    if kind in ("BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm"):
        return prod(out_shape)
    if kind == "Upsample" and args.get("mode") == "bilinear":
        return 4 * prod(out_shape)
    return 0
