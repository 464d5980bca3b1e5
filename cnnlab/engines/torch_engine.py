"""The PyTorch engine: its model builder, device rule and the adapter the fit loop drives.

An engine owns a model, its optimiser and loss, and knows how to run one batch. The fit loop
talks to engines only through the protocol in docs/ARCHITECTURE.md, so the same loop drives
`TorchEngine` and the NumPy `ScratchEngine`; `cnnlab.engines` registers both.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from torch import nn

from cnnlab.engines.build import instantiate
from cnnlab.engines.ema import WeightAveraging
from cnnlab.engines.optim import build_lookahead, build_optimizer
from cnnlab.errors import ConfigError


def pick_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; an explicit CUDA device must exist."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device is '{requested}' but this machine has no CUDA device visible to torch; "
            "use 'auto' or 'cpu'."
        )
    return requested


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision layout): conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut.

    x: (N, in_channels, H, W) -> (N, out_channels, H/stride, W/stride). The shortcut is a 1x1
    conv + BN (`downsample`) when the stride or the width changes, otherwise the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        # ReLU is applied functionally (no child module) so that both engines' blocks have
        # the same children: conv1, bn1, conv2, bn2, downsample.
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


LAYER_KINDS = ("Conv2d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU",
               "LeakyReLU", "Sigmoid", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
               "Flatten", "Dropout", "Dropout2d", "GELU", "SiLU", "Softmax", "LogSoftmax",
               "LayerNorm", "GroupNorm", "AdaptiveMaxPool2d", "Upsample")


def layer_classes() -> dict:
    """The torch class for each layer kind of the spec language."""
    return {"BasicBlock": BasicBlock, "Sequential": nn.Sequential,
            **{kind: getattr(nn, kind) for kind in LAYER_KINDS}}


def build_model(root) -> nn.Module:
    """A resolved model tree as a `torch.nn.Module`."""
    return instantiate(root, layer_classes(), "torch")


TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls and convolutions natively (AMX or AVX512-BF16), so
    CPU autocast (`train.amp: true`) pays; torch's checks are private, hence the fallback."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


class TorchEngine:
    """Runs batches of a `torch.nn.Module` on CPU or CUDA.

    `amp`: bf16 autocast, `"auto"` on CUDA only, True on CUDA and CPU, False never. CPU
    autocast pays where oneDNN has AMX or AVX512-BF16 kernels. channels_last for conv nets on
    either device (measured ~1.45x faster for small CNNs on CPU). `ema`: a decay for a moving average of
    the weights that evaluation and the best checkpoint use; `compile`: torch.compile. `train_batch` returns Python numbers on
    CPU; on CUDA it returns 0-dim device tensors so the loop never waits on the GPU per batch
    (they add up like numbers and the loop converts once per epoch).
    """

    name = "torch"

    def __init__(self, model: nn.Module, optim_cfg, *, label_smoothing: float = 0.0,
                 device: str = "cpu", amp: bool | str = "auto", channels_last: bool = True,
                 ema: float | None = None, compile: bool = False, **_ignored):
        self.device = str(device)
        self._device = torch.device(self.device)
        self.channels_last = bool(channels_last) and _has_conv(model)
        self.model = model.to(self._device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        named = list(self.model.named_parameters())
        self.optimizer = build_optimizer([p for _, p in named], optim_cfg, TORCH_OPTIMIZERS,
                                         names=[n for n, _ in named])
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self._on_cuda = self._device.type == "cuda"
        self._autocast = amp is True or (amp == "auto" and self._on_cuda)
        self.precision = "bf16 autocast" if self._autocast else "float32"
        if self._autocast and not self._on_cuda and not cpu_has_bf16():
            warnings.warn("train.amp is true, but this CPU has neither AMX nor AVX512-BF16, so "
                          "bf16 arithmetic is emulated and usually slower than float32: set "
                          "train.amp to auto or false here.", RuntimeWarning, stacklevel=2)
        if self._on_cuda:  # fixed batch shapes: let cuDNN pick the fastest conv algorithms
            torch.backends.cudnn.benchmark = True
        # compiled lazily on the first batch; self.model stays the plain module, so state
        # dicts keep their keys (a compiled module prefixes them with `_orig_mod.`)
        self._forward = torch.compile(self.model) if compile else self.model
        self.averaging = WeightAveraging(self._parameters, self.model.state_dict, ema,
                                         build_lookahead(self._parameters(), optim_cfg))

    def _parameters(self) -> dict:
        """The parameters' storage without autograd (Lookahead writes into it)."""
        return {name: p.data for name, p in self.model.named_parameters()}

    def train(self) -> None:
        self.averaging.for_training()
        self.model.train()

    def eval(self) -> None:
        self.model.eval()
        self.averaging.for_evaluation()

    def _inputs(self, x) -> torch.Tensor:
        x = torch.as_tensor(x).to(self._device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast_context(self):
        if self._autocast:
            return torch.autocast(device_type=self._device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _totals(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor):
        loss_sum = loss.detach() * y.shape[0]
        correct = (logits.detach().argmax(1) == y).sum()
        if self._on_cuda:
            return loss_sum.float(), correct
        return loss_sum.item(), int(correct)

    def train_batch(self, x, y):
        x = self._inputs(x)
        y = torch.as_tensor(y).to(self._device, non_blocking=True)
        with self._autocast_context():
            logits = self._forward(x)
        # the loss of bf16 logits in float32; a float64 model keeps its precision
        loss = self.loss_fn(logits.float() if self._autocast else logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.averaging.after_step()
        return self._totals(loss, logits, y)

    @torch.no_grad()
    def eval_batch(self, x, y):
        x = self._inputs(x)
        y = torch.as_tensor(y).to(self._device, non_blocking=True)
        with self._autocast_context():
            logits = self._forward(x)
            loss = self.loss_fn(logits.float(), y)
        return self._totals(loss, logits, y)

    @torch.no_grad()
    def eval_views(self, views, y):
        """`eval_batch` on the mean of the logits over views of one batch (TTA; one view is
        plain evaluation), plus the predicted classes (B,) as a NumPy array."""
        y = torch.as_tensor(y).to(self._device, non_blocking=True)
        with self._autocast_context():
            logits = sum(self._forward(self._inputs(v)).float() for v in views) / len(views)
            loss = self.loss_fn(logits, y)
        loss_sum, correct = self._totals(loss, logits, y)
        return loss_sum, correct, logits.argmax(1).cpu().numpy()

    @torch.no_grad()
    def predict(self, x) -> np.ndarray:
        with self._autocast_context():
            logits = self._forward(self._inputs(x))
        return logits.float().cpu().numpy()

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng}
        state.update(self.averaging.checkpoint_entries())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.averaging.restore(state, self.model.load_state_dict)
        if state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(torch.as_tensor(rng["torch"], dtype=torch.uint8))
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in rng["cuda"]])
