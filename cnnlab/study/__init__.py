"""Studies: a grid of settings x seeds, run in parallel, compared with statistics, written up.

    >>> from cnnlab.study import run_study, report
    >>> outcome = run_study("examples/bn_and_depth.yaml", profile="quick", jobs=2)
    >>> report(outcome.study_dir)        # studies/bn_and_depth-quick/report.html (+ report.md)

`factor_effects(study_dir)` gives each grid factor's effect within matched cells and averaged
over them; `interactions(study_dir)` the two-factor checks (`effects` holds the pure analysis).
`seeds: {min, max, until_ci}` adds seeds until each comparison's CI is narrow enough (`adaptive`);
a `search:` block searches settings with Optuna (`search`; `search_results(study_dir)` gives the
trials, best configuration, importances and the best configuration's re-run on the test set).
`stats` (Welch's and paired t-tests, CIs, Holm, power) and `diagnostics` (overfitting, oscillation, plateau, underfitting,
divergence) are plain functions usable on their own.
"""

from cnnlab.study import diagnostics, effects, stats
from cnnlab.study.report import compare, report
from cnnlab.study.results import aggregate, factor_effects, interactions, search_results
from cnnlab.study.runner import StudyOutcome, run_study
from cnnlab.study.spec import RunSpec, Study, expand, load_study, parse_study

__all__ = [
    "RunSpec", "Study", "StudyOutcome", "aggregate", "compare", "diagnostics", "effects", "expand",
    "factor_effects", "interactions", "load_study", "parse_study", "report", "run_study", "search_results",
    "stats",
]
