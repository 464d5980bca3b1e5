"""Builders: a resolved `Node` tree becomes a torch module or a scratch module.

Both engines receive the same class names and constructor kwargs from the tree, so their
parameter names and shapes are identical by construction.
"""

from __future__ import annotations

from collections import OrderedDict

from cnnlab.errors import ModelError
from cnnlab.models.spec import Node


def _torch_classes() -> dict:
    import torch.nn as nn

    from cnnlab.models.blocks import BasicBlock

    return {"BasicBlock": BasicBlock, "Sequential": nn.Sequential, **{
        kind: getattr(nn, kind) for kind in (
            "Conv2d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU",
            "LeakyReLU", "Sigmoid", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
            "Flatten", "Dropout")
    }}


def _scratch_classes() -> dict:
    import cnnlab.scratch as scratch

    classes = {}
    for kind in ("Conv2d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU",
                 "LeakyReLU", "Sigmoid", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                 "Flatten", "Dropout", "BasicBlock", "Sequential"):
        if hasattr(scratch, kind):
            classes[kind] = getattr(scratch, kind)
    return classes


def _instantiate(node: Node, classes: dict, engine: str):
    if node.kind not in classes:
        raise ModelError(
            f"The {engine} engine has no {node.kind} layer (needed by '{node.name or 'model'}'); "
            f"it supports: {', '.join(sorted(classes))}."
        )
    cls = classes[node.kind]
    if node.kind == "Sequential":
        return cls(OrderedDict((child.name, _instantiate(child, classes, engine)) for child in node.children))
    # a BasicBlock builds its own children from the same three args in both engines
    return cls(**node.args)


def check_supported(root: Node, engine: str) -> None:
    """Refuse up front a model with a layer the engine lacks, naming the op and the layer."""
    classes = _scratch_classes() if engine == "scratch" else _torch_classes()
    for path, node in root.walk():
        if node.kind not in classes:
            raise ModelError(
                f"The {engine} engine cannot build layer '{path}' ({node.kind}); it supports: "
                f"{', '.join(sorted(classes))}."
            )


def build_torch(root: Node):
    return _instantiate(root, _torch_classes(), "torch")


def build_scratch(root: Node, dtype=None):
    check_supported(root, "scratch")
    model = _instantiate(root, _scratch_classes(), "scratch")
    if dtype is not None and hasattr(model, "to"):
        model = model.to(dtype)
    return model
