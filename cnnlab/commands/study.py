"""`cnnlab study`: run a study (grid x variants x seeds) in parallel, then write its report."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    study = subparsers.add_parser(
        "study", help="run a study (grid x variants x seeds) in parallel",
        description="Run every (variant, seed) of a study file as a run folder under the study "
                    "folder; completed runs are skipped when re-invoked. Then write its report.",
    )
    study.add_argument("study_file", metavar="STUDY.yaml")
    study.add_argument("--jobs", "-j", type=int, default=None, help="parallel runs (default: CPU cores)")
    study.add_argument("--out", default=None, help="folder that holds study folders (default: studies)")
    study.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    study.add_argument("--profile", default=None, help="a profile of the study file, e.g. quick")
    study.add_argument("--backend", choices=("local", "ray"), default="local")
    study.add_argument("--address", default=None, help="Ray cluster HOST:PORT (with --backend ray; without it a private Ray "
                       "instance starts on this machine); the study folder must be on storage every node shares")
    study.add_argument("--data-dir", default=None, help="dataset folder for every run (default: $CNNLAB_DATA)")
    study.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    study.set_defaults(func=run)


def _search_lines(outcome) -> list[str]:
    info = outcome.search
    counts = ", ".join(f"{n} {state}" for state, n in info["counts"].items() if n) or "none yet"
    pruning = (f"median pruner on per-epoch val_acc (after {info['startup_trials']} completed trials, "
               f"{info['warmup_epochs']} warm-up epochs)" if info["pruning"] else "no pruning")
    lines = [f"search study {outcome.study.name}: {info['trials']} Optuna trials (TPE, sampler seed "
             f"{info['sampler_seed']}) in {outcome.study_dir}",
             f"  objective: {info['objective']} ({info['direction']}), the run's best validation accuracy; "
             "trials do not use the test set",
             f"  pruning: {pruning}",
             f"  storage: {outcome.study_dir / info['storage']} (trials so far: {counts})"]
    lines += [f"  search {p}" for p in info["parameters"]]
    lines.append(f"  trials run on seed {info['trial_seed']}, one run folder each: runs/trial-<n>/seed{info['trial_seed']}")
    remaining = max(0, info["trials"] - info["finished"])
    rerun = ", ".join(map(str, outcome.study.seeds))
    lines.append(f"then the best configuration over {len(outcome.study.seeds)} fresh seed(s) ({rerun}), the only "
                 "runs evaluated on the test set: runs/best/seed<k>")
    lines.append(f"{remaining} trial(s) to run with {outcome.jobs} job(s) x {outcome.threads} thread(s)"
                 + (f", then {len(outcome.runs) - len(outcome.skipped)} re-run(s)" if outcome.runs else ""))
    return lines


def _plan_lines(outcome) -> list[str]:
    if outcome.search is not None:
        return _search_lines(outcome)
    done = set(outcome.skipped)
    adaptive = outcome.study.adaptive
    seeds = (f"adaptive seeds: {adaptive.min}..{adaptive.max} per variant until each comparison's 95% CI "
             f"half-width < {adaptive.until_ci:g} points; round {outcome.rounds} listed" if adaptive
             else f"{len(outcome.study.seeds)} seeds")
    lines = [f"study {outcome.study.name}: {len(outcome.runs)} runs "
             f"({len(outcome.study.variants)} variants x {seeds}) in {outcome.study_dir}"]
    for spec in outcome.runs:
        mark = "done" if spec.key in done else "todo"
        lines.append(f"  [{mark}] {spec.relpath:<48} {spec.variant}  seed {spec.seed}")
    lines.append(f"{len(outcome.runs) - len(done)} to run with {outcome.jobs} job(s) x {outcome.threads} thread(s)"
                 + ("; the count is adaptive: more seeds follow for comparisons whose CI is still too wide"
                    if adaptive else ""))
    return lines


def run(args) -> int:
    from cnnlab.study import report, run_study
    from cnnlab.study.progress import default_progress

    from cnnlab.study.runner import StudyInterrupted

    try:
        outcome = run_study(
            args.study_file, jobs=args.jobs, out=args.out, dry_run=args.dry_run, backend=args.backend,
            address=args.address, profile=args.profile, data_dir=args.data_dir,
            progress=None if args.dry_run else default_progress(sys.stderr),
        )
    except StudyInterrupted as err:
        print(f"interrupted: {err}\ncontinue with: {continue_command(args)}", file=sys.stderr, flush=True)
        return 128 + int(err.signum)
    if args.dry_run:
        print("\n".join(_plan_lines(outcome)))
        return 0
    resumed = f" ({len(outcome.resumed)} continued from their last checkpoint)" if outcome.resumed else ""
    if outcome.search is not None:
        counts = ", ".join(f"{n} {state}" for state, n in outcome.search["counts"].items() if n) or "none"
        print(f"search: {outcome.search['finished']} of {outcome.search['trials']} trials finished ({counts})")
    pruned = f", {len(outcome.pruned)} pruned" if outcome.search is not None else ""
    print(f"{len(outcome.completed)} completed{resumed}{pruned}, {len(outcome.skipped)} skipped (done before), "
          f"{len(outcome.failed)} failed; study folder: {outcome.study_dir}")
    if not args.no_report:
        print(f"report: {report(outcome.study_dir)}")
    return 0 if outcome.ok else 1


def continue_command(args) -> str:
    """The `cnnlab study` command line that continues this study where it stopped."""
    import shlex

    parts = ["cnnlab", "study", args.study_file]
    for flag, value in (("--out", args.out), ("--profile", args.profile), ("--jobs", args.jobs),
                        ("--data-dir", args.data_dir), ("--address", args.address)):
        if value is not None:
            parts += [flag, str(value)]
    if args.backend != "local":
        parts += ["--backend", args.backend]
    if args.no_report:
        parts.append("--no-report")
    return shlex.join(parts)

