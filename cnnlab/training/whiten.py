"""Patch whitening: the first conv initialised from the training set's patch statistics.

The filters become the principal directions of the (normalised) training images' k x k
patches, each scaled by 1 / sqrt(eigenvalue + eps), so the layer's outputs on training patches
are decorrelated with unit variance: their covariance is close to the identity. With room for
twice as many filters as patch dimensions, the negated filters follow (a ReLU after the stem
then keeps both signs), as in airbench; filters beyond that keep their random initialisation.
The bias, when the conv has one, centres the outputs. Works on either engine: the weights go
in through `load_state_dict`.
"""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ModelError
from cnnlab.utils import pair

WHITEN_EPS = 5e-4  # airbench's: keeps the near-zero components from blowing up
MAX_IMAGES = 5000  # enough for stable statistics of a 2x2 or 3x3 patch (dims <= 27)


def first_conv(root):
    """(path, node) of the layer the input reaches first; it must be a plain Conv2d."""
    for path, node in root.walk():
        if node.children:
            continue
        if node.kind != "Conv2d" or node.args.get("groups", 1) != 1:
            raise ModelError(
                f"model.whiten initialises the first layer from image patches, so the model must "
                f"start with a Conv2d with groups=1; its first layer '{path}' is a {node.kind}"
                + (f" with groups={node.args['groups']}" if node.kind == "Conv2d" else "") + "."
            )
        return path, node
    raise ModelError("model.whiten needs a model with layers; this one has none.")


def patches(images: np.ndarray, kernel: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """Every k x k patch of float images (N, C, H, W) as rows (N * positions, C * kh * kw)."""
    kh, kw = kernel
    dh, dw = dilation
    n, c, h, w = images.shape
    oh, ow = h - dh * (kh - 1), w - dw * (kw - 1)
    if oh < 1 or ow < 1:
        raise ModelError(f"model.whiten: a {kh}x{kw} patch does not fit in {h}x{w} images.")
    columns = [images[:, :, i * dh:i * dh + oh, j * dw:j * dw + ow] for i in range(kh) for j in range(kw)]
    stacked = np.stack(columns, axis=2)  # (N, C, kh*kw, oh, ow), torch's weight layout order
    return stacked.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1).reshape(-1, c * kh * kw)


def whitening_filters(images_u8: np.ndarray, mean, std, kernel, dilation=(1, 1), *,
                      out_channels: int, seed: int = 0, eps: float = WHITEN_EPS):
    """(weight rows (m, C*kh*kw), bias (m,)) for the first m = min(out_channels, 2D) filters.

    images_u8: the training split (N, C, H, W), normalised here with `mean`/`std` as the loader
    does. A seeded subset of at most `MAX_IMAGES` images gives the statistics.
    """
    rng = np.random.default_rng(seed)
    if len(images_u8) > MAX_IMAGES:
        images_u8 = images_u8[np.sort(rng.choice(len(images_u8), MAX_IMAGES, replace=False))]
    mean = np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float64).reshape(1, -1, 1, 1)
    x = (images_u8.astype(np.float64) / 255.0 - mean) / std
    rows = patches(x, kernel, dilation)
    centre = rows.mean(axis=0)
    centred = rows - centre
    covariance = centred.T @ centred / len(rows)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    filters = (eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)).T  # (D, D)
    if out_channels >= 2 * len(filters):
        filters = np.concatenate([filters, -filters])
    filters = filters[:out_channels]
    return filters, -filters @ centre


def whiten_first_conv(model, root, images_u8, mean, std, seed: int = 0) -> str:
    """Set the first conv's weight (and bias) of `model` (built from `root`) by patch whitening.

    Returns the layer's path. `model` is a torch or a scratch module.
    """
    import torch

    path, node = first_conv(root)
    kernel = pair(node.args["kernel_size"])
    out_channels, in_channels = node.args["out_channels"], node.args["in_channels"]
    filters, bias = whitening_filters(images_u8, mean, std, kernel,
                                      pair(node.args.get("dilation", 1)),
                                      out_channels=out_channels, seed=seed)
    prefix = f"{path}." if path else ""
    state = model.state_dict()
    weight = _as_numpy(state[prefix + "weight"]).copy()
    count = len(filters)
    weight[:count] = filters.reshape(count, in_channels, *kernel)
    update = {prefix + "weight": torch.as_tensor(weight)}
    if prefix + "bias" in state:
        full_bias = _as_numpy(state[prefix + "bias"]).copy()
        full_bias[:count] = bias
        update[prefix + "bias"] = torch.as_tensor(full_bias)
    model.load_state_dict({**state, **update})
    return path


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
