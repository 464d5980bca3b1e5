"""Hyperparameter search on Optuna: a study's `search:` block as trials, each a real run folder.

The runner drives the trials with its own workers (`runner._run_search`); this module is what
knows Optuna: the storage (SQLite, `<study folder>/search.db`, so an interrupted search resumes),
asking for a trial's settings, telling Optuna how its run ended, recovering trials that a killed
study left running, the pruning callback that trial runs carry, and the plain-data summary the
report shows. Optuna is imported only here and only when a search study is used.

Trials never touch the test set: they are trained with `evaluate_test=False` and their objective
is the run's best validation accuracy (`best_val_acc` in result.json). Only the re-run of the best
configuration (ordinary study runs, `rerun_seeds` fresh seeds) is evaluated on the test set.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runs import read_result
from cnnlab.study.spec import RunSpec, SearchSpec, Study, Variant, expand_variant
from cnnlab.training.callbacks import Callback
from cnnlab.utils import make_dirs

STORAGE_FILE = "search.db"
BEST_VARIANT = "best configuration"
BEST_SLUG = "best"
MIN_IMPORTANCE_TRIALS = 3  # completed trials below which importances say nothing (fANOVA needs spread)
PRUNED = "pruned"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CnnlabError(
            "This study has a 'search:' block, which runs on Optuna, and Optuna is not installed in this "
            "Python environment. Install the extra with `pip install 'cnnlab[search]'` (or `pip install "
            "optuna`), or remove 'search:' from the study file."
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the study's own progress lines say enough
    return optuna


@contextlib.contextmanager
def _suppress_missing():
    """Optuna raises KeyError for a study name its storage does not have."""
    try:
        yield
    except KeyError:
        pass


def storage_url(study_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / STORAGE_FILE}"


def trial_slug(number: int) -> str:
    return f"trial-{number:04d}"


def _storage(url: str):
    optuna = _optuna()
    # several trial processes report epochs at once: wait for SQLite's write lock, do not fail
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def _pruner(spec: SearchSpec):
    optuna = _optuna()
    if not spec.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)


# --- in the trial's worker process ------------------------------------------------------------------


@dataclass(frozen=True)
class TrialRef:
    """Which Optuna trial a run belongs to; plain, picklable data sent to the worker."""

    storage: str
    study_name: str
    trial_id: int
    number: int
    pruning: bool
    startup_trials: int
    warmup_epochs: int


class OptunaPruning(Callback):
    """Reports each epoch's validation accuracy to the trial and stops the run (status
    `pruned`) when Optuna's median pruner says the trial is behind the earlier ones."""

    def __init__(self, ref: TrialRef):
        self.ref = ref
        self.trial = None

    def on_train_begin(self, logs: dict) -> None:
        optuna = _optuna()
        pruner = optuna.pruners.MedianPruner(n_startup_trials=self.ref.startup_trials,
                                             n_warmup_steps=self.ref.warmup_epochs)
        study = optuna.load_study(study_name=self.ref.study_name, storage=_storage(self.ref.storage), pruner=pruner)
        self.trial = optuna.trial.Trial(study, self.ref.trial_id)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        value = logs.get("val_acc")
        if self.trial is None or not isinstance(value, float) or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        # after the last epoch there is nothing left to save: the trial counts as complete
        if epoch < self.state.epochs and self.trial.should_prune():
            self.state.stop(PRUNED, f"pruned by Optuna's median pruner after epoch {epoch}: val_acc "
                                    f"{100 * value:.2f}% is below the median of earlier trials at that epoch")


def train_trial(config: dict, out: str, name: str, *, ref: TrialRef, train_fn) -> Path:
    """One trial's run: `train_fn` with the pruning callback and without the test set."""
    callbacks = [OptunaPruning(ref)] if ref.pruning else []
    return Path(train_fn(config, out, name, callbacks=callbacks, evaluate_test=False))


# --- in the study's process ---------------------------------------------------------------------------


@dataclass
class Asked:
    """A trial Optuna has handed out: its number, settings and the run that will train it."""

    number: int
    trial: Any  # optuna.trial.Trial
    params: dict
    spec: RunSpec | None  # None when the settings failed validation (the trial is then failed)
    ref: TrialRef


def search_settings(study: Study) -> dict:
    """What study.json records about a search (its spec and storage), for the report."""
    return {**study.search.to_dict(), "storage": STORAGE_FILE, "study_name": optuna_study_name(study),
            "trial_seed": study.seeds[0] - 1}


def optuna_study_name(study: Study) -> str:
    return study.name + (f"-{study.profile}" if study.profile else "")


class Search:
    """The Optuna study of one search study folder (the caller holds the study lock)."""

    def __init__(self, study: Study, study_dir: Path, data_dir=None, create: bool = True):
        optuna = _optuna()
        self.optuna = optuna
        self.study = study
        self.spec: SearchSpec = study.search
        self.study_dir = Path(study_dir)
        self.data_dir = data_dir
        self.url = storage_url(study_dir)
        self.name = optuna_study_name(study)
        self.trial_seed = study.seeds[0] - 1  # the rerun seeds follow it
        self._validate_parameters()
        self.optuna_study = None
        storage_file = self.study_dir / STORAGE_FILE
        if not create:  # a dry run: read what is there, write nothing
            if storage_file.is_file():
                with _suppress_missing():
                    self.optuna_study = optuna.load_study(study_name=self.name, storage=_storage(self.url))
            return
        make_dirs(self.study_dir)  # an unwritable study folder: OutputError naming it, exit 2
        storage = _storage(self.url)
        previous = 0
        if self.name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
            loaded = optuna.load_study(study_name=self.name, storage=storage)
            saved = loaded.user_attrs.get("search")
            if saved is not None and saved["parameters"] != self.spec.to_dict()["parameters"]:
                raise CnnlabError(
                    f"The search's parameters changed since {storage_file} was created (its trials "
                    "sampled other ranges), so its trials cannot be continued. Delete that file (and the "
                    "runs/trial-* folders) to start the search over, or use another --out."
                )
            previous = len(loaded.trials)
        # seeded by the trials so far: a resumed search does not repeat the first trials' samples
        sampler = optuna.samplers.TPESampler(seed=self.spec.sampler_seed + previous)
        self.optuna_study = optuna.create_study(
            study_name=self.name, storage=storage, load_if_exists=True, direction=self.spec.direction,
            sampler=sampler, pruner=_pruner(self.spec))
        if "search" not in self.optuna_study.user_attrs:
            self.optuna_study.set_user_attr("search", self.spec.to_dict())

    def _validate_parameters(self) -> None:
        """Every range end and choice must give a valid config now, not after hours of trials."""
        for p in self.spec.parameters:
            for value in p.choices or (p.low, p.high):
                self.trial_spec(-1, {p.key: value}, label=f"search range {p.key}={value}")
        base = self.trial_spec(-1, {}, label="base")
        if not base.config.get("data", {}).get("val_fraction"):
            raise CnnlabError(
                f"Study '{self.study.name}' searches on validation accuracy, but data.val_fraction is 0, so "
                "its runs have no validation set. Set base.data.val_fraction (e.g. 0.1): the test set is kept "
                "for the best configuration's re-run."
            )

    def trial_spec(self, number: int, params: dict, label: str | None = None) -> RunSpec:
        variant = Variant(label or f"trial {number}", trial_slug(number), dict(params))
        return expand_variant(self.study, variant, (self.trial_seed,), self.data_dir)[0]

    # -- counting -------------------------------------------------------------------------------

    def trials(self) -> list:
        return self.optuna_study.trials if self.optuna_study is not None else []

    def retried(self) -> set[int]:
        """Numbers of trials that were interrupted and handed out again (their retry names them)."""
        return {t.user_attrs["retry_of"] for t in self.trials() if "retry_of" in t.user_attrs}

    def finished(self) -> int:
        """Trials that count towards `trials`: complete, pruned, or failed for a reason of their own
        (a trial failed by an interruption is retried, so it does not count)."""
        states = self.optuna.trial.TrialState
        retried = self.retried()
        return sum(1 for t in self.trials() if t.state in (states.COMPLETE, states.PRUNED)
                   or (t.state == states.FAIL and t.number not in retried))

    def recover(self) -> list[int]:
        """Trials left running by a study that was killed: failed and queued again with the same
        settings (the lock says no other study is running them). Returns their numbers."""
        states = self.optuna.trial.TrialState
        stale = [t for t in self.trials() if t.state == states.RUNNING]
        for t in stale:
            self.optuna_study.tell(t.number, state=states.FAIL, skip_if_finished=True)
            self.optuna_study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        return [t.number for t in stale]

    # -- one trial ------------------------------------------------------------------------------

    def ask(self) -> Asked:
        trial = self.optuna_study.ask()
        params = {}
        for p in self.spec.parameters:
            if p.choices:
                params[p.key] = trial.suggest_categorical(p.key, list(p.choices))
            elif p.is_int:
                params[p.key] = trial.suggest_int(p.key, p.low, p.high, log=p.log, step=p.step or 1)
            else:
                params[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log, step=p.step)
        ref = TrialRef(self.url, self.name, trial._trial_id, trial.number, self.spec.pruning,
                       self.spec.startup_trials, self.spec.warmup_epochs)
        try:
            spec = self.trial_spec(trial.number, params)
        except CnnlabError as err:
            trial.set_user_attr("error", str(err))
            self.optuna_study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            spec = None
        return Asked(trial.number, trial, params, spec, ref)

    def tell(self, asked: Asked, outcome: dict, interrupted: bool) -> str:
        """Record how a trial's run ended; returns the trial's state ('complete', 'pruned', 'failed')."""
        states = self.optuna.trial.TrialState
        trial = asked.trial
        path = outcome.get("path")
        if path:
            trial.set_user_attr("path", str(path))
        if outcome.get("error"):
            trial.set_user_attr("error", str(outcome["error"])[:2000])
        if interrupted:  # handed out again with the same settings; this one does not count
            self.optuna_study.tell(trial, state=states.FAIL)
            self.optuna_study.enqueue_trial(asked.params, user_attrs={"retry_of": asked.number})
            return "failed"
        result = {}
        if path and (self.study_dir / path).is_dir():
            result = read_result(self.study_dir / path)
        status = result.get("status")
        trial.set_user_attr("run_status", str(status or outcome.get("status")))
        value = result.get("best_val_acc") if status in ("completed", "diverged", PRUNED) else None
        if status == PRUNED:
            self.optuna_study.tell(trial, state=states.PRUNED)
            return PRUNED
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.optuna_study.tell(trial, float(value))  # a diverged run counts with its best epoch
            return "complete"
        self.optuna_study.tell(trial, state=states.FAIL)
        return "failed"

    def best_params(self) -> tuple[int, dict, float] | None:
        states = self.optuna.trial.TrialState
        if not any(t.state == states.COMPLETE for t in self.trials()):
            return None
        best = self.optuna_study.best_trial
        return best.number, dict(best.params), float(best.value)

    def best_study(self) -> Study | None:
        """The study of the best configuration's re-run: one variant over the rerun seeds."""
        import dataclasses

        best = self.best_params()
        if best is None:
            return None
        return dataclasses.replace(self.study, variants=(Variant(BEST_VARIANT, BEST_SLUG, best[1]),),
                                   baseline=BEST_VARIANT)

    def counts(self) -> dict:
        out = {"complete": 0, PRUNED: 0, "failed": 0, "interrupted": 0, "running": 0, "waiting": 0}
        retried = self.retried()
        for t in self.trials():
            out[_state_name(t, retried)] += 1
        return out


def _state_name(trial, retried: set[int]) -> str:
    name = trial.state.name.lower()
    if name == "fail":
        return "interrupted" if trial.number in retried else "failed"
    return name


# --- for the report -------------------------------------------------------------------------------------


def summary(study_dir: str | os.PathLike, settings: dict) -> dict:
    """The search of a study folder as plain data: settings, trials, best, importances."""
    optuna = _optuna()
    study_dir = Path(study_dir)
    out = {"settings": settings, "trials": [], "best": None, "importances": None,
           "importances_note": ""}
    if not (study_dir / STORAGE_FILE).is_file():
        out["importances_note"] = f"no trials yet ({STORAGE_FILE} does not exist)"
        return out
    try:
        found = optuna.load_study(study_name=settings["study_name"], storage=_storage(storage_url(study_dir)))
    except KeyError:
        out["importances_note"] = "no trials yet"
        return out
    trials = found.trials
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        value = t.value if t.value is not None else (
            max(t.intermediate_values.values()) if t.intermediate_values else None)
        out["trials"].append({
            "number": t.number, "state": _state_name(t, set(retried)), "params": dict(t.params),
            "val_acc": value, "epochs": len(t.intermediate_values), "path": t.user_attrs.get("path"),
            "error": t.user_attrs.get("error"), "retried_as": retried.get(t.number),
            "retry_of": t.user_attrs.get("retry_of"),
        })
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = found.best_trial
        out["best"] = {"number": best.number, "params": dict(best.params), "val_acc": best.value}
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        out["importances_note"] = (f"unavailable: {len(complete)} completed trial(s); parameter importances "
                                   f"need at least {MIN_IMPORTANCE_TRIALS}")
        return out
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        out["importances"] = {k: float(v) for k, v in optuna.importance.get_param_importances(
            found, evaluator=evaluator).items()}
    except (RuntimeError, ValueError) as err:
        out["importances_note"] = f"unavailable: {err}"
    return out
