"""cnnlab's from-scratch NumPy engine: layers named and initialised like torch.nn.

The math is in `cnnlab.scratch.functional` (pure forward/backward kernels), readable loop
versions of the main kernels in `cnnlab.verify.reference`, and the layers here are thin
wrappers around them. `cnnlab.scratch.optim`, `.losses` and `.serialization` are submodules;
import them explicitly (`from cnnlab.scratch import optim`).

dtype: layers are created float32; `model.to(np.float64)` (or `.double()`) casts parameters
and buffers, and layers with parameters cast their input to the model's dtype, so a float64
model (for gradient checks, `cnnlab.verify.gradcheck`) computes in float64 throughout.
"""

from cnnlab.scratch.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BasicBlock,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    RoIPool,
    Sequential,
    Sigmoid,
    Tanh,
)
from cnnlab.scratch.module import HookHandle, Module
from cnnlab.scratch.parameter import Parameter

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BasicBlock", "BatchNorm1d", "BatchNorm2d", "Conv2d",
    "ConvTranspose2d", "Dropout", "Flatten", "HookHandle", "LeakyReLU", "Linear", "MaxPool2d",
    "Module", "Parameter", "ReLU", "RoIPool", "Sequential", "Sigmoid", "Tanh",
]
