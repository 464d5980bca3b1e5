import math
import re

import pytest

from cnnlab.study import stats


def test_mean_and_sample_std():
    assert stats.mean([1, 2, 3, 4]) == 2.5
    assert stats.sample_std([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.138089935, rel=1e-9)
    assert math.isnan(stats.sample_std([1.0]))
    assert math.isnan(stats.mean([]))


def test_welch_against_hand_computed_example():
    # Equal variances (1e-4) and n = 3 on both sides make Welch's df exactly 2 (n - 1) = 4:
    #   se = sqrt(1e-4/3 + 1e-4/3) = 0.00816497, t = 0.03 / se = 3.674235,
    #   df = (2e-4/3)^2 / (2 * (1e-4/3)^2 / 2) = 4.
    # For even df the t CDF is closed-form: with theta = atan(t / sqrt(4)),
    #   P(|T| < t) = sin(theta) * (1 + cos(theta)^2 / 2) = 0.978689, so p = 0.021311.
    #   t_{0.975, 4} = 2.776445, half width = 2.776445 * se = 0.022670.
    c = stats.welch([0.91, 0.92, 0.93], [0.88, 0.89, 0.90])
    assert c.difference == pytest.approx(0.03, abs=1e-12)
    assert c.t == pytest.approx(3.674235, rel=1e-6)
    assert c.df == pytest.approx(4.0, rel=1e-9)
    assert c.p == pytest.approx(0.021311, abs=2e-6)
    assert c.ci_low == pytest.approx(0.03 - 0.022670, abs=2e-6)
    assert c.ci_high == pytest.approx(0.03 + 0.022670, abs=2e-6)
    assert c.significant


def test_welch_unequal_variances_df_follows_welch_satterthwaite():
    a, b = [0.90, 0.92, 0.94], [0.85, 0.88, 0.91, 0.86]
    va, vb = 0.0004 / 3, stats.sample_std(b) ** 2 / 4
    c = stats.welch(a, b)
    assert c.t == pytest.approx((0.92 - stats.mean(b)) / math.sqrt(va + vb))
    assert c.df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 3))


@pytest.mark.parametrize("use_scipy", [True, False])
def test_pure_fallback_matches_scipy(use_scipy):
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [0.71, 0.74, 0.69, 0.73], [0.70, 0.66, 0.72]
    c = stats.welch(a, b, use_scipy=use_scipy)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert c.t == pytest.approx(ref.statistic, rel=1e-10)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-9)
    half = scipy_stats.t.ppf(0.975, c.df) * math.sqrt(stats.sample_std(a) ** 2 / 4 + stats.sample_std(b) ** 2 / 3)
    assert c.ci_high - c.difference == pytest.approx(half, rel=1e-9)


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.3), (2.0, 3.5, 0.7), (10.0, 0.5, 0.95), (1.5, 0.5, 0.01)])
def test_incomplete_beta_matches_scipy(a, b, x):
    special = pytest.importorskip("scipy.special")
    assert stats.regularized_incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


def test_t_ppf_pure_inverts_the_cdf():
    for df in (1.0, 2.5, 4.0, 30.0):
        q = stats.t_ppf(0.975, df, use_scipy=False)
        assert stats.t_two_sided_p(q, df, use_scipy=False) == pytest.approx(0.05, rel=1e-9)


def test_too_few_runs_cannot_be_tested():
    c = stats.welch([0.9], [0.8, 0.85])
    assert not c.testable and not c.significant
    assert "cannot be tested" in stats.describe(c)
    assert "no completed runs" in stats.describe(stats.welch([], [0.8, 0.85]))


def test_zero_variance_is_degenerate_but_defined():
    same = stats.welch([0.9, 0.9], [0.9, 0.9])
    assert same.p == 1.0 and not same.significant
    apart = stats.welch([0.9, 0.9], [0.8, 0.8])
    assert apart.p == 0.0 and apart.ci_low == pytest.approx(0.1)


def test_wording_is_honest():
    noisy = stats.welch([0.90, 0.93, 0.88], [0.89, 0.91, 0.90])
    text = stats.describe(noisy)
    assert text.startswith("no significant difference at n=3 (p=")
    assert "includes zero" in text
    clear = stats.describe(stats.welch([0.91, 0.92, 0.93], [0.88, 0.89, 0.90]))
    assert clear.startswith("3.00 points higher than the baseline at n=3 (p=0.021")
    assert stats.format_mean_std([0.9, 0.92]) == "91.00 ± 1.41"
    assert stats.format_mean_std([0.9]) == "90.00"


# --- paired tests, contrasts, Holm, power: each against an independent reference ---------------


def test_paired_matches_scipy_ttest_rel():
    scipy_stats = pytest.importorskip("scipy.stats")
    # per-seed accuracies of two variants that ran seeds 0..4
    a = [0.912, 0.905, 0.921, 0.899, 0.915]
    b = [0.903, 0.901, 0.910, 0.897, 0.904]
    c = stats.paired(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert c.test == "paired" and c.n_candidate == c.n_baseline == 5 and c.df == 4
    assert c.t == pytest.approx(ref.statistic, rel=1e-10)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-9)
    diffs = [x - y for x, y in zip(a, b)]
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert c.effect_size_kind == "d_z"
    assert c.effect_size == pytest.approx(stats.mean(diffs) / stats.sample_std(diffs))
    assert "paired seeds" in stats.describe(c)
    with pytest.raises(ValueError, match="same length"):
        stats.paired([0.9, 0.8], [0.9])


def test_welch_reports_cohens_d_with_pooled_std():
    a, b = [0.90, 0.92, 0.94], [0.85, 0.88, 0.91, 0.86]
    c = stats.welch(a, b)
    pooled = math.sqrt((2 * stats.sample_std(a) ** 2 + 3 * stats.sample_std(b) ** 2) / 5)
    assert c.effect_size_kind == "d" and c.effect_size == pytest.approx(c.difference / pooled)


def test_contrast_of_two_terms_is_welch_and_of_four_matches_statsmodels_formula():
    a, b = [0.71, 0.74, 0.69, 0.73], [0.70, 0.66, 0.72]
    two = stats.contrast([(1.0, a), (-1.0, b)])
    ref = stats.welch(a, b)
    assert (two.t, two.df, two.p) == (pytest.approx(ref.t), pytest.approx(ref.df), pytest.approx(ref.p))
    # an interaction contrast, with the variance and Satterthwaite df written out independently
    cells = [[0.90, 0.91, 0.92], [0.80, 0.82, 0.81], [0.85, 0.86, 0.84], [0.84, 0.83, 0.85]]
    weights = [1, -1, -1, 1]
    c = stats.contrast(list(zip(weights, cells)))
    np = pytest.importorskip("numpy")
    v = [np.var(x, ddof=1) / len(x) for x in cells]
    est = sum(w * np.mean(x) for w, x in zip(weights, cells))
    assert c.difference == pytest.approx(est)
    assert c.t == pytest.approx(est / math.sqrt(sum(v)))
    assert c.df == pytest.approx(sum(v) ** 2 / sum(x * x / 2 for x in v))


def test_holm_matches_statsmodels_multipletests():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.01, 0.04, 0.03, 0.005, 0.20, 0.049, 0.0001]
    reject, ref, _, _ = multitest.multipletests(p, alpha=0.05, method="holm")
    assert stats.holm(p) == pytest.approx(list(ref), rel=1e-12)
    # untestable comparisons (NaN) are left out of the family, not counted as p = 1
    with_nan = stats.holm([0.01, math.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.04)


def test_verdict_uses_the_holm_adjusted_p():
    from dataclasses import replace

    raw = stats.welch([0.91, 0.92, 0.93], [0.88, 0.89, 0.90])  # p = 0.021
    adjusted = replace(raw, p_adjusted=0.063)
    assert raw.significant and not adjusted.significant
    text = stats.describe(adjusted)
    assert text.startswith("no significant difference") and "Holm-adjusted p=0.063" in text
    assert stats.holm_adjust([raw, raw])[0].p_adjusted == pytest.approx(2 * raw.p)


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_power_and_detectable_effect_match_statsmodels(n):
    power_mod = pytest.importorskip("statsmodels.stats.power")
    one, ind = power_mod.TTestPower(), power_mod.TTestIndPower()
    for d in (0.5, 1.3, 3.0):
        assert stats.power(d, n, "paired") == pytest.approx(one.power(d, n, 0.05), rel=1e-8)
        assert stats.power(d, n, "welch") == pytest.approx(ind.power(d, n, 0.05, ratio=1.0), rel=1e-8)
    assert stats.detectable_effect(n, "paired") == pytest.approx(
        one.solve_power(nobs=n, alpha=0.05, power=0.8), rel=1e-6)
    assert stats.detectable_effect(n, "welch") == pytest.approx(
        ind.solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1.0), rel=1e-6)
    assert stats.detectable_difference(0.004, n, "paired") == pytest.approx(0.004 * stats.detectable_effect(n))
    assert stats.power(1.0, 3, "welch", n_other=5) == pytest.approx(ind.power(1.0, 3, 0.05, ratio=5 / 3), rel=1e-8)


@pytest.mark.parametrize("difference,spread", [(0.005, 0.004), (0.01, 0.003), (0.002, 0.01)])
def test_n_needed_matches_statsmodels_solve_power(difference, spread):
    power_mod = pytest.importorskip("statsmodels.stats.power")
    d = difference / spread
    for design, solver in (("paired", power_mod.TTestPower()), ("welch", power_mod.TTestIndPower())):
        exact = solver.solve_power(effect_size=d, alpha=0.05, power=0.8)
        assert stats.n_needed(difference, spread, design) == max(2, math.ceil(exact - 1e-9))
    assert stats.n_needed(0.01, math.nan) is None and stats.n_needed(0.01, 0.0) == 2


def test_n_of_two_gives_a_warning_not_a_ci():
    c = stats.welch([0.90, 0.95], [0.50, 0.93])
    assert c.testable and stats.too_few_runs(c)
    text = stats.describe(c)
    assert text.startswith("too few runs to conclude") and "run at least 3 seeds" in text
    assert not re.search(r"CI [+-]\d", text)  # no interval printed, only the warning
