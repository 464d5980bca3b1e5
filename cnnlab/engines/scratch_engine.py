"""The NumPy engine: its model builder and the adapter that runs a `cnnlab.scratch` model.

It implements the engine protocol of docs/ARCHITECTURE.md, like `TorchEngine`: the fit loop
hands it torch CPU float32 batches, which become NumPy arrays without a copy (`x.numpy()`)
and are cast to the model's dtype only when that differs. A training step is forward,
cross-entropy (with label smoothing), backward and one optimiser step; the loss's own cache
gives the gradient, so the per-step overhead beyond the model is a few small (B, K) passes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import cnnlab.scratch as scratch
from cnnlab.engines.build import check_supported, instantiate
from cnnlab.engines.ema import WeightAveraging
from cnnlab.engines.optim import build_lookahead, build_optimizer
from cnnlab.errors import ConfigError, ModelError
from cnnlab.scratch import optim as scratch_optim
from cnnlab.scratch import random as scratch_random
from cnnlab.scratch.threads import one_blas_thread
from cnnlab.scratch.losses import CrossEntropyLoss, num_correct

LAYER_KINDS = ("Conv2d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU",
               "LeakyReLU", "Sigmoid", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
               "Flatten", "Dropout", "Dropout2d", "GELU", "SiLU", "Softmax", "LogSoftmax",
               "LayerNorm", "GroupNorm", "AdaptiveMaxPool2d", "Upsample", "BasicBlock",
               "Sequential")
SCRATCH_OPTIMIZERS = {"sgd": scratch_optim.SGD, "adam": scratch_optim.Adam,
                      "adamw": scratch_optim.AdamW}


def layer_classes() -> dict:
    """The `cnnlab.scratch` class for each layer kind of the spec language it implements."""
    return {kind: getattr(scratch, kind) for kind in LAYER_KINDS if hasattr(scratch, kind)}


def build_model(root):
    """A resolved model tree as a `cnnlab.scratch` module (refused up front if an op is missing)."""
    classes = layer_classes()
    check_supported(root, classes, "scratch")
    return instantiate(root, classes, "scratch")


def _as_array(batch: Any, dtype: np.dtype | None = None) -> np.ndarray:
    """A torch CPU tensor (zero-copy) or array as a NumPy array, cast to `dtype` if given."""
    array = batch if isinstance(batch, np.ndarray) else batch.detach().numpy()
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return array


def _skip_input_gradient(model) -> None:
    """Training never uses the gradient w.r.t. the images: let the first layer with weights
    skip computing it (about 3% of a `small_cnn` step), as torch does for inputs without grad."""
    first = model
    while True:  # the first layer the input reaches
        children = list(first.children()) if hasattr(first, "children") else []
        if not children:
            break
        first = children[0]
    if hasattr(first, "needs_input_grad"):
        first.needs_input_grad = False


def _on_one_blas_thread(method):
    """Run an engine step with NumPy's BLAS on one thread.

    The kernels split their work over their own threads (cnnlab.scratch.threads); a BLAS call
    on two threads left OpenBLAS's worker spinning for a while after it, taking a core from
    those kernel threads (measured: the worker used 1.0 of 2 cores during a vgg8_bn step; with
    BLAS at one thread the step ran 267 -> 174 ms, benchmarks/scratch_vs_torch.py)."""
    @functools.wraps(method)
    def on_one_thread(*args, **kwargs):
        with one_blas_thread():
            return method(*args, **kwargs)
    return on_one_thread


class ScratchEngine:
    """Runs a scratch model (forward/backward in NumPy) with a scratch optimiser on the CPU.

    model: a `cnnlab.scratch` Module (e.g. from `cnnlab.models.build(..., engine="scratch")`).
    optim_cfg: has `name` (sgd | adam | adamw), `lr`, `momentum`, `nesterov`, `weight_decay`,
        `betas`, `eps` (a config object or dict). Other keyword arguments (torch-only options
        such as `amp`) are accepted and ignored, so one call builds either engine.
    loss_fn: a loss with `forward(logits, y) -> mean` and `backward() -> dlogits` in place of
        cnnlab's CrossEntropyLoss (a student's, from `engines.student_layers.make_adapter`).
    """

    name = "scratch"
    device = "cpu"
    channels_last = False

    def __init__(self, model, optim_cfg, *, label_smoothing: float = 0.0, device: str = "cpu",
                 ema: float | None = None, loss_fn=None, **_ignored):
        if str(device) != "cpu":
            raise ConfigError(
                f"The scratch (NumPy) engine runs on the CPU only; got device={device!r}. Use "
                "train.device=cpu, or train.engine=torch for a GPU."
            )
        for method in ("forward", "backward", "parameters", "state_dict", "load_state_dict"):
            if not callable(getattr(model, method, None)):
                raise ModelError(
                    f"ScratchEngine needs a cnnlab.scratch model; got {type(model).__name__}, "
                    f"which has no {method}(). Build it with engine='scratch'."
                )
        self.model = model
        _skip_input_gradient(model)
        self.optimizer = build_optimizer(model.parameters(), optim_cfg, SCRATCH_OPTIMIZERS,
                                         names=[name for name, _, _ in model.named_parameters()])
        # loss_fn: another loss with the same interface (a student's, see engines.student_layers)
        self.loss_fn = loss_fn or CrossEntropyLoss(label_smoothing=label_smoothing)
        params = model.parameters()
        self.dtype = params[0].data.dtype if params else np.dtype(np.float32)
        self.precision = str(self.dtype)
        self.averaging = WeightAveraging(self._parameters, self._live, ema,
                                         build_lookahead(self._parameters(), optim_cfg))

    def _parameters(self) -> dict:
        """The parameters as the model's own arrays (updated in place)."""
        return {name: value for name, value, _ in self.model.named_parameters()}

    def _live(self) -> dict:
        """The model's parameters and buffers as its own arrays (updated in place)."""
        live = self._parameters()
        live.update(self.model.named_buffers())
        return live

    def train(self) -> None:
        self.averaging.for_training()
        self.model.train()

    def eval(self) -> None:
        self.model.eval()
        self.averaging.for_evaluation()

    @_on_one_blas_thread
    def train_batch(self, x, y) -> tuple[float, int]:
        """One SGD step on (x (B, C, H, W) float32, y (B,) int64); returns (loss sum, correct)."""
        x, y = _as_array(x, self.dtype), _as_array(y)
        logits = self.model.forward(x)
        loss = self.loss_fn.forward(logits, y)
        self.optimizer.zero_grad()  # the layers accumulate into .grad, as torch's do
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step()
        self.averaging.after_step()
        return loss * y.shape[0], num_correct(logits, y)

    @_on_one_blas_thread
    def eval_batch(self, x, y) -> tuple[float, int]:
        """Loss sum and number correct on one batch, without gradients or updates."""
        y = _as_array(y)
        logits = self.model.forward(_as_array(x, self.dtype))
        loss = self.loss_fn.forward(logits, y)
        return loss * y.shape[0], num_correct(logits, y)

    @_on_one_blas_thread
    def eval_views(self, views, y) -> tuple[float, int, np.ndarray]:
        """`eval_batch` on the mean of the logits over views of one batch (TTA; one view is
        plain evaluation), plus the predicted classes (B,)."""
        y = _as_array(y)
        logits = sum(self.model.forward(_as_array(v, self.dtype)) for v in views) / len(views)
        loss = self.loss_fn.forward(logits, y)
        return loss * y.shape[0], num_correct(logits, y), np.asarray(logits).argmax(axis=1)

    @_on_one_blas_thread
    def predict(self, x) -> np.ndarray:
        """Logits (B, K) as float32."""
        logits = self.model.forward(_as_array(x, self.dtype))
        return np.asarray(logits, dtype=np.float32)

    def state_dict(self) -> dict:
        """{"model": arrays, "optimizer": plain state, "rng": the scratch generator's state}.

        Everything is a copy (the scratch Module's state_dict copies), so a saved state stays
        valid as training goes on.
        """
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": scratch_random.get_state(),
        }
        state.update(self.averaging.checkpoint_entries())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` output (also as read back from an `.npz` checkpoint)."""
        if not isinstance(state, dict) or "model" not in state:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ModelError(
                f"ScratchEngine.load_state_dict expects a dict with 'model' (and optionally "
                f"'optimizer', 'rng'); got {got}."
            )
        self.averaging.restore(state, self.model.load_state_dict)
        if state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("rng"):
            scratch_random.set_state(state["rng"])

    def __repr__(self) -> str:
        return f"ScratchEngine({type(self.model).__name__}, {self.optimizer!r}, dtype={self.dtype})"
