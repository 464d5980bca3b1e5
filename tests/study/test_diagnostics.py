import math

from cnnlab.study import diagnostics as dg


def rows(train_loss, val_loss, train_acc, val_acc):
    return [
        {"epoch": i + 1, "train_loss": tl, "val_loss": vl, "train_acc": ta, "val_acc": va}
        for i, (tl, vl, ta, va) in enumerate(zip(train_loss, val_loss, train_acc, val_acc))
    ]


def healthy(n=8):
    return rows([1 / (e + 1) for e in range(n)], [1.1 / (e + 1) + 0.05 for e in range(n)],
                [0.80 + 0.02 * e for e in range(n)], [0.79 + 0.02 * e for e in range(n)])


def kinds(metrics):
    return [f.kind for f in dg.diagnose(metrics)]


def test_healthy_curves_have_no_findings():
    assert kinds(healthy()) == []


def test_overfitting_val_loss_turns_up_while_train_loss_falls():
    m = rows([1.0, 0.6, 0.4, 0.3, 0.2, 0.12, 0.08, 0.05], [0.9, 0.6, 0.5, 0.55, 0.62, 0.7, 0.8, 0.9],
             [0.8, 0.86, 0.9, 0.92, 0.94, 0.96, 0.97, 0.98], [0.8, 0.85, 0.87, 0.87, 0.87, 0.87, 0.871, 0.872])
    finding = dg.overfitting(m)
    assert finding is not None
    assert finding.evidence["val_loss_min_epoch"] == 3
    assert finding.evidence["val_loss_final"] == 0.9
    assert "epoch 3 of 8" in finding.summary and "early stopping" in finding.advice


def test_overfitting_large_train_val_gap():
    m = healthy()
    m[-1] = {**m[-1], "train_acc": 0.99, "val_acc": 0.90}
    finding = dg.overfitting(m)
    assert finding is not None and finding.evidence["gap"] == 0.99 - 0.90


def test_oscillation_zigzag_val_loss():
    m = rows([1 / (e + 1) for e in range(8)], [0.9, 0.5, 0.85, 0.45, 0.8, 0.5, 0.82, 0.48],
             [0.9] * 8, [0.85] * 8)
    finding = dg.oscillation(m)
    assert finding is not None
    assert finding.evidence["reversals"] == 6 and finding.evidence["ratio"] > 3
    assert "learning rate" in finding.advice
    assert dg.oscillation(healthy()) is None


def test_plateau_no_val_improvement():
    m = rows([1 / (e + 1) for e in range(9)], [0.5] * 9, [0.95] * 9,
             [0.80, 0.85, 0.88, 0.881, 0.879, 0.880, 0.882, 0.881, 0.880])
    finding = dg.plateau(m)
    assert finding is not None
    assert finding.evidence["best_epoch"] == 3 and finding.evidence["epochs_without_improvement"] == 6
    assert "decay" in finding.advice
    assert dg.plateau(healthy()) is None


def test_underfitting_low_train_accuracy():
    m = rows([2.0, 1.9, 1.85, 1.8], [2.0, 1.95, 1.9, 1.88], [0.3, 0.35, 0.38, 0.4], [0.3, 0.34, 0.37, 0.39])
    finding = dg.underfitting(m)
    assert finding is not None and finding.evidence["train_acc_final"] == 0.4
    assert dg.underfitting(healthy()) is None


def test_divergence_nan_is_the_only_finding():
    m = healthy(5)
    m[3] = {**m[3], "train_loss": math.nan, "val_loss": math.nan, "train_acc": 0.1}
    found = dg.diagnose(m)
    assert [f.kind for f in found] == ["divergence"]
    assert found[0].evidence == {"metric": "train_loss", "epoch": 4, "value": "nan"}


def test_divergence_exploding_loss():
    m = rows([1.0, 0.8, 2.5, 9.0], [1.0, 0.9, 2.0, 8.0], [0.5, 0.6, 0.3, 0.1], [0.5, 0.55, 0.3, 0.1])
    finding = dg.divergence(m)
    assert finding is not None and finding.evidence["factor"] == 9.0 and finding.evidence["epoch"] == 4


def test_thresholds_are_adjustable():
    m = healthy()
    assert dg.underfitting(m, dg.Thresholds(underfit_train_acc=0.99)) is not None
