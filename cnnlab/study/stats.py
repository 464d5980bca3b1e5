"""Statistics for comparing runs over seeds: mean, sample std, Welch's and paired t-tests with
their CIs, contrasts of several means (factor effects, interactions), Holm's adjustment and power.

Pure functions on plain sequences of floats. For the central Student t distribution scipy is
used when importable, otherwise the regularized incomplete beta function below (the tests check
one against the other). Power needs the noncentral t distribution, which has no short closed
form; it comes from scipy, a runtime dependency (see pyproject.toml for why).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
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


WELCH, PAIRED, CONTRAST = "welch", "paired", "contrast"
TEST_NAMES = {WELCH: "Welch's t-test", PAIRED: "paired t-test", CONTRAST: "Welch–Satterthwaite contrast"}


@dataclass(frozen=True)
class Comparison:
    """Candidate minus baseline: difference of means, the test and the CI of the difference.

    `test` says which test: `welch` (independent samples), `paired` (per-seed differences of
    runs that share seeds; n_candidate = n_baseline = the number of pairs) or `contrast` (a
    weighted sum of independent means; the n are the smallest sample on each side).
    `effect_size` is Cohen's d (difference over the pooled sample std) for Welch and contrasts,
    d_z (mean over std of the per-seed differences) for paired tests; `effect_size_kind` names it.
    `spread` is the std that power calculations use: pooled std, or std of the differences.
    `p_adjusted` is the Holm-adjusted p within a family of comparisons, NaN until adjusted.
    """

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
    test: str = WELCH
    effect_size: float = math.nan
    effect_size_kind: str = "d"
    spread: float = math.nan
    p_adjusted: float = math.nan

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p)

    @property
    def adjusted(self) -> bool:
        return not math.isnan(self.p_adjusted)

    @property
    def decision_p(self) -> float:
        """The p-value a verdict rests on: Holm-adjusted when adjusted, else the raw p."""
        return self.p_adjusted if self.adjusted else self.p

    @property
    def significant(self) -> bool:
        return self.testable and self.decision_p < 1.0 - self.confidence

    @property
    def n_min(self) -> int:
        return min(self.n_candidate, self.n_baseline)

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
    pooled = pooled_std(a, b)
    d = _ratio(diff, pooled)
    se2 = va + vb
    if se2 == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return Comparison(na, nb, ma, mb, diff, t, float(na + nb - 2), p, diff, diff, confidence,
                          WELCH, d, "d", pooled)
    se = math.sqrt(se2)
    t = diff / se
    df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    p = t_two_sided_p(t, df, use_scipy=use_scipy)
    half = t_ppf(0.5 + confidence / 2.0, df, use_scipy=use_scipy) * se
    return Comparison(na, nb, ma, mb, diff, t, df, p, diff - half, diff + half, confidence, WELCH, d, "d", pooled)


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """sqrt(((na-1) sa^2 + (nb-1) sb^2) / (na + nb - 2)): the std in Cohen's d; NaN when na + nb < 3."""
    na, nb = len(a), len(b)
    if na + nb < 3:
        return math.nan
    ss = sum((len(x) - 1) * sample_std(x) ** 2 for x in (a, b) if len(x) >= 2)
    return math.sqrt(ss / (na + nb - 2))


def _ratio(x: float, y: float) -> float:
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if y == 0.0:
        return 0.0 if x == 0.0 else math.copysign(math.inf, x)
    return x / y


def paired(
    candidate: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    use_scipy: bool = True,
) -> Comparison:
    """Paired t-test of candidate[i] - baseline[i] (runs with the same seed), two-sided, df = n - 1.

    The effect size is d_z: the mean difference over the std of the differences. Fewer than two
    pairs cannot be tested (NaN). Zero spread in the differences is degenerate as in `welch`.
    """
    a = [float(v) for v in candidate]
    b = [float(v) for v in baseline]
    if len(a) != len(b):
        raise ValueError(f"paired needs two sequences of the same length (one value per seed), got {len(a)} and {len(b)}")
    n = len(a)
    diffs = [x - y for x, y in zip(a, b)]
    diff = mean(diffs)
    nan = math.nan
    if n < 2:
        return Comparison(n, n, mean(a), mean(b), diff, nan, nan, nan, nan, nan, confidence, PAIRED, nan, "d_z")
    sd = sample_std(diffs)
    t, df, p, low, high = _one_sample_t(diff, sd / math.sqrt(n), n - 1.0, confidence, use_scipy)
    return Comparison(n, n, mean(a), mean(b), diff, t, df, p, low, high, confidence, PAIRED, _ratio(diff, sd), "d_z", sd)


def _one_sample_t(estimate: float, se: float, df: float, confidence: float, use_scipy: bool = True):
    """(t, df, p, ci_low, ci_high) for an estimate with standard error `se` on `df` degrees of freedom."""
    if se == 0.0:
        t = 0.0 if estimate == 0.0 else math.copysign(math.inf, estimate)
        return t, df, (1.0 if estimate == 0.0 else 0.0), estimate, estimate
    t = estimate / se
    p = t_two_sided_p(t, df, use_scipy=use_scipy)
    half = t_ppf(0.5 + confidence / 2.0, df, use_scipy=use_scipy) * se
    return t, df, p, estimate - half, estimate + half


def contrast(
    terms: Sequence[tuple[float, Sequence[float]]],
    confidence: float = 0.95,
    use_scipy: bool = True,
) -> Comparison:
    """Test of sum_j w_j * mean(x_j) = 0 for independent samples x_j, two-sided.

    `terms` are (weight, values) pairs, e.g. [(+0.5, a1), (-0.5, b1), (+0.5, a2), (-0.5, b2)] for
    an effect averaged over two cells, or (+1, -1, -1, +1) for a 2x2 interaction. The variance is
    sum_j w_j^2 s_j^2 / n_j with Welch–Satterthwaite df, the k-sample form of Welch's test. With
    two terms of weight +1 and -1 it equals `welch`. Every sample needs at least two values.
    `mean_candidate` / `mean_baseline` are the weighted sums of the positive / negative terms.
    """
    samples = [(float(w), [float(v) for v in values]) for w, values in terms if w != 0.0]
    estimate = math.fsum(w * mean(x) for w, x in samples)
    positive = math.fsum(w * mean(x) for w, x in samples if w > 0)
    negative = -math.fsum(w * mean(x) for w, x in samples if w < 0)
    n_pos = min((len(x) for w, x in samples if w > 0), default=0)
    n_neg = min((len(x) for w, x in samples if w < 0), default=0)
    nan = math.nan
    if not samples or min(len(x) for _, x in samples) < 2:
        return Comparison(n_pos, n_neg, positive, negative, estimate, nan, nan, nan, nan, nan, confidence, CONTRAST)
    parts = [w * w * sample_std(x) ** 2 / len(x) for w, x in samples]
    dfs = [len(x) - 1 for _, x in samples]
    pooled = math.sqrt(math.fsum((len(x) - 1) * sample_std(x) ** 2 for _, x in samples) / sum(dfs))
    # Cohen's d of a contrast: the estimate in units of the pooled within-sample std
    d = _ratio(estimate, pooled)
    se2 = math.fsum(parts)
    if se2 == 0.0:
        t, df, p, low, high = _one_sample_t(estimate, 0.0, float(sum(dfs)), confidence, use_scipy)
    else:
        df = se2**2 / math.fsum(v * v / k for v, k in zip(parts, dfs) if v > 0)
        t, df, p, low, high = _one_sample_t(estimate, math.sqrt(se2), df, confidence, use_scipy)
    return Comparison(n_pos, n_neg, positive, negative, estimate, t, df, p, low, high, confidence,
                      CONTRAST, d, "d", pooled)


def one_sample(
    values: Sequence[float], confidence: float = 0.95, use_scipy: bool = True, *, kind: str = PAIRED,
) -> Comparison:
    """Test of mean(values) = 0 where each value is one seed's contrast (e.g. its average
    difference over several cells); reported as a paired test with d_z, n = the number of seeds."""
    x = [float(v) for v in values]
    n = len(x)
    estimate = mean(x)
    nan = math.nan
    if n < 2:
        return Comparison(n, n, estimate, 0.0, estimate, nan, nan, nan, nan, nan, confidence, kind, nan, "d_z")
    sd = sample_std(x)
    t, df, p, low, high = _one_sample_t(estimate, sd / math.sqrt(n), n - 1.0, confidence, use_scipy)
    return Comparison(n, n, estimate, 0.0, estimate, t, df, p, low, high, confidence, kind, _ratio(estimate, sd), "d_z", sd)


# --- multiple testing -------------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    The k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) p_(j)), so
    rejecting where the adjusted p < alpha controls the family-wise error rate at alpha. NaN
    entries (comparisons that could not be tested) are not part of the family and stay NaN.
    """
    ps = [float(p) for p in pvalues]
    tested = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with `p_adjusted` set by Holm's method over all of them as one family."""
    adjusted = holm([c.p for c in comparisons])
    return [replace(c, p_adjusted=q) for c, q in zip(comparisons, adjusted)]


# --- power ------------------------------------------------------------------------------------

POWER = 0.8


def _noncentrality_and_df(effect: float, n: int, design: str, n_other: int | None) -> tuple[float, float]:
    if design == PAIRED:
        return effect * math.sqrt(n), n - 1.0
    m = n if n_other is None else n_other
    return effect * math.sqrt(n * m / (n + m)), n + m - 2.0


def power_at(noncentrality: float, df: float, alpha: float = ALPHA) -> float:
    """Probability that a two-sided t-test at `alpha` with `df` degrees of freedom rejects when its
    statistic follows the noncentral t with this noncentrality (true difference / its standard error)."""
    from scipy import stats as scipy_stats

    if not df >= 1:
        return math.nan
    crit = scipy_stats.t.ppf(1.0 - alpha / 2.0, df)
    ncp = abs(noncentrality)  # power is symmetric in the sign of the effect
    # the far tail (rejecting in the wrong direction) is tiny; scipy's nct.cdf returns NaN for it
    # at large noncentrality and few df, where it is below 1e-10, so it counts as 0 there
    wrong_way = float(scipy_stats.nct.cdf(-crit, df, ncp))
    return float(scipy_stats.nct.sf(crit, df, ncp)) + (0.0 if math.isnan(wrong_way) else wrong_way)


def power(effect: float, n: int, design: str = PAIRED, n_other: int | None = None, alpha: float = ALPHA) -> float:
    """Probability that a two-sided t-test at `alpha` rejects when the true standardized effect
    is `effect` (difference / std): noncentral t with df = n - 1 and noncentrality d sqrt(n) for
    a paired test (n pairs), df = n + m - 2 and d sqrt(nm / (n + m)) for two independent samples
    (equal variances assumed, which is what a power calculation can use from the observed spread).
    """
    ncp, df = _noncentrality_and_df(effect, n, design, n_other)
    return power_at(ncp, df, alpha)


@functools.lru_cache(maxsize=256)  # a report asks for the same few df many times; each is a root search
def detectable_noncentrality(df: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """The noncentrality at which a two-sided t-test on `df` degrees of freedom has power `target`."""
    from scipy.optimize import brentq

    if not df >= 1:
        return math.nan
    hi = 1.0
    while power_at(hi, df, alpha) < target:
        hi *= 2.0
    return float(brentq(lambda ncp: power_at(ncp, df, alpha) - target, 0.0, hi, xtol=1e-10))


def detectable_effect(n: int, design: str = PAIRED, n_other: int | None = None, alpha: float = ALPHA,
                      target: float = POWER) -> float:
    """The smallest standardized effect (difference / std) detected with probability `target`."""
    per_unit, df = _noncentrality_and_df(1.0, n, design, n_other)
    return detectable_noncentrality(df, alpha, target) / per_unit


def detectable_difference(spread: float, n: int, design: str = PAIRED, n_other: int | None = None,
                          alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest difference (in the units of `spread`) detectable at `target` power with this
    spread and n: detectable_effect x spread. NaN when the spread is unknown."""
    if math.isnan(spread) or spread < 0:
        return math.nan
    return detectable_effect(n, design, n_other, alpha, target) * spread


def n_needed(difference: float, spread: float, design: str = PAIRED, alpha: float = ALPHA,
             target: float = POWER, n_max: int = 100_000) -> int | None:
    """The smallest n (pairs for a paired test, runs per side for two samples) at which a true
    `difference` is detected with probability `target`, given `spread`; None beyond `n_max` or
    when the spread is unknown. Zero spread needs the minimum, 2."""
    if math.isnan(spread) or difference == 0.0:
        return None
    if spread == 0.0:
        return 2
    effect = abs(difference) / spread

    def enough(n: int) -> bool:
        return power(effect, n, design, None, alpha) >= target

    lo, hi = 2, 2
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > n_max:
            return None
    while lo < hi:  # the smallest n in (lo, hi] that is enough; power rises with n
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


MIN_RUNS_FOR_CI = 3  # at n <= 2 a t interval is too wide to read (t_0.975 at df=1 is 12.7)


def _n_text(c: Comparison) -> str:
    if c.test == PAIRED:
        return f"n={c.n_candidate} paired seeds"
    return f"n={c.n_candidate}" if c.n_candidate == c.n_baseline else f"n={c.n_candidate} vs {c.n_baseline}"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _ps_text(c: Comparison) -> str:
    """'p=0.021' or 'p=0.021, Holm-adjusted p=0.063'."""
    text = _p_text(c.p)
    if c.adjusted:
        text += ", Holm-adjusted " + _p_text(c.p_adjusted)
    return text


def too_few_runs(c: Comparison) -> bool:
    """True when either side has fewer than MIN_RUNS_FOR_CI runs: warn instead of a CI."""
    return c.n_min < MIN_RUNS_FOR_CI


def describe(c: Comparison, scale: float = 100.0, unit: str = " points", reference: str = "the baseline") -> str:
    """One honest sentence about a comparison, e.g. 'no significant difference at n=3 (p=0.41)'.

    `scale` and `unit` format the difference (accuracy in [0, 1] -> percentage points). The
    verdict rests on the Holm-adjusted p when the comparison has one. At n <= 2 on either side
    the sentence is a warning, not a conclusion.
    """
    if not c.testable and c.n_min == 0:
        return f"nothing to compare: no completed runs on one side ({_n_text(c)})"
    if not c.testable:
        return (
            f"cannot be tested: a t-test needs at least 2 runs on each side "
            f"({_n_text(c)}); difference {c.difference * scale:+.2f}{unit} from single runs"
        )
    if too_few_runs(c):
        return (
            f"too few runs to conclude: {_n_text(c)} ({_ps_text(c)}); difference "
            f"{c.difference * scale:+.2f}{unit}, but at n={c.n_min} the 95% CI is too wide to mean "
            f"anything; run at least {MIN_RUNS_FOR_CI} seeds"
        )
    level = f"{c.confidence:.0%}"
    ci = f"{level} CI {c.ci_low * scale:+.2f} to {c.ci_high * scale:+.2f}{unit}"
    if not c.significant:
        return (
            f"no significant difference at {_n_text(c)} ({_ps_text(c)}); "
            f"difference {c.difference * scale:+.2f}{unit}, {ci}"
            + (", which includes zero" if c.ci_low <= 0.0 <= c.ci_high else "")
        )
    direction = "higher" if c.difference > 0 else "lower"
    return (
        f"{abs(c.difference) * scale:.2f}{unit} {direction} than {reference} at "
        f"{_n_text(c)} ({_ps_text(c)}; {ci})"
    )


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """'98.12 ± 0.31' for n >= 2, the single value for n = 1, '—' for none."""
    if not values:
        return "—"
    m = mean(values) * scale
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sample_std(values) * scale:.{digits}f}"
