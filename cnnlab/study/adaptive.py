"""Adaptive seeds: which comparisons need another seed, and why each one stopped.

`seeds: {min: 3, max: 10, until_ci: 0.5}` runs `min` seeds of every variant, then, one round at a
time, adds the next seed to both sides of every comparison (each variant against its reference,
the comparisons the report makes) whose 95% CI half-width on the difference is still at least
`until_ci` accuracy points, until it is below or the variant has `max` seeds. A seed added to the
reference as well keeps the variant's seeds a subset of its reference's, so the test stays paired.

A pure function of the analysis and the planned seed counts: the runner calls it after each round,
and the report calls it again on the finished study to say why each comparison stopped, so a
resumed study takes the same decisions from the same completed runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from cnnlab.study import effects, stats

MET, AT_MAX, MORE, INCOMPLETE = "met", "max", "more", "incomplete"


@dataclass(frozen=True)
class SeedDecision:
    variant: str
    reference: str
    half_width: float  # accuracy points; inf when there is no CI yet
    planned: int  # seeds planned for the variant
    status: str  # MET, AT_MAX, MORE (needs another round) or INCOMPLETE (runs failed or not finished)


def half_width_points(c: stats.Comparison) -> float:
    """Half the width of the comparison's 95% CI, in accuracy points (inf without a CI)."""
    if not c.testable or stats.too_few_runs(c) or not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return math.inf
    return (c.ci_high - c.ci_low) / 2 * 100


def decide(result: effects.Analysis, planned: Mapping[str, int], completed: Mapping[str, int],
           until_ci: float, max_seeds: int) -> list[SeedDecision]:
    """One decision per comparison of `result`. `planned` and `completed`: seeds per variant."""
    out = []
    for c in result.comparisons:
        half = half_width_points(c.comparison)
        n_planned = planned.get(c.variant, 0)
        if half < until_ci:
            status = MET
        elif n_planned >= max_seeds:
            status = AT_MAX
        elif completed.get(c.variant, 0) < n_planned or completed.get(c.reference, 0) < planned.get(c.reference, 0):
            status = INCOMPLETE  # a failed run: more seeds would not fix it; a re-invocation retries it
        else:
            status = MORE
        out.append(SeedDecision(c.variant, c.reference, half, n_planned, status))
    return out


def next_counts(decisions: list[SeedDecision], planned: Mapping[str, int]) -> dict[str, int]:
    """The seed counts of the next round: one more seed for both sides of each comparison that needs it."""
    counts = dict(planned)
    for d in decisions:
        if d.status == MORE:
            target = planned[d.variant] + 1
            counts[d.variant] = max(counts[d.variant], target)
            counts[d.reference] = max(counts.get(d.reference, 0), target)
    return counts


def reason(d: SeedDecision, until_ci: float, max_seeds: int) -> str:
    """Why a comparison stopped adding seeds, in a sentence fragment for the report."""
    width = f"±{d.half_width:.2f} points" if math.isfinite(d.half_width) else "no CI"
    if d.status == MET:
        return f"CI target met: {width} < {until_ci:g} after {d.planned} seeds"
    if d.status == AT_MAX:
        return f"max seeds reached ({max_seeds}): {width}, target {until_ci:g} not met"
    if d.status == INCOMPLETE:
        return f"stopped at {d.planned} seeds: some runs failed or did not finish ({width})"
    return f"not finished: {width} after {d.planned} seeds; run the study again to add seeds"
