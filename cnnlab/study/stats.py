"""Statistics for comparing runs over seeds: mean, sample std, Welch's t-test and its CI.

Pure functions on plain sequences of floats. scipy is used for the Student t distribution when
it is importable; otherwise the regularized incomplete beta function below is used (scipy is a
test dependency only, and the tests check one against the other).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

ALPHA = 0.05


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for an empty sequence."""
    values = [float(v) for v in values]
    return math.fsum(values) / len(values) if values else math.nan


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); NaN when n < 2."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


# --- Student t distribution -------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1, accurate to about 1e-12."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # the continued fraction converges fast only on one side of the mean a / (a + b)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_two_sided_p_pure(t: float, df: float) -> float:
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def _t_ppf_pure(q: float, df: float) -> float:
    """Quantile of Student's t for q in (0.5, 1), by bisection on the two-sided tail."""
    target = 2.0 * (1.0 - q)  # two-sided tail probability beyond the quantile
    lo, hi = 0.0, 1.0
    while _t_two_sided_p_pure(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_sided_p_pure(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_two_sided_p(t: float, df: float, use_scipy: bool = True) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom (df may be fractional)."""
    if math.isnan(t) or math.isnan(df):
        return math.nan
    if math.isinf(t):
        return 0.0
    if use_scipy:
        try:
            from scipy import stats as scipy_stats
        except ImportError:
            pass
        else:
            return float(2.0 * scipy_stats.t.sf(abs(t), df))
    return _t_two_sided_p_pure(t, df)


def t_ppf(q: float, df: float, use_scipy: bool = True) -> float:
    """The q-quantile of Student's t, for 0.5 < q < 1."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"t_ppf supports 0.5 < q < 1, got {q}")
    if use_scipy:
        try:
            from scipy import stats as scipy_stats
        except ImportError:
            pass
        else:
            return float(scipy_stats.t.ppf(q, df))
    return _t_ppf_pure(q, df)


# --- Welch's t-test ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Candidate minus baseline: difference of means, Welch's test and the CI of the difference."""

    n_candidate: int
    n_baseline: int
    mean_candidate: float
    mean_baseline: float
    difference: float
    t: float
    df: float
    p: float
    ci_low: float
    ci_high: float
    confidence: float

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p)

    @property
    def significant(self) -> bool:
        return self.testable and self.p < 1.0 - self.confidence

    def to_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def welch(
    candidate: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    use_scipy: bool = True,
) -> Comparison:
    """Welch's unequal-variance t-test of mean(candidate) - mean(baseline), two-sided.

    df follows Welch–Satterthwaite; the CI of the difference uses the same df. With fewer than
    two values on either side nothing can be tested and t, df, p and the CI are NaN. When both
    samples have zero variance the test is degenerate: p is 1 for equal means and 0 otherwise.
    """
    a = [float(v) for v in candidate]
    b = [float(v) for v in baseline]
    na, nb = len(a), len(b)
    ma, mb = mean(a), mean(b)
    diff = ma - mb
    nan = math.nan
    if na < 2 or nb < 2:
        return Comparison(na, nb, ma, mb, diff, nan, nan, nan, nan, nan, confidence)
    va, vb = sample_std(a) ** 2 / na, sample_std(b) ** 2 / nb
    se2 = va + vb
    if se2 == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return Comparison(na, nb, ma, mb, diff, t, float(na + nb - 2), p, diff, diff, confidence)
    se = math.sqrt(se2)
    t = diff / se
    df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    p = t_two_sided_p(t, df, use_scipy=use_scipy)
    half = t_ppf(0.5 + confidence / 2.0, df, use_scipy=use_scipy) * se
    return Comparison(na, nb, ma, mb, diff, t, df, p, diff - half, diff + half, confidence)


def _n_text(c: Comparison) -> str:
    return f"n={c.n_candidate}" if c.n_candidate == c.n_baseline else f"n={c.n_candidate} vs {c.n_baseline}"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def describe(c: Comparison, scale: float = 100.0, unit: str = " points") -> str:
    """One honest sentence about a comparison, e.g. 'no significant difference at n=3 (p=0.41)'.

    `scale` and `unit` format the difference (accuracy in [0, 1] -> percentage points).
    """
    if not c.testable and min(c.n_candidate, c.n_baseline) == 0:
        return f"nothing to compare: no completed runs on one side ({_n_text(c)})"
    if not c.testable:
        return (
            f"cannot be tested: Welch's test needs at least 2 runs on each side "
            f"({_n_text(c)}); difference {c.difference * scale:+.2f}{unit} from single runs"
        )
    level = f"{c.confidence:.0%}"
    ci = f"{level} CI {c.ci_low * scale:+.2f} to {c.ci_high * scale:+.2f}{unit}"
    if not c.significant:
        return (
            f"no significant difference at {_n_text(c)} ({_p_text(c.p)}); "
            f"difference {c.difference * scale:+.2f}{unit}, {ci}, which includes zero"
        )
    direction = "higher" if c.difference > 0 else "lower"
    return (
        f"{abs(c.difference) * scale:.2f}{unit} {direction} than the baseline at "
        f"{_n_text(c)} ({_p_text(c.p)}; {ci})"
    )


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """'98.12 ± 0.31' for n >= 2, the single value for n = 1, '—' for none."""
    if not values:
        return "—"
    m = mean(values) * scale
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sample_std(values) * scale:.{digits}f}"
