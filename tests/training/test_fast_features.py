"""The fast-training options: EMA, test-time augmentation, patch whitening, torch.compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab import models
from cnnlab.config import load_config
from cnnlab.data.augment import tta_views
from cnnlab.engines.optim import OptimConfig
from cnnlab.engines.scratch_engine import ScratchEngine
from cnnlab.engines.torch_engine import TorchEngine
from cnnlab.errors import ConfigError, ModelError, TrainingInterrupted
from cnnlab.training import Callback, evaluate, train
from cnnlab.training.whiten import patches, whiten_first_conv

SGD = OptimConfig(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    return x, (x.flatten(1).sum(1) > 0).long()


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(48, 2))


@pytest.mark.parametrize("engine_name", ["torch", "scratch"])
def test_ema_update_matches_a_hand_computation_and_is_what_gets_evaluated(engine_name):
    decay = 0.8
    if engine_name == "torch":
        engine = TorchEngine(_net(), SGD, device="cpu", ema=decay, channels_last=False)
        weights = lambda: {k: v.clone().numpy() for k, v in engine.model.state_dict().items()}  # noqa: E731
    else:
        torch.manual_seed(0)
        engine = ScratchEngine(models.build([{"conv": {"out": 3, "k": 3, "pad": 1}}, "bn", "relu",
                                             "flatten", {"linear": 2}], (1, 4, 4), 2,
                                            engine="scratch"), SGD, ema=decay)
        weights = lambda: {k: np.array(v) for k, v in engine.model.state_dict().items()}  # noqa: E731
    expected = weights()
    engine.train()
    for step in range(3):
        engine.train_batch(*_batch(seed=step))
        current = weights()
        for key, value in current.items():
            if value.dtype.kind == "f":
                expected[key] = decay * expected[key] + (1 - decay) * value
            else:
                expected[key] = value
    raw = weights()
    engine.eval()  # evaluation sees the average...
    for key, value in weights().items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-6, atol=1e-7)
    x, y = _batch(seed=9)
    averaged_logits = engine.predict(x)
    engine.train()  # ...and training goes on from its own weights
    for key, value in weights().items():
        np.testing.assert_array_equal(value, raw[key])
    state = engine.state_dict()  # the checkpoint's "model" is the average
    for key, value in state["model"].items():
        np.testing.assert_allclose(np.asarray(value), expected[key], rtol=1e-6, atol=1e-7)
    engine.eval()
    np.testing.assert_array_equal(engine.predict(x), averaged_logits)


def test_flip_tta_logits_are_the_mean_of_the_two_views():
    engine = TorchEngine(_net(), SGD, device="cpu")
    engine.eval()
    x, y = _batch(n=16)
    views = tta_views(x, ["flip"])
    logits = (torch.as_tensor(engine.predict(x)) + torch.as_tensor(engine.predict(x.flip(3)))) / 2
    loss_sum, correct, predicted = engine.eval_views(views, y)
    assert (predicted == logits.argmax(1).numpy()).all()
    expected_loss = nn.functional.cross_entropy(logits, y, reduction="sum")
    assert loss_sum == pytest.approx(float(expected_loss), rel=1e-5)
    assert correct == int((logits.argmax(1) == y).sum())
    # evaluate() uses the views when asked
    loss, acc = evaluate(engine, [(x, y)], tta=["flip"])
    assert loss == pytest.approx(float(expected_loss) / 16, rel=1e-5) and acc == correct / 16


@pytest.mark.parametrize("engine_name", ["torch", "scratch"])
def test_whitening_makes_the_first_layers_patch_covariance_close_to_identity(engine_name):
    rng = np.random.default_rng(0)
    # correlated images: smooth noise, so raw 2x2 patches are far from white
    base = rng.normal(size=(300, 3, 9, 9)).cumsum(axis=2).cumsum(axis=3)
    images = np.clip(128 + 8 * base, 0, 255).astype(np.uint8)
    mean, std = images.mean(axis=(0, 2, 3)) / 255, images.std(axis=(0, 2, 3)) / 255
    spec = [{"conv": {"out": 24, "k": 2}, "name": "stem"}, "relu", "flatten", {"linear": 10}]
    root = models.resolve(spec, (3, 9, 9), 10)
    model = models.build(spec, (3, 9, 9), 10, engine=engine_name)
    assert whiten_first_conv(model, root, images, mean, std) == "stem"
    weight = np.asarray(model.state_dict()["stem.weight"]).reshape(24, -1)
    x = (images / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    rows = patches(x, (2, 2), (1, 1))
    outputs = (rows - rows.mean(0)) @ weight[:12].T  # the 12 whitened filters
    covariance = outputs.T @ outputs / len(rows)
    # decorrelated, unit variance up to the eps that tames the smallest components
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() < 1e-6
    assert 0.9 < np.diag(covariance).min() and np.diag(covariance).max() <= 1.0
    np.testing.assert_allclose(weight[12:], -weight[:12])  # and their negatives
    raw = (rows - rows.mean(0)).T @ (rows - rows.mean(0)) / len(rows)
    assert np.abs(raw - np.diag(np.diag(raw))).max() > 0.5  # the input was far from white


def test_whitening_needs_a_conv_first():
    spec = ["flatten", {"linear": 10}]
    root = models.resolve(spec, (1, 4, 4), 10)
    with pytest.raises(ModelError, match="must start with a Conv2d.*'1' is a Flatten|Flatten"):
        whiten_first_conv(models.build(spec, (1, 4, 4), 10), root, np.zeros((4, 1, 4, 4), np.uint8),
                          (0.5,), (0.2,))


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _metrics(run_dir):
    return [line.rsplit(",", 1)[0] for line in (run_dir / "metrics.csv").read_text().splitlines()]


@pytest.mark.parametrize("engine_name", ["torch", "torch_bf16", "scratch"])
def test_resume_with_ema_and_tta_is_bit_exact_on_cpu(tiny_config, engine_name):
    bf16 = engine_name == "torch_bf16"  # CPU autocast is deterministic too
    config = tiny_config(**{"train.ema": 0.9, "eval.tta": ["flip"], "model.whiten": True,
                            "data.augment": ["flip_alternate", "translate", "cutout"],
                            "data.cutout": 3, "train.engine": "torch" if bf16 else engine_name,
                            "train.amp": bf16 or "auto", "train.epochs": 3,
                            "data.train_limit": 200, "optim.lookahead_steps": 3,
                            "optim.bias_lr_scale": 2.0})
    full = train(config, quiet=True)
    with pytest.raises(TrainingInterrupted):
        train(config, quiet=True, callbacks=[StopAt(2)])
    stopped = full.path.parent / "v2"
    resumed = train(resume=stopped, quiet=True)
    assert _metrics(stopped) == _metrics(full.path)
    assert resumed.result["test_acc"] == full.result["test_acc"]
    features = full.result["features"]
    assert features["ema"] == 0.9 and features["tta"] == ["flip"] and features["whiten"] is True
    assert features["lookahead"] == {"steps": 3, "alpha": 0.5} and features["bias_lr_scale"] == 2.0
    assert features["precision"] == {"torch": "float32", "torch_bf16": "bf16 autocast",
                                     "scratch": "float32"}[engine_name]
    # the best checkpoint holds the averaged weights that gave the test accuracy
    best = full.checkpoint("best")
    assert "train_model" in best and set(best["model"]) == set(best["train_model"])


def test_compile_is_a_torch_engine_option():
    with pytest.raises(ConfigError, match="train.compile.*only the torch engine"):
        load_config({"train": {"compile": True, "engine": "scratch"}})
    engine = TorchEngine(_net(), SGD, device="cpu", compile=True)
    assert engine._forward is not engine.model  # compiled lazily, on the first batch
    assert set(engine.state_dict()["model"]) == set(_net().state_dict())  # keys unprefixed


def test_amp_true_runs_the_cpu_forward_in_bf16_and_the_loss_in_float32():
    x, y = _batch()
    seen = {}
    plain = TorchEngine(_net(), SGD, device="cpu", channels_last=False)  # amp "auto": float32 on CPU
    autocast = TorchEngine(_net(), SGD, device="cpu", channels_last=False, amp=True)
    assert (plain.precision, autocast.precision) == ("float32", "bf16 autocast")
    hook = autocast.model[0].register_forward_hook(lambda m, i, out: seen.update(conv=out.dtype))
    loss_sum, correct = autocast.train_batch(x, y)
    hook.remove()
    assert seen["conv"] == torch.bfloat16 and isinstance(loss_sum, float) and 0 <= correct <= len(y)
    # bf16 keeps about 3 significant digits: the two runs' losses agree to that, not exactly
    reference, _ = plain.train_batch(x, y)
    assert loss_sum != reference and abs(loss_sum - reference) < 0.02 * abs(reference)
    assert autocast.predict(x).dtype == np.float32


def test_amp_on_a_cpu_without_bf16_hardware_warns(monkeypatch):
    import cnnlab.engines.torch_engine as torch_engine

    monkeypatch.setattr(torch_engine, "cpu_has_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="neither AMX nor AVX512-BF16"):
        TorchEngine(_net(), SGD, device="cpu", amp=True)


def test_amp_is_validated_and_recorded():
    assert load_config({}).train.amp == "auto"
    assert load_config({"train": {"amp": False}}).train.amp is False
    with pytest.raises(ConfigError, match="train.amp.*auto, true or false"):
        load_config({"train": {"amp": "fp16"}})
    with pytest.raises(ConfigError, match="train.amp: true.*only the torch engine"):
        load_config({"train": {"amp": True, "engine": "scratch"}})


def test_fast_options_are_validated():
    with pytest.raises(ConfigError, match="eval.tta"):
        load_config({"eval": {"tta": ["rotate"]}})
    with pytest.raises(ConfigError, match="train.ema"):
        load_config({"train": {"ema": 1.5}})
    with pytest.raises(ConfigError, match="data.augment"):
        load_config({"data": {"augment": ["flip_alternat"]}})


def _bias_group_batches(steps=3, n=16):
    rng = np.random.default_rng(5)
    return [(torch.from_numpy(rng.normal(size=(n, 1, 8, 8))), torch.from_numpy(rng.integers(0, 10, n)))
            for _ in range(steps)]


@pytest.mark.parametrize("engine_name", ["torch", "scratch"])
def test_biases_get_their_own_learning_rate_and_decay(engine_name):
    """optim.bias_lr_scale / bias_weight_decay: the engine's steps equal a torch loop whose
    optimiser has a weights group and a biases group (float64, SGD with nesterov momentum)."""
    cfg = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3,
           "bias_lr_scale": 8.0, "bias_weight_decay": 0.0}
    torch.manual_seed(0)
    reference = models.build("small_cnn", (1, 8, 8), 10, engine="torch").double()
    model = models.build("small_cnn", (1, 8, 8), 10, engine=engine_name).double()
    model.load_state_dict(reference.state_dict())
    engine = (TorchEngine(model, cfg, channels_last=False) if engine_name == "torch"
              else ScratchEngine(model, cfg))
    named = list(reference.named_parameters())
    weights = [p for n, p in named if not n.endswith(".bias")]
    biases = [p for n, p in named if n.endswith(".bias")]
    assert biases and weights
    groups = engine.optimizer.param_groups
    assert [len(g["params"]) for g in groups] == [len(weights), len(biases)]
    assert (groups[1]["lr"], groups[1]["weight_decay"]) == (0.4, 0.0)
    torch_opt = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": 0.4, "weight_decay": 0.0}],
                                lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3)
    engine.train()
    reference.train()
    for x, y in _bias_group_batches():
        engine.train_batch(x, y)
        torch_opt.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        torch_opt.step()
    expected = reference.state_dict()
    for key, value in model.state_dict().items():
        value = value.detach().numpy() if hasattr(value, "detach") else value
        np.testing.assert_allclose(value, expected[key].numpy(), rtol=1e-9, atol=1e-12, err_msg=key)


def test_onecycle_keeps_the_bias_ratio_and_old_configs_keep_one_group():
    from cnnlab.engines.optim import build_scheduler

    model = models.build("small_cnn", (1, 8, 8), 10, engine="torch")
    plain = TorchEngine(model, {"name": "sgd", "lr": 0.1}, channels_last=False)
    assert len(plain.optimizer.param_groups) == 1  # checkpoints of earlier runs still load
    engine = TorchEngine(model, {"name": "sgd", "lr": 0.1, "bias_lr_scale": 4.0}, channels_last=False)
    scheduler = build_scheduler(engine.optimizer, {"name": "onecycle", "max_lr": 0.2}, 10, 2)
    for _ in range(5):
        engine.optimizer.step()
        scheduler.step()
    weights_lr, bias_lr = (g["lr"] for g in engine.optimizer.param_groups)
    assert bias_lr == pytest.approx(4.0 * weights_lr)
    with pytest.raises(ConfigError, match="optim.bias_lr_scale"):
        load_config(overrides={"optim.bias_lr_scale": 0})
    with pytest.raises(ConfigError, match="optim.bias_weight_decay"):
        load_config(overrides={"optim.bias_weight_decay": -1})


@pytest.mark.parametrize("engine_name", ["torch", "scratch"])
def test_lookahead_matches_a_hand_computation(engine_name):
    """optim.lookahead_steps=2, alpha=0.5 around plain SGD: after steps 2 and 4 the weights are
    slow + 0.5 * (fast - slow), computed here with a torch loop."""
    cfg = {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
           "lookahead_steps": 2, "lookahead_alpha": 0.5}
    reference = _net().double()
    ours = _net().double() if engine_name == "torch" else _scratch_twin(reference)
    engine = TorchEngine(ours, cfg, channels_last=False) if engine_name == "torch" else ScratchEngine(ours, cfg)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    slow = {n: p.detach().clone() for n, p in reference.named_parameters()}
    engine.train()
    reference.train()
    for step in range(1, 6):
        x, y = _batch(seed=step)
        engine.train_batch(x.double(), y)
        opt.zero_grad()
        nn.functional.cross_entropy(reference(x.double()), y).backward()
        opt.step()
        if step % 2 == 0:
            with torch.no_grad():
                for n, p in reference.named_parameters():
                    slow[n] += 0.5 * (p - slow[n])
                    p.copy_(slow[n])
    expected = reference.state_dict()
    for key, value in ours.state_dict().items():
        value = value.detach().numpy() if hasattr(value, "detach") else value
        np.testing.assert_allclose(value, expected[key].numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
    assert engine.averaging.lookahead.count == 5
    with pytest.raises(ConfigError, match="optim.lookahead_alpha"):
        load_config(overrides={"optim.lookahead_steps": 5, "optim.lookahead_alpha": 0})


def _scratch_twin(reference):
    from cnnlab import scratch

    twin = scratch.Sequential(scratch.Conv2d(1, 3, 3, padding=1), scratch.BatchNorm2d(3), scratch.ReLU(),
                              scratch.Flatten(), scratch.Linear(48, 2)).to(np.float64)
    twin.load_state_dict(reference.state_dict())
    return twin


def test_weight_averaging_moves_lookahead_first_then_averages_and_round_trips():
    """WeightAveraging on plain arrays: Lookahead (steps 1, alpha 0.5) resets the fast weight
    before the EMA (decay 0.5) averages it; the buffer is averaged but not looked ahead; a
    checkpoint restores both averages and the training weights."""
    from cnnlab.engines.ema import Lookahead, WeightAveraging

    weight, buffer = np.array([0.0]), np.array([2.0])
    parameters = lambda: {"w": weight}  # noqa: E731
    live = lambda: {"w": weight, "b": buffer}  # noqa: E731
    averaging = WeightAveraging(parameters, live, 0.5, Lookahead(parameters(), 1, 0.5))
    weight[...], buffer[...] = 4.0, 6.0  # an optimiser step
    averaging.after_step()
    assert weight[0] == 2.0  # slow 0 + 0.5 * (4 - 0), and the fast weight restarts there
    assert averaging.ema.average["w"][0] == 1.0 and averaging.ema.average["b"][0] == 4.0
    saved = {"model": {"w": weight.copy(), "b": buffer.copy()}, **averaging.checkpoint_entries()}
    averaging.for_evaluation()
    assert weight[0] == 1.0 and buffer[0] == 4.0  # the average is what gets evaluated
    averaging.for_training()
    assert weight[0] == 2.0 and buffer[0] == 6.0
    weight[...], buffer[...] = 9.0, 9.0
    restored = WeightAveraging(parameters, live, 0.5, Lookahead(parameters(), 1, 0.5))

    def load_model(state):
        weight[...], buffer[...] = state["w"], state["b"]

    restored.restore(saved, load_model)
    assert weight[0] == 2.0 and buffer[0] == 6.0  # the training weights, not the average
    assert restored.ema.average["w"][0] == 1.0 and restored.lookahead.slow["w"][0] == 2.0
    plain = WeightAveraging(parameters, live, None, None)
    assert plain.checkpoint_entries() == {}
    plain.restore({"model": {"w": np.array([5.0]), "b": np.array([7.0])}}, load_model)
    assert weight[0] == 5.0 and buffer[0] == 7.0
