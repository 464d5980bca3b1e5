"""`cnnlab export`: ONNX (checked with onnxruntime) and TorchScript, torch and NumPy-engine runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.results.export import check_batch, export


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory):
    """A NumPy-engine conv net on 200 digits, 1 epoch."""
    import cnnlab

    torch.set_num_threads(1)
    config = {"data": {"dataset": "digits", "train_limit": 200},
              "model": {"name": "small_cnn"},
              "train": {"epochs": 1, "batch_size": 32, "engine": "scratch"}}
    return cnnlab.train(config, out=tmp_path_factory.mktemp("runs"), quiet=True, plots=False)


def test_onnx_export_of_a_torch_run_matches_in_onnxruntime(tiny_run, tmp_path):
    import onnxruntime

    done = export(tiny_run.path, "onnx", tmp_path / "m.onnx")
    assert done.path == tmp_path / "m.onnx" and done.batch == 64 and done.max_diff < 1e-4
    session = onnxruntime.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    x = check_batch(tiny_run, 7)  # any batch size: the batch axis is dynamic
    logits = session.run(None, {"input": x})[0]
    probs = tiny_run.predict(tiny_run.test_data().images[:7])
    assert logits.shape == (7, 10) and np.array_equal(logits.argmax(1), probs.argmax(1))


def test_numpy_run_exports_through_its_torch_twin(scratch_run, capsys):
    assert main(["export", str(scratch_run.path), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    path = scratch_run.path / "model.torchscript.pt"
    assert f"wrote {path}" in out and "max |exported - torch|" in out and "torch - numpy" in out
    with pytest.warns(DeprecationWarning):  # torch.jit is deprecated, still the TorchScript loader
        loaded = torch.jit.load(str(path))
    x = torch.from_numpy(check_batch(scratch_run))
    native = scratch_run.model()(x.numpy())  # the NumPy model itself
    assert np.abs(loaded(x).detach().numpy() - native).max() < 1e-3
    done = export(scratch_run.path, "onnx")
    assert done.path.name == "model.onnx" and done.max_diff < 1e-4 and done.twin_diff < 1e-3


def test_unknown_format_is_a_user_error(tiny_run):
    with pytest.raises(CnnlabError, match="onnx, torchscript"):
        export(tiny_run.path, "tflite")
