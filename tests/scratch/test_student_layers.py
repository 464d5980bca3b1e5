"""`cnnlab check --impl`: a student's own layers graded against torch, with diagnoses.

The planted bugs are one-line edits of examples/student_layers.py (which passes), written into
tmp_path; each must fail with exit code 1 and the diagnosis its pattern calls for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.engines.student_layers import StudentCodeError, load_layers, make_module
from cnnlab.verify.grade import grade

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "student_layers.py"
SOURCE = EXAMPLE.read_text()


def planted(tmp_path, name: str, old: str, new: str) -> Path:
    assert old in SOURCE, old
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE.replace(old, new))
    return path


def test_the_example_passes_every_op_and_exits_0(capsys):
    assert cli.main(["check", "--impl", str(EXAMPLE), "--seed", "11"]) == 0
    out = capsys.readouterr().out
    assert "seed 11" in out and "7/7 ops passed" in out
    for op in ("Conv2d", "MaxPool2d", "ReLU", "Linear", "Flatten", "BatchNorm2d",
               "CrossEntropyLoss"):
        assert any(line.startswith(op) and " pass " in line for line in out.splitlines()), op


def test_cnnlab_s_own_layers_pass_every_battery(tmp_path):
    """The batteries themselves are right: cnnlab's verified ops, given as a student's file."""
    from cnnlab.verify.grade import BATTERIES

    path = tmp_path / "own.py"
    path.write_text("import cnnlab.scratch as scratch\nfrom cnnlab.verify.grade import BATTERIES\n"
                    "LAYERS = {op: getattr(scratch, op) for op in BATTERIES}\n")
    report = grade(path, seed=8)
    assert report["passed"], [row for row in report["ops"] if not row["passed"]]
    assert {row["op"] for row in report["ops"]} == set(BATTERIES)


DROPOUT = """class Dropout:
    def __init__(self, p=0.5, inplace=False):
        self.p = p

    def forward(self, x):
        self.mask = np.random.rand(*x.shape) >= self.p if self.training else np.ones(x.shape)
        return x * self.mask  # the bug: no 1 / (1 - p)

    def backward(self, dout):
        return dout * self.mask
"""

BUGS = {  # name: (op, old line, new line, words the diagnosis must contain)
    "border": ("Conv2d", "xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))",
               "xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode='edge')",
               "only at the padded borders"),
    "transposed": ("Linear", "self.dW = self.x.T @ dout", "self.dW = dout.T @ self.x",
                   "weight gradient is transposed"),
    "wrong_axis": ("Linear", "self.db = dout.sum(axis=0)", "self.db = dout.sum(axis=1)",
                   "bias gradient summed over the wrong axes: it is the sum over (features)"),
    "dgamma_axis": ("BatchNorm2d", "self.dgamma = (dout * self.xhat).sum(axis=axes)",
                    "self.dgamma = (dout * self.xhat).sum(axis=0)",
                    "weight gradient summed over the wrong axes: it is the sum over (N)"),
    "loss_not_averaged": ("CrossEntropyLoss",
                          "return (self.probs - self.wanted) / self.probs.shape[0]",
                          "return self.probs - self.wanted", "off by the batch size N=5"),
    "weight_over_n": ("Linear", "self.dW = self.x.T @ dout",
                      "self.dW = self.x.T @ dout / len(dout)",
                      "1/4 of torch's: off by the batch size"),
    "no_bias_grad": ("Conv2d", "            self.db = dout.sum(axis=(0, 2, 3))", "            pass",
                     "missing bias gradient"),
    "biased_var": ("BatchNorm2d", "+ self.momentum * var * n / (n - 1))",
                   "+ self.momentum * var)", "biased running variance"),
    "eval_batch_stats": ("BatchNorm2d", "        if self.training:\n            mean, var",
                         "        if True:\n            mean, var",
                         "eval mode normalises with the batch statistics"),
    "overflow": ("CrossEntropyLoss", "shifted = logits - logits.max(axis=1, keepdims=True)",
                 "shifted = logits", "the loss is not finite on large logits"),
    "dropout_unscaled": ("Dropout", "class ReLU:", DROPOUT + "\n\nclass ReLU:",
                         "kept values are not scaled by 1/(1-p)"),
    "ties": ("MaxPool2d", "bigger = values > best", "bigger = values >= best",
             "wrong max-pool tie handling: the gradient goes to the last tied maximum"),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_planted_bug_fails_with_its_diagnosis(tmp_path, bug):
    op, old, new, words = BUGS[bug]
    report = grade(planted(tmp_path, bug, old, new), ops=[op], seed=5)
    (row,) = report["ops"]
    assert not row["passed"] and not report["passed"]
    assert any(words in note for note in row["diagnosis"]), row["diagnosis"]
    assert row["first_failure"]["case"]


def test_ties_to_every_maximum_and_the_exit_code(tmp_path, capsys):
    path = planted(tmp_path, "all_ties",
                   "dxp[:, :, rows, cols] += dout * (self.where == position)",
                   "dxp[:, :, rows, cols] += dout * (self.xp[:, :, rows, cols] == self.out)")
    path.write_text(path.read_text().replace("self.where = where\n        return best",
                                             "self.where = where\n        self.xp, self.out = "
                                             "xp, best\n        return best"))
    assert cli.main(["check", "--impl", str(path), "--ops", "MaxPool2d", "--seed", "2"]) == 1
    out = capsys.readouterr().out
    assert "every tied maximum gets the full gradient" in out
    assert "fails only in the cases with ties" in out  # the random cases pass


def test_json_report_has_the_per_op_fields(tmp_path, capsys):
    path = planted(tmp_path, "noisy", "self.mask = x > 0", "print('debug'); self.mask = x > 0")
    assert cli.main(["check", "--impl", str(path), "--ops", "ReLU,Linear", "--seed", "3",
                     "--format", "json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # the student's prints went to stderr
    assert "debug" in captured.err
    assert report["seed"] == 3 and report["passed"] is True
    assert [row["op"] for row in report["ops"]] == ["ReLU", "Linear"]
    for row in report["ops"]:
        assert {"op", "passed", "max_rel_err", "cases", "cases_passed", "first_failure",
                "diagnosis", "error", "seconds"} <= set(row)
        assert row["max_rel_err"] < 1e-12


@pytest.mark.parametrize("name, text, words", [
    ("syntax", SOURCE.replace("def forward(self, x):\n        self.mask",
                              "def forward(self, x)\n        self.mask"),
     "SyntaxError: expected ':' (syntax.py, line"),
    ("missing_import", "import numpyy as np\n" + SOURCE,
     "ModuleNotFoundError: No module named 'numpyy' (missing_import.py, line 1"),
    ("raises", SOURCE + "\nraise RuntimeError('boom')\n", "RuntimeError: boom (raises.py, line"),
])
def test_a_file_that_does_not_import_gets_one_clear_message(tmp_path, capsys, name, text, words):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    assert cli.main(["check", "--impl", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL: Importing your layers file") and words in out
    assert "Traceback" not in out


def test_a_file_that_hangs_on_import_is_stopped(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SOURCE + "\nwhile True:  # a training script left at the top level\n    pass\n")
    with pytest.raises(StudentCodeError, match="did not finish within the time limit of 0.5 s"):
        grade(path, time_limit=0.5)


def test_raising_hanging_and_wrong_shape_ops_get_per_op_messages(tmp_path):
    text = (SOURCE.replace("self.mask = x > 0", "self.mask = x > 0\n        while True:\n"
                           "            pass")
            .replace("return x.reshape(x.shape[0], -1)", "return x.reshape(-1)")
            .replace("self.x = x\n", "self.x = x\n        raise ValueError('my bug')\n"))
    path = tmp_path / "broken.py"
    path.write_text(text)
    report = grade(path, ops=["ReLU", "Flatten", "Linear", "MaxPool2d"], seed=1, time_limit=1.0)
    rows = {row["op"]: row for row in report["ops"]}
    assert rows["ReLU"]["timed_out"] and "time limit of 1 s" in rows["ReLU"]["error"]
    flatten = rows["Flatten"]["error"]
    assert "forward returned shape (120,); torch's Flatten gives (2, 60)" in flatten
    assert rows["Linear"]["error"].startswith("forward raised ValueError: my bug (broken.py, line")
    assert "raise ValueError('my bug')" in rows["Linear"]["error"]
    assert rows["MaxPool2d"]["passed"]  # the hang did not block the others


def test_adapter_maps_other_conventions_and_a_layers_mapping(tmp_path):
    path = tmp_path / "conventions.py"
    path.write_text(f'''
import importlib.util
import numpy as np

spec = importlib.util.spec_from_file_location("plain", {str(EXAMPLE)!r})
plain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plain)


class HwioConv(plain.Conv2d):
    """weight in (kh, kw, in, out), gradients as grad_weight / grad_bias."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight, self.bias = self.W.transpose(2, 3, 1, 0).copy(), self.b
        del self.W, self.b

    def forward(self, x):
        self.W, self.b = self.weight.transpose(3, 2, 0, 1), self.bias
        return super().forward(x)

    def backward(self, dout):
        dx = super().backward(dout)
        self.grad_weight, self.grad_bias = self.dW.transpose(2, 3, 1, 0), self.db
        return dx


class DictLinear:
    """CS231n style: params / grads dicts."""

    def __init__(self, in_features, out_features, bias=True):
        self.params = {{"W": np.zeros((in_features, out_features)), "b": np.zeros(out_features)}}
        self.grads = {{}}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"], self.grads["b"] = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.params["W"].T


class CallRelu:
    def __call__(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * (self.x > 0)


LAYERS = {{"Conv2d": HwioConv, "Linear": DictLinear, "ReLU": CallRelu}}
''')
    layers = load_layers(path)
    assert sorted(layers.classes) == ["Conv2d", "Linear", "ReLU"]  # LAYERS, not the names
    conv = make_module("Conv2d", layers.classes["Conv2d"], 3, 4, 3, path=layers.path)
    assert conv.layouts["weight"].name == "(kh, kw, in, out)"
    assert conv.weight.data.shape == (4, 3, 3, 3)  # cnnlab's side is torch's layout
    report = grade(path, seed=4)
    assert report["passed"], [(r["op"], r["first_failure"], r["diagnosis"]) for r in report["ops"]]


def test_a_file_without_ops_and_a_torch_module_are_refused(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("import numpy as np\n\nclass Helper:\n    pass\n")
    with pytest.raises(StudentCodeError, match="defines no class named like a torch.nn op"):
        load_layers(empty)
    assert cli.main(["check", "--impl", str(tmp_path / "absent.py")]) == 2
    assert cli.main(["check", "--impl", str(EXAMPLE), "--ops", "Conv2x"]) == 2


def test_the_adapter_trains_through_a_cnnlab_optimizer():
    """An SGD step on the adapter's Parameters is what the student's forward sees next."""
    from cnnlab.scratch import optim

    layers = load_layers(EXAMPLE)
    linear = make_module("Linear", layers.classes["Linear"], 4, 3, path=layers.path)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    before = linear.forward(x)
    linear.backward(np.ones_like(before))
    sgd = optim.SGD(linear.parameters(), lr=0.1)
    sgd.step()
    expected = x @ linear.weight.data.T + linear.bias.data
    assert np.allclose(linear.forward(x), expected, atol=1e-6)
    assert not np.allclose(linear.forward(x), before)
    assert set(linear.state_dict()) == {"weight", "bias"}
