"""A resolved model tree (`cnnlab.models.Node`) as modules of one engine.

Both engines receive the same class names and constructor kwargs from the tree, so their
parameter names and shapes are identical by construction. Each engine module supplies its
table `{kind: class}`; the tree is read through `kind`, `args`, `name`, `children` and `walk()`.
"""

from __future__ import annotations

from collections import OrderedDict

from cnnlab.errors import ModelError


def check_supported(root, classes: dict, engine: str) -> None:
    """Refuse up front a model with a layer the engine lacks, naming the op and the layer."""
    for path, node in root.walk():
        if node.kind not in classes:
            raise ModelError(
                f"The {engine} engine cannot build layer '{path}' ({node.kind}); it supports: "
                f"{', '.join(sorted(classes))}."
            )


def instantiate(node, classes: dict, engine: str):
    """The module for `node` and, for a Sequential, its children in order."""
    if node.kind not in classes:
        raise ModelError(
            f"The {engine} engine has no {node.kind} layer (needed by '{node.name or 'model'}'); "
            f"it supports: {', '.join(sorted(classes))}."
        )
    cls = classes[node.kind]
    if node.kind == "Sequential":
        return cls(OrderedDict((child.name, instantiate(child, classes, engine))
                               for child in node.children))
    # a BasicBlock builds its own children from the same three args in both engines
    return cls(**node.args)
