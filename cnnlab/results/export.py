"""Export a run's model to ONNX or TorchScript, checked against the torch model on a test batch.

A torch run exports its own model. A NumPy-engine run exports through its torch twin: the
same model built in the torch engine (`models.build(..., engine="torch")`), loaded with the
scratch state dict, whose keys and shapes are the same; the twin is compared with the NumPy
model too. The exported file is run back (onnxruntime for ONNX, `torch.jit.load` for
TorchScript) on a batch of the run's test images, normalised as in training, and the largest
absolute difference of the logits is returned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.results.plots import load_run
from cnnlab.utils import atomic_path, make_dirs

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
CHECK_BATCH = 64  # test images the export is checked on
ONNX_OPSET = 17


@dataclass(frozen=True)
class Export:
    """What `export` wrote and how closely it matches the torch model."""

    path: Path
    format: str
    max_diff: float  # max |exported - torch model| over the check batch's logits
    batch: int  # images in the check batch
    twin_diff: float | None = None  # NumPy runs: max |torch twin - NumPy model|


def torch_model(run, which: str = "best"):
    """The run's model as a torch module in eval mode (a NumPy run's torch twin)."""
    import torch

    import cnnlab.models as models

    args = run.model_args()
    if args.engine == "torch":
        return run.model(which)
    twin = models.build(args.ref, args.input_shape, args.num_classes, engine="torch", **args.options)
    state = run.checkpoint(which)["model"]
    twin.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return twin.eval()


def check_batch(run, n: int = CHECK_BATCH) -> np.ndarray:
    """Up to `n` test images as float32 (N, C, H, W), normalised with the run's mean and std."""
    images = np.asarray(run.test_data().images[:n], dtype=np.float32) / 255.0
    mean = np.asarray(run.result["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(run.result["std"], np.float32).reshape(1, -1, 1, 1)
    return ((images - mean) / std).astype(np.float32)


def export(run, format: str = "onnx", output=None, which: str = "best") -> Export:
    """Write the run's `which` checkpoint as `format` (onnx | torchscript) to `output`
    (default `<run>/model.onnx` or `<run>/model.torchscript.pt`) and check it."""
    import torch

    if format not in FORMATS:
        raise CnnlabError(f"Export format must be one of {', '.join(FORMATS)}; got {format!r}.")
    run = load_run(run)
    path = Path(output) if output is not None else Path(run.path) / f"model{FORMATS[format]}"
    model = torch_model(run, which)
    x = torch.from_numpy(check_batch(run))
    if not len(x):
        raise CnnlabError(f"The test set of run {run.path} is empty; no batch to check the export on.")
    with torch.no_grad():
        reference = model(x).numpy()
    twin_diff = None
    if run.model_args().engine != "torch":
        native = run.model(which)
        twin_diff = float(np.max(np.abs(np.asarray(native(x.numpy()), np.float32) - reference)))
    make_dirs(path.parent)
    exported = _export_onnx(model, x, path) if format == "onnx" else _export_torchscript(model, x, path)
    return Export(path, format, float(np.max(np.abs(exported - reference))), len(x), twin_diff)


def _export_onnx(model, x, path: Path) -> np.ndarray:
    import torch

    try:
        import onnxruntime
    except ImportError:
        raise CnnlabError("ONNX export needs onnx and onnxruntime: pip install 'cnnlab[onnx]'.") from None
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the TorchScript-based exporter: the torch.export one needs onnxscript as well
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x.numpy()})[0])


def _export_torchscript(model, x, path: Path) -> np.ndarray:
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(model, x)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        return loaded(x).numpy()
