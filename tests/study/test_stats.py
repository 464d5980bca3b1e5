import math

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
