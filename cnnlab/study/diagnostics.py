"""Plain-language diagnostics of learning curves, each backed by the numbers that triggered it.

Every check takes the per-epoch metrics of one run (rows as in `metrics.csv`: `train_loss`,
`train_acc`, `val_loss`, `val_acc`) and returns a `Finding` or None. Thresholds live in one
frozen `Thresholds` object so a caller can tighten or loosen them in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

KINDS = ("divergence", "overfitting", "oscillation", "plateau", "underfitting")


@dataclass(frozen=True)
class Thresholds:
    # overfitting: val-loss minimum this early (fraction of the epochs) and train loss falling
    overfit_min_before: float = 0.75
    overfit_val_rise: float = 0.05  # final val loss this much (relative) above its minimum
    overfit_train_drop: float = 0.10  # train loss fell by this fraction after the val minimum
    overfit_gap: float = 0.05  # final train acc - val acc
    # oscillation: val loss changes direction often and moves much more than its net change
    oscillation_min_epochs: int = 5
    oscillation_reversal_fraction: float = 0.5
    oscillation_path_ratio: float = 3.0
    # plateau: no val-accuracy improvement larger than min_delta for `patience` epochs
    plateau_patience: int = 3
    plateau_min_delta: float = 0.002
    # underfitting: final train accuracy below this
    underfit_train_acc: float = 0.70
    # divergence: train loss this many times its first-epoch value
    divergence_factor: float = 3.0


DEFAULT = Thresholds()


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    summary: str  # what the curves show, with the numbers
    advice: str  # what to try
    evidence: dict = field(default_factory=dict)  # the numbers that triggered it

    def to_dict(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "advice": self.advice, "evidence": dict(self.evidence)}


def _column(rows: Sequence[Mapping], key: str) -> list[float]:
    return [float(r[key]) for r in rows if key in r and r[key] is not None and r[key] != ""]


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def divergence(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> Finding | None:
    """NaN/inf in a loss, or train loss exploding to `divergence_factor` x its first value."""
    for key in ("train_loss", "val_loss"):
        values = _column(rows, key)
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            epoch = int(rows[bad[0]].get("epoch", bad[0] + 1))
            return Finding(
                "divergence",
                f"{key} became {values[bad[0]]} at epoch {epoch}",
                "lower the learning rate (try 3-10x lower), add warm-up or gradient clipping, "
                "and check the input normalisation",
                {"metric": key, "epoch": epoch, "value": str(values[bad[0]])},
            )
    train = _column(rows, "train_loss")
    if len(train) >= 2 and train[0] > 0:
        peak = max(train[1:])
        if peak > th.divergence_factor * train[0]:
            epoch = int(rows[1 + train[1:].index(peak)].get("epoch", 0))
            return Finding(
                "divergence",
                f"train loss exploded from {train[0]:.3g} (epoch 1) to {peak:.3g} (epoch {epoch})",
                "lower the learning rate, add warm-up or gradient clipping",
                {"first_train_loss": train[0], "peak_train_loss": peak, "epoch": epoch,
                 "factor": peak / train[0]},
            )
    return None


def overfitting(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> Finding | None:
    """Val loss bottoms out well before the end while train loss keeps falling, or a large gap."""
    train_loss, val_loss = _column(rows, "train_loss"), _column(rows, "val_loss")
    train_acc, val_acc = _column(rows, "train_acc"), _column(rows, "val_acc")
    n = len(val_loss)
    if n >= 3 and len(train_loss) == n and _finite(val_loss + train_loss):
        best = min(range(n), key=val_loss.__getitem__)
        val_rise = (val_loss[-1] - val_loss[best]) / max(abs(val_loss[best]), 1e-12)
        train_drop = (train_loss[best] - train_loss[-1]) / max(abs(train_loss[best]), 1e-12)
        if (
            best + 1 <= th.overfit_min_before * n
            and val_rise >= th.overfit_val_rise
            and train_drop >= th.overfit_train_drop
        ):
            return Finding(
                "overfitting",
                f"val loss was lowest at epoch {best + 1} of {n} ({val_loss[best]:.3f}) and rose "
                f"{val_rise:.0%} to {val_loss[-1]:.3f}, while train loss kept falling "
                f"{train_drop:.0%} to {train_loss[-1]:.3f}",
                "keep the best checkpoint (early stopping), add augmentation, weight decay or "
                "dropout, or use more data",
                {"val_loss_min_epoch": best + 1, "epochs": n, "val_loss_min": val_loss[best],
                 "val_loss_final": val_loss[-1], "val_loss_rise": val_rise,
                 "train_loss_drop_after_min": train_drop},
            )
    # a gap means overfitting only once the training set is learned; below that it is noise
    # (dropout active in train mode, a small val split) and the underfitting check speaks
    if train_acc and val_acc and _finite(train_acc[-1:] + val_acc[-1:]) and train_acc[-1] >= th.underfit_train_acc:
        gap = train_acc[-1] - val_acc[-1]
        if gap > th.overfit_gap:
            return Finding(
                "overfitting",
                f"final train accuracy {train_acc[-1]:.1%} is {gap * 100:.1f} points above val "
                f"accuracy {val_acc[-1]:.1%}",
                "add augmentation, weight decay or dropout, or use more data",
                {"train_acc_final": train_acc[-1], "val_acc_final": val_acc[-1], "gap": gap},
            )
    return None


def oscillation(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> Finding | None:
    """Val loss keeps changing direction and moves much more than its net trend."""
    val = _column(rows, "val_loss")
    if len(val) < th.oscillation_min_epochs or not _finite(val):
        return None
    steps = [b - a for a, b in zip(val, val[1:])]
    reversals = sum(1 for s, t in zip(steps, steps[1:]) if s * t < 0)
    reversal_fraction = reversals / (len(steps) - 1)
    path = math.fsum(abs(s) for s in steps)
    net = abs(val[-1] - val[0])
    ratio = min(path / max(net, 1e-12), 999.0)  # capped: a zero net change is just "very high"
    if reversal_fraction >= th.oscillation_reversal_fraction and ratio >= th.oscillation_path_ratio:
        return Finding(
            "oscillation",
            f"val loss changed direction {reversals} times in {len(steps)} steps; it moved "
            f"{path:.3f} in total against a net change of {net:.3f} ({ratio:.1f}x)",
            "lower the learning rate or use a decaying schedule (step, cosine); a larger batch "
            "also smooths the updates",
            {"reversals": reversals, "steps": len(steps), "reversal_fraction": reversal_fraction,
             "total_movement": path, "net_change": net, "ratio": ratio},
        )
    return None


def plateau(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> Finding | None:
    """No val-accuracy improvement above `plateau_min_delta` for the last `patience` epochs."""
    val = _column(rows, "val_acc")
    if len(val) < th.plateau_patience + 2 or not _finite(val):
        return None
    best_epoch, best = 0, val[0]
    for i, v in enumerate(val[1:], start=1):
        if v > best + th.plateau_min_delta:
            best_epoch, best = i, v
    stalled = len(val) - 1 - best_epoch
    if stalled >= th.plateau_patience:
        return Finding(
            "plateau",
            f"val accuracy last improved at epoch {best_epoch + 1} ({best:.1%}) and did not "
            f"improve by more than {th.plateau_min_delta * 100:.1f} points in the {stalled} "
            f"epochs after it",
            "decay the learning rate (step or cosine schedule) or stop early to save time",
            {"best_epoch": best_epoch + 1, "best_val_acc": best, "epochs_without_improvement": stalled,
             "min_delta": th.plateau_min_delta},
        )
    return None


def underfitting(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> Finding | None:
    """Final train accuracy below `underfit_train_acc`."""
    train = _column(rows, "train_acc")
    if not train or not math.isfinite(train[-1]):
        return None
    if train[-1] < th.underfit_train_acc:
        return Finding(
            "underfitting",
            f"final train accuracy is only {train[-1]:.1%} (below {th.underfit_train_acc:.0%})",
            "train longer, raise the learning rate, use a wider or deeper model, or check the "
            "normalisation and labels",
            {"train_acc_final": train[-1], "threshold": th.underfit_train_acc},
        )
    return None


CHECKS: dict[str, Callable[[Sequence[Mapping], Thresholds], Finding | None]] = {
    "divergence": divergence,
    "overfitting": overfitting,
    "oscillation": oscillation,
    "plateau": plateau,
    "underfitting": underfitting,
}


def diagnose(rows: Sequence[Mapping], th: Thresholds = DEFAULT) -> list[Finding]:
    """All findings for one run's metrics. A diverged run is reported only as divergence,
    since its other curves say nothing once the loss is NaN."""
    found = divergence(rows, th)
    if found is not None:
        return [found]
    return [f for name, check in CHECKS.items() if name != "divergence" for f in [check(rows, th)] if f]
