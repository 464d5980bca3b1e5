"""`cnnlab check`: the parity table on random shapes and its exit code."""

from __future__ import annotations

import math

from cnnlab import cli
from cnnlab.verify import check
from cnnlab.scratch import random as scratch_random

LAYER_OPS = {"Conv2d", "ConvTranspose2d", "Linear", "MaxPool2d", "AvgPool2d",
             "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Sigmoid",
             "Tanh", "Flatten", "BasicBlock", "Dropout", "RoIPool", "GELU", "SiLU", "Softmax",
             "LogSoftmax", "LayerNorm", "GroupNorm", "AdaptiveMaxPool2d", "Dropout2d", "Upsample"}


def test_run_checks_covers_every_op_and_passes():
    before = scratch_random.get_state()
    rows = check.run_checks(seed=7)
    assert scratch_random.get_state() == before  # the user's generator is left alone
    assert LAYER_OPS <= {row["op"] for row in rows}
    assert {"CrossEntropyLoss", "MSELoss", "NLLLoss", "BCEWithLogitsLoss"} <= {row["op"] for row in rows}
    cases = " | ".join(row["case"] for row in rows)
    for edge in ("train (mask from the output)", "reduction=none", "pos_weight", "ignore_index=0",
                 "elementwise_affine=False", "mode='bilinear'"):
        assert edge in cases
    for row in rows:
        assert row["passed"], row
        assert 0 <= row["forward_err"] < check.TOLERANCE
        assert 0 <= row["backward_err"] < check.TOLERANCE
    # the same seed draws the same shapes
    assert [r["case"] for r in check.run_checks(seed=7)] == [r["case"] for r in rows]


def test_format_table_lists_each_row_and_marks_failures():
    rows = [{"op": "Conv2d", "case": "input (1, 1, 4, 4)", "forward_err": 1e-16,
             "backward_err": 2e-16, "passed": True},
            {"op": "Tanh", "case": "input (2, 3)", "forward_err": 0.5, "backward_err": math.inf,
             "passed": False}]
    table = check.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["op", "forward"]
    assert "Conv2d" in lines[2] and "1.00e-16" in lines[2] and "pass" in lines[2]
    assert "Tanh" in lines[3] and "5.00e-01" in lines[3] and "FAIL" in lines[3]
    assert lines[-1].startswith("1/2 checks passed")


def test_cli_exit_code_is_1_when_a_check_fails(capsys, monkeypatch):
    assert cli.main(["check", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "checks passed" in out and "FAIL" not in out
    monkeypatch.setattr(check, "TOLERANCE", 0.0)  # nothing is exact enough now
    assert cli.main(["check", "--seed", "3"]) == 1
    assert "FAIL" in capsys.readouterr().out
