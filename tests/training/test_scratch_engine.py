"""ScratchEngine: the engine protocol over a NumPy model, checked against a torch training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnlab.models as models
from cnnlab import scratch
from cnnlab.errors import ConfigError, ModelError, TrainingInterrupted
from cnnlab.scratch import random as scratch_random
from cnnlab.training import Callback, train
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab import engines
from cnnlab.engines.scratch_engine import ScratchEngine

SGD_CFG = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
ADAM_CFG = {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-2}


def _batch(seed=0, n=32, shape=(1, 8, 8), classes=10):
    """Images whose class is readable from the pixels, so a few steps really lower the loss."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(scale=0.3, size=(n, *shape)).astype(np.float32)
    x[np.arange(n), 0, y % shape[1], :] += 2.0
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def _dropout_net(seed=0):
    scratch_random.seed(seed)
    return scratch.Sequential(scratch.Flatten(), scratch.Linear(64, 32), scratch.ReLU(),
                              scratch.Dropout(0.3), scratch.Linear(32, 10))


def _flat_weights(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


@pytest.mark.parametrize("optim_cfg", [SGD_CFG, ADAM_CFG], ids=["sgd", "adamw"])
def test_training_lowers_the_loss(optim_cfg):
    scratch_random.seed(0)
    engine = ScratchEngine(models.build("small_cnn", (1, 8, 8), 10, engine="scratch"), optim_cfg,
                           label_smoothing=0.1)
    assert (engine.name, engine.device, engines.get(engine.name).checkpoint_suffix) == ("scratch", "cpu", ".npz")
    x, y = _batch()
    engine.train()
    losses = []
    for _ in range(8):
        loss_sum, correct = engine.train_batch(x, y)
        assert isinstance(loss_sum, float) and isinstance(correct, int) and 0 <= correct <= 32
        losses.append(loss_sum / 32)
    assert losses[-1] < 0.7 * losses[0]
    engine.eval()
    eval_loss, eval_correct = engine.eval_batch(x, y)
    assert eval_correct > 16 and eval_loss / 32 < losses[0]


def test_train_batch_is_torch_s_training_step(one_thread):
    """Same weights and batches in float64: the engine's step (label-smoothed CE, backward,
    nesterov SGD with weight decay) equals a plain torch training loop to rounding."""
    torch.manual_seed(0)
    torch_model = models.build("small_cnn", (1, 8, 8), 10, engine="torch").double()
    scratch_model = models.build("small_cnn", (1, 8, 8), 10, engine="scratch").double()
    scratch_model.load_state_dict(torch_model.state_dict())
    engine = ScratchEngine(scratch_model, SGD_CFG, label_smoothing=0.1)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    engine.train()
    torch_model.train()
    for step in range(3):
        x, y = _batch(seed=step)
        loss_sum, correct = engine.train_batch(x, y)  # float32 batch, cast to the model's dtype
        logits = torch_model(x.double())
        loss = loss_fn(logits, y)
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        assert loss_sum == pytest.approx(loss.item() * 32, rel=1e-10)
        assert correct == int((logits.argmax(1) == y).sum())
    engine.eval()
    torch_model.eval()
    x, _ = _batch(seed=9)
    expected_logits = torch_model(x.double()).detach().numpy()
    np.testing.assert_allclose(engine.predict(x), expected_logits, rtol=1e-5, atol=1e-6)
    torch_state = torch_model.state_dict()
    for key, value in scratch_model.state_dict().items():
        np.testing.assert_allclose(value, torch_state[key].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=key)


@pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "npz-checkpoint"])
@pytest.mark.parametrize("optim_cfg", [SGD_CFG, ADAM_CFG], ids=["sgd", "adamw"])
def test_state_round_trip_reproduces_the_next_step_exactly(tmp_path, optim_cfg, through_file):
    engine = ScratchEngine(_dropout_net(seed=1), optim_cfg)
    engine.train()
    for step in range(3):
        engine.train_batch(*_batch(seed=step))
    state = engine.state_dict()
    if through_file:
        save_checkpoint(tmp_path / "last.npz", {"engine": state, "epoch": 3})
        state = load_checkpoint(tmp_path / "last.npz")["engine"]
    x, y = _batch(seed=7)
    expected = engine.train_batch(x, y)  # dropout draws from the scratch generator
    expected_weights = _flat_weights(engine.model)

    resumed = ScratchEngine(_dropout_net(seed=99), optim_cfg)  # other weights, other rng
    resumed.load_state_dict(state)
    resumed.train()
    assert resumed.train_batch(x, y) == expected
    np.testing.assert_array_equal(_flat_weights(resumed.model), expected_weights)


def test_eval_and_predict_do_not_update():
    engine = ScratchEngine(models.build("mlp", (1, 8, 8), 10, engine="scratch"), SGD_CFG)
    engine.eval()
    before = engine.model.state_dict()
    x, y = _batch()
    loss_sum, correct = engine.eval_batch(x, y)
    logits = engine.predict(x)
    assert logits.shape == (32, 10) and logits.dtype == np.float32
    assert correct == int((logits.argmax(1) == y.numpy()).sum())
    for key, value in engine.model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_float64_model_gets_float64_inputs():
    model = _dropout_net().double()
    engine = ScratchEngine(model, SGD_CFG)
    assert engine.dtype == np.float64
    engine.train_batch(*_batch())
    assert all(p.data.dtype == np.float64 for p in model.parameters())


def test_bad_construction():
    with pytest.raises(ConfigError, match=r"CPU only; got device='cuda'"):
        ScratchEngine(_dropout_net(), SGD_CFG, device="cuda")
    with pytest.raises(ModelError, match="got Linear, which has no backward"):
        ScratchEngine(torch.nn.Linear(2, 2), SGD_CFG)
    with pytest.raises(ConfigError, match="Unknown optimiser"):
        ScratchEngine(_dropout_net(), {"name": "rmsprop", "lr": 0.1})
    engine = ScratchEngine(_dropout_net(), SGD_CFG)
    with pytest.raises(ModelError, match=r"expects a dict with 'model'"):
        engine.load_state_dict({"weights": {}})


class _StopAtEpoch(Callback):
    """Ctrl-C at the start of `epoch`."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _metrics_without_time(run):
    return [{k: v for k, v in row.items() if k != "epoch_s"} for row in run.metrics]


def test_interrupted_scratch_run_resumes_exactly(tiny_config):
    """Through the fit loop and .npz checkpoints: optimiser, warm-up schedule and RNG state
    all come back, so the resumed run's metrics equal an uninterrupted run's."""
    config = tiny_config(**{"train.engine": "scratch", "optim.name": "adamw", "optim.lr": 3e-3,
                            "schedule.warmup_epochs": 1, "data.augment": ["flip"],
                            "data.train_limit": 160})
    full = train(config, quiet=True)
    assert (full.path / "last.npz").is_file() and full.result["status"] == "completed"
    scratch_random.generator().random(5)  # train() seeds the scratch generator itself
    with pytest.raises(TrainingInterrupted):
        train(config, quiet=True, callbacks=[_StopAtEpoch(2)])
    resumed = train(resume=full.path.parent / "v2", quiet=True)
    assert resumed.result["status"] == "completed"
    assert _metrics_without_time(resumed) == _metrics_without_time(full)
    assert full.metrics[-1]["train_loss"] < full.metrics[0]["train_loss"]


def test_a_step_runs_blas_on_one_thread_and_the_kernels_on_their_threads():
    """The engine keeps NumPy's BLAS at one thread through train and eval steps (the kernels
    split their work over their own threads instead), and restores it after; SciPy's BLAS,
    loaded beside NumPy's, does not hide NumPy's from the limit."""
    pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (a second OpenBLAS in the process)
    from cnnlab.scratch import threads

    seen = []

    class Spy(scratch.Module):
        def forward(self, x):
            seen.append((threads.current_blas_threads(), threads.kernel_threads()))
            return x

        def backward(self, grad):
            return grad

    with threads.blas_threads(2):
        engine = ScratchEngine(scratch.Sequential(Spy(), _dropout_net()), SGD_CFG)
        x, y = _batch()
        engine.train_batch(x, y)
        engine.eval_batch(x, y)
        assert threads.current_blas_threads() == 2
    assert seen == [(1, 2), (1, 2)]
