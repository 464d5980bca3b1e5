"""Running a study: every (variant, seed) as an ordinary run folder, in parallel processes.

The parent process plans the runs, starts at most `jobs` worker processes (spawn context, one
per run, so a crash or a leak in one run cannot touch the others), and is the only writer of
`study.json`. Threads are split between jobs so that jobs x threads <= cores. This module
reports progress through a callback and never prints.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import multiprocessing
import os
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Callable

from cnnlab.errors import CnnlabError, TrainingInterrupted
from cnnlab.study.lock import study_lock
from cnnlab.study.spec import RunSpec, Study, expand, load_study
from cnnlab import runs
from cnnlab.runs import latest_run_dir
from cnnlab.study.store import STATE_FILE, STATE_FORMAT
from cnnlab.utils import atomic_path, exit_skipping_teardown, read_json, write_json

BACKENDS = ("local", "ray")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_LOG = "study.log"
MAX_ERROR_CHARS = 4000

# status of a run in study.json; "completed" runs are skipped when the study is re-invoked
DONE, FAILED, DIVERGED, INTERRUPTED, PENDING = "completed", "failed", "diverged", "interrupted", "pending"
PRUNED = "pruned"  # a search trial stopped by Optuna's pruner

TrainFn = Callable[[dict, str, str], "str | os.PathLike"]


def train_with_cnnlab(config: dict, out: str, name: str, resume: str | None = None, *, callbacks=(),
                      evaluate_test: bool = True) -> Path:
    """The default train function: `cnnlab.train` (training and figures) on the validated
    config, or, with `resume`, continuing that interrupted run folder from its last checkpoint.
    `callbacks` and `evaluate_test` are for search trials (pruning, and no test set)."""
    from cnnlab.api import train
    from cnnlab.config import load_config

    if resume is not None:
        return Path(train(resume=resume, quiet=True, callbacks=callbacks, evaluate_test=evaluate_test).path)
    return Path(train(load_config(config), out=out, name=name, quiet=True, callbacks=callbacks,
                      evaluate_test=evaluate_test).path)


class StudyInterrupted(TrainingInterrupted):
    """`run_study` stopped by a signal (SIGTERM, SIGHUP) or Ctrl-C; study.json is up to date.

    `signum` is the signal (SIGINT for Ctrl-C); `outcome` the StudyOutcome so far.
    """

    def __init__(self, message: str, signum: int, outcome: "StudyOutcome"):
        super().__init__(message)
        self.signum = signum
        self.outcome = outcome


class _Stopped(KeyboardInterrupt):
    """Raised in the parent by the SIGTERM/SIGHUP handler, so the runner's cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP raise `_Stopped` in the parent (main thread only), like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_deferred():
    """While the parent stops its workers, further stop signals are ignored, so a second
    SIGTERM or Ctrl-C cannot cut the cleanup short and leave workers behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS + (signal.SIGINT,)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: ask the kernel to send this worker SIGTERM when the parent dies (even by
    `kill -9`), so a worker never outlives its study; the trainer then saves and stops."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@dataclass(frozen=True)
class Task:
    """What a worker needs to do one run; plain, picklable data."""

    key: str
    config: dict
    out: str  # <study_dir>/runs/<slug>; train() makes <out>/<name>/v<N>
    name: str  # seed<k>
    threads: int
    train_fn: TrainFn = train_with_cnnlab
    capture_output: bool = True  # redirect the worker's stdout/stderr into <out>/<name>/study.log
    resume: str | None = None  # an interrupted run folder to continue from its last checkpoint


def _set_threads(threads: int) -> None:
    """Limit this process's threads. torch reads the environment when it loads; if it is loaded
    already, tell it directly (the trainer also gets `train.threads`)."""
    import sys

    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _output_to(log_path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `log_path`,
    written to a temporary file that is renamed into place at the end."""
    import sys

    with atomic_path(log_path) as tmp, open(tmp, "w", encoding="utf-8") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _stopped_outcome(seed_dir: Path) -> dict:
    """What a run whose worker was stopped before it could report is: completed when its
    result.json says so (the worker was stopped after training, e.g. while drawing its
    figures), else interrupted, with its folder when it can be continued."""
    latest = latest_run_dir(seed_dir)
    if latest is not None and runs.read_result(latest).get("status") == DONE:
        return {"path": str(latest), **_outcome_from_run(latest)}
    outcome = {"status": INTERRUPTED, "error": "the study was interrupted"}
    run_dir = resumable_run_dir(seed_dir)
    if run_dir is not None:
        outcome["path"] = str(run_dir)
    return outcome


def _outcome_from_run(run_path: Path) -> dict:
    result_file = run_path / "result.json"
    if not result_file.is_file():
        return {"status": FAILED, "error": f"the run finished without writing {result_file}"}
    result = read_json(result_file)
    status = str(result.get("status", FAILED))
    outcome = {"status": status if status in (DONE, DIVERGED, INTERRUPTED, PRUNED) else FAILED,
               "test_acc": result.get("test_acc")}
    if result.get("error"):
        outcome["error"] = str(result["error"])[:MAX_ERROR_CHARS]
    elif status == DIVERGED:
        outcome["error"] = "the loss diverged (NaN or exploding)"
    return outcome


def execute(task: Task) -> dict:
    """Run one task in this process and return its outcome; never raises for a failed run."""
    _set_threads(task.threads)
    config = {**task.config, "train": {**task.config.get("train", {}), "threads": task.threads}}
    log_path = Path(task.out) / task.name / WORKER_LOG
    start = time.perf_counter()
    outcome: dict
    with _output_to(log_path) if task.capture_output else contextlib.nullcontext():
        try:
            if task.resume is not None:
                run_path = Path(task.train_fn(config, task.out, task.name, resume=task.resume))
            else:
                run_path = Path(task.train_fn(config, task.out, task.name))
            outcome = {"path": str(run_path), **_outcome_from_run(run_path)}
        except TrainingInterrupted as err:  # SIGTERM or Ctrl-C: last.pt is saved, resumable
            outcome = {"status": INTERRUPTED, "error": str(err)[:MAX_ERROR_CHARS]}
            run_dir = resumable_run_dir(Path(task.out) / task.name)
            if run_dir is not None:
                outcome["path"] = str(run_dir)
        except Exception as err:  # any crash of one run is recorded; the study goes on
            traceback.print_exc()
            outcome = {"status": FAILED, "error": f"{type(err).__name__}: {err}"[:MAX_ERROR_CHARS]}
    outcome["wall_s"] = round(time.perf_counter() - start, 3)
    if task.capture_output:
        outcome["log"] = str(log_path)
    return outcome


def _worker_loop(conn, parent_pid: int | None = None) -> None:
    """A spawned worker: run the tasks the parent sends, one at a time, until it sends None.

    Workers live across runs so that imports and the first-call set-up of torch's kernels are
    paid once per worker, not once per run; a worker that dies costs only its current run.
    Signals: SIGHUP is ignored (the parent handles it and stops the workers with SIGTERM);
    SIGTERM during training saves and stops the run (the trainer's handling); and the worker
    gets SIGTERM when the parent dies, so it never outlives the study.

    Once the loop ends the worker leaves without the interpreter's teardown of torch, ~1.5 s
    per worker that the parent waited for at the end of each study: each run's files are
    written and renamed into place and its outcome sent, so nothing is left to save.
    """
    _serve_tasks(conn, parent_pid)
    with contextlib.suppress(OSError):
        conn.close()
    exit_skipping_teardown(0)


def _serve_tasks(conn, parent_pid: int | None) -> None:
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    while True:
        try:
            task = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if task is None:
            return
        try:
            outcome = execute(task)
        except KeyboardInterrupt:
            return
        conn.send(outcome)
        if outcome.get("status") == INTERRUPTED:
            return  # told to stop (SIGTERM or Ctrl-C): take no further task


# --- the plan and its state ---------------------------------------------------------------------


@dataclass
class StudyOutcome:
    """What `run_study` did: the plan, and which runs were skipped, completed or failed."""

    study: Study
    study_dir: Path
    runs: list[RunSpec]
    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # continued from an interrupted run's last checkpoint
    pruned: list[str] = field(default_factory=list)  # search trials stopped by the pruner
    dry_run: bool = False
    jobs: int = 1
    threads: int = 1
    rounds: int = 1  # adaptive seeds: the rounds of seeds planned so far
    search: dict | None = None  # a search study: settings and trial counts (see `_run_search`)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def default_study_dir(study: Study, out: str | os.PathLike | None) -> Path:
    """`<out>/<study name>[-<profile>]`, so a quick profile never mixes with the full study."""
    folder = study.name + (f"-{study.profile}" if study.profile else "")
    return Path(out if out is not None else "studies") / folder


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _initial_state(study: Study, specs: list[RunSpec], previous: dict | None, extra: dict | None = None) -> dict:
    old_runs = (previous or {}).get("runs", {})
    runs = {}
    for spec in specs:
        entry = {"variant": spec.variant, "slug": spec.slug, "seed": spec.seed,
                 "fingerprint": spec.fingerprint, "status": PENDING, "matched": spec.matched}
        old = old_runs.get(spec.key)
        if old and old.get("fingerprint") == spec.fingerprint:
            entry.update({k: old[k] for k in ("status", "path", "error", "log", "wall_s") if k in old})
        runs[spec.key] = entry
    return {
        "format": STATE_FORMAT, "name": study.name, "description": study.description,
        "source": study.source, "profile": study.profile, "profile_description": study.profile_description,
        "profile_set": study.profile_set, "baseline": study.baseline,
        "match_params": study.match_params, "base": study.base,
        # adaptive: every seed planned so far (variants may have fewer), not only the first round's
        "seeds": sorted({s.seed for s in specs}) if study.adaptive else list(study.seeds),
        "groups": list(study.groups), "min_effect": study.min_effect,
        "adaptive_seeds": study.adaptive.to_dict() if study.adaptive else None,
        "variants": [{"name": v.name, "slug": v.slug, "changes": v.changes} for v in study.variants],
        "created": (previous or {}).get("created", _now()), "updated": _now(), "runs": runs,
        **(extra or {}),
    }


def _is_done(entry: dict, study_dir: Path) -> bool:
    """Completed before, with the same config, and its result still on disk."""
    if entry.get("status") != DONE or not entry.get("path"):
        return False
    result = study_dir / entry["path"] / "result.json"
    return result.is_file() and read_json(result).get("status") == DONE


RESUMABLE_STATES = ("interrupted", "running")  # result.json status of a run stopped mid-way


def resumable_run_dir(seed_dir: Path, config: dict | None = None) -> Path | None:
    """The newest `v<N>` under `seed_dir` if it can be continued: stopped mid-way (status
    interrupted, or running with no process left), with a last checkpoint and, when `config` is
    given, the same config (threads, data folder, out and name aside). Else None."""
    run_dir = latest_run_dir(seed_dir)
    if run_dir is None:
        return None
    try:
        status = runs.read_result(run_dir).get("status")
    except (OSError, ValueError):
        return None
    if status not in RESUMABLE_STATES or runs.checkpoint_path(run_dir, "last") is None:
        return None
    if config is not None:
        try:
            saved = runs.read_config_dict(run_dir)
        except (OSError, CnnlabError):
            return None
        if _comparable(saved) != _comparable(config):
            return None
    return run_dir


def _comparable(config: dict) -> str:
    import copy
    import json

    cfg = copy.deepcopy(config) if isinstance(config, dict) else {}
    for section, key in (("train", "threads"), ("train", "out"), ("train", "name"), ("data", "data_dir")):
        if isinstance(cfg.get(section), dict):
            cfg[section].pop(key, None)
    return json.dumps(cfg, sort_keys=True, default=str)


def _accepts_resume(train_fn) -> bool:
    try:
        return "resume" in inspect.signature(train_fn).parameters
    except (TypeError, ValueError):
        return False


def usable_cores() -> int:
    """Cores this process may run on (respects taskset and cpusets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _split_threads(jobs: int) -> int:
    return max(1, usable_cores() // jobs)


# --- backends -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _thread_env(threads: int):
    """Thread limits in the environment a spawned worker inherits (read before torch loads)."""
    saved = {var: os.environ.get(var) for var in THREAD_ENV}
    os.environ.update({var: str(threads) for var in THREAD_ENV})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@dataclass
class _Worker:
    process: object
    conn: object
    task: Task | None = None


class TaskQueue:
    """The tasks a backend hands to its workers, in order. A list of tasks, or made as the workers
    ask for them (search trials: `_SearchQueue`); `threads` is every task's thread count."""

    def __init__(self, tasks=(), threads: int = 1):
        self._tasks = list(tasks)
        self.threads = self._tasks[0].threads if self._tasks else threads

    def __len__(self) -> int:
        return len(self._tasks)

    def pop(self) -> Task:
        return self._tasks.pop(0)

    def put_back(self, task: Task) -> None:
        self._tasks.insert(0, task)


def _run_local(tasks, jobs: int, on_start, on_done) -> None:
    ctx = multiprocessing.get_context("spawn")
    pending = tasks if isinstance(tasks, TaskQueue) else TaskQueue(tasks)
    workers: list[_Worker] = []

    def start_worker() -> _Worker:
        parent_end, child_end = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_loop, args=(child_end, os.getpid()), name="cnnlab-study-worker")
        with _thread_env(pending.threads):
            proc.start()
        child_end.close()
        worker = _Worker(proc, parent_end)
        workers.append(worker)
        return worker

    def assign(worker: _Worker) -> None:
        worker.task = pending.pop() if pending else None
        try:
            worker.conn.send(worker.task)
        except (BrokenPipeError, OSError):  # died between runs: its task goes back to the queue
            if worker.task is not None:
                pending.put_back(worker.task)
            worker.task = None
            return
        if worker.task is not None:
            on_start(worker.task)

    try:
        for _ in range(min(jobs, len(pending))):
            assign(start_worker())
        while any(w.task is not None for w in workers):
            busy = [w for w in workers if w.task is not None]
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                outcome = None
                if worker.conn in ready or worker.process.sentinel in ready:
                    with contextlib.suppress(EOFError, OSError):
                        if worker.conn.poll():
                            outcome = worker.conn.recv()
                if outcome is not None and outcome.get("status") == INTERRUPTED:
                    # only this worker was stopped (e.g. `kill <worker pid>`): it exits after
                    # reporting; its run stays interrupted and the others go on
                    task, worker.task = worker.task, None
                    on_done(task, outcome)
                    worker.process.join(timeout=STOP_GRACE_S)
                    if worker.process.is_alive():
                        worker.process.kill()
                        worker.process.join(timeout=5)
                    workers.remove(worker)
                    worker.conn.close()
                    if pending:
                        assign(start_worker())
                elif outcome is not None:
                    task = worker.task
                    on_done(task, outcome)
                    assign(worker)
                elif worker.process.sentinel in ready:  # died during a run
                    worker.process.join()
                    task, worker.task = worker.task, None
                    workers.remove(worker)
                    on_done(task, {"status": FAILED, "error": (
                        f"the worker process died with exit code {worker.process.exitcode} during this "
                        "run (out of memory, or a crash in native code?)")})
                    if pending:
                        assign(start_worker())
    finally:
        with _signals_deferred():
            _stop_workers(workers, on_done)


STOP_GRACE_S = 30  # how long stopped workers get to save their last state before SIGKILL


def _stop_workers(workers: list[_Worker], on_done) -> None:
    """End every worker; busy ones (only after an interrupt or an error in the parent) get
    SIGTERM together, time to save their last checkpoint, then SIGKILL; their runs are recorded
    (interrupted, with the folder to continue from, unless one finished meanwhile)."""
    busy = [w for w in workers if w.task is not None]
    for worker in busy:
        with contextlib.suppress(OSError):
            worker.process.terminate()
    for worker in workers:
        if worker.task is None:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)  # idle: let it exit on its own
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
    for worker in busy:
        outcome = None
        with contextlib.suppress(EOFError, OSError):
            if worker.conn.poll():
                outcome = worker.conn.recv()
        if not isinstance(outcome, dict) or outcome.get("status") not in (DONE, INTERRUPTED):
            outcome = _stopped_outcome(Path(worker.task.out) / worker.task.name)
        on_done(worker.task, outcome)
    for worker in workers:
        worker.conn.close()


RAY_CONNECT_TIMEOUT_S = 10  # how long an --address gets to answer before the study gives up
FORWARDED_ENV = ("CNNLAB_DATA", "CNNLAB_CACHE", "CNNLAB_MIRROR")  # the driver's data settings


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CnnlabError(
            "The 'ray' backend needs Ray, which is not installed in this Python environment. "
            "Install the optional extra with `pip install 'cnnlab[ray]'` (or `pip install ray`), "
            "or run with `--backend local`."
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse an --address that nothing answers on, quickly: Ray itself retries for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CnnlabError(f"Ray address {address!r} is not HOST:PORT (e.g. head-node:6379, the port "
                          "`ray start --head` printed), 'auto' or ray://HOST:PORT.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise CnnlabError(
            f"Cannot reach a Ray cluster at {address!r} ({err}). Start its head node with "
            f"`ray start --head --port={port}`, check the host name and firewall, or leave out "
            "--address to run on a Ray instance started on this machine.") from None


def ray_init_options(address: str | None, jobs: int, threads: int, modules: list) -> dict:
    """`ray.init` arguments: connect to `address`, or start a private instance on 127.0.0.1
    with room for exactly `jobs` runs of `threads` CPUs each."""
    options = {"runtime_env": {"py_modules": modules}, "include_dashboard": False,
               "log_to_driver": False, "configure_logging": False}
    if address is None:
        options.update(num_cpus=jobs * threads, _node_ip_address="127.0.0.1")
    else:
        options["address"] = address
    return options


def _run_ray(tasks: list[Task], jobs: int, address: str | None, on_start, on_done) -> None:
    """Each run is a Ray task asking for `threads` CPUs, at most `jobs` at a time. The workers
    write the run folders under the study folder themselves, so on a cluster that folder must
    be on a filesystem every node mounts at the same path."""
    import sys

    if not tasks:
        return
    ray = _import_ray()
    if address is not None:
        _check_reachable(address)
    threads = tasks[0].threads
    # py_modules ships this cnnlab (and a train function's own module) to the workers, so a
    # cluster need not have them installed
    modules = [sys.modules["cnnlab"]]
    fn_module = sys.modules.get(getattr(tasks[0].train_fn, "__module__", "cnnlab"))
    if fn_module is not None and not fn_module.__name__.startswith("cnnlab") and fn_module.__name__ != "__main__":
        modules.append(fn_module)
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main_thread else {}
    try:
        ray.init(**ray_init_options(address, jobs, threads, modules))
    except (ConnectionError, ValueError, RuntimeError) as err:
        _restore_handlers(handlers)
        raise CnnlabError(f"Cannot connect to Ray at address {address!r}: {err}") from None
    # ray.init makes SIGTERM exit the driver at once, and a signal that arrives inside a Ray
    # call comes out of it as a plain KeyboardInterrupt: note which one came, stop as local does
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        raise _Stopped(signum)

    for sig in handlers:
        signal.signal(sig, stop)
    env = {var: str(threads) for var in THREAD_ENV}
    env.update({var: os.environ[var] for var in FORWARDED_ENV if var in os.environ})
    remote = ray.remote(num_cpus=threads, max_retries=0)(execute).options(runtime_env={"env_vars": env})
    pending = list(tasks)
    running: dict = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop(0)
                running[remote.remote(task)] = task
                on_start(task)
            ready, _ = ray.wait(list(running), num_returns=1)
            task = running.pop(ready[0])
            on_done(task, _ray_outcome(ray, ready[0], task))
    except KeyboardInterrupt as err:
        if received and not isinstance(err, _Stopped):
            raise _Stopped(received[-1]) from None
        raise
    finally:
        with _signals_deferred():
            _stop_ray_tasks(ray, running, on_done)
            ray.shutdown()
        _restore_handlers(handlers)


def _restore_handlers(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _still_running(seed_dir: Path) -> bool:
    """The newest run folder under `seed_dir` still says "running" (a stopped trainer first
    saves its checkpoint, then writes "interrupted")."""
    latest = latest_run_dir(seed_dir)
    if latest is None:
        return False
    try:
        return runs.read_result(latest).get("status") == "running"
    except (OSError, ValueError):
        return False


def _ray_outcome(ray, ref, task: Task) -> dict:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # Ray colours its messages
        outcome = {"status": FAILED, "error": f"Ray task failed: {text}"[:MAX_ERROR_CHARS]}
        log = Path(task.out) / task.name / WORKER_LOG
        if log.is_file():
            outcome["log"] = str(log)
        return outcome


def _stop_ray_tasks(ray, running: dict, on_done) -> None:
    """As `_stop_workers` for Ray: the running tasks get KeyboardInterrupt (the trainer saves
    its last checkpoint), time to finish, then are killed; their runs are recorded from what
    their folders say (interrupted and resumable, or completed if one finished meanwhile)."""
    if not running:
        return
    for ref in running:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    # a ref's state does not say whether its run saved its checkpoint (and a task blocked in
    # native code never sees the cancel): wait for the runs' folders to say how they ended
    deadline = time.monotonic() + STOP_GRACE_S
    saving = list(running.values())
    while saving and time.monotonic() < deadline:
        time.sleep(0.2)
        saving = [task for task in saving if _still_running(Path(task.out) / task.name)]
    for ref in running:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    for task in running.values():
        on_done(task, _stopped_outcome(Path(task.out) / task.name))


# --- the entry point --------------------------------------------------------------------------------


def run_study(
    path,
    jobs: int | None = None,
    out: str | os.PathLike | None = None,
    dry_run: bool = False,
    backend: str = "local",
    address: str | None = None,
    profile: str | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: Callable[[dict], None] | None = None,
    train_fn: TrainFn = train_with_cnnlab,
    study_dir: str | os.PathLike | None = None,
) -> StudyOutcome:
    """Run every (variant, seed) of the study file `path` and record them in `study.json`.

    Runs go to `<study_dir>/runs/<variant-slug>/seed<k>/v<N>/`, where `study_dir` defaults to
    `<out or 'studies'>/<study name>[-<profile>]`. Runs that completed before with the same
    config are skipped; a run that fails or diverges is recorded with its error and log and the
    others go on. `progress` receives events (`{"event": "start" | "done" | "skip", ...}`);
    `train_fn(config, out, name) -> run folder` replaces the trainer (tests, other trainers).
    All configs are validated before the first run starts.
    """
    if backend not in BACKENDS:
        raise CnnlabError(f"Unknown study backend '{backend}'; choose one of: {', '.join(BACKENDS)}.")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise CnnlabError(f"--jobs must be a positive integer, got {jobs!r}.")
    study = path if isinstance(path, Study) else load_study(path, profile=profile)
    folder = Path(study_dir) if study_dir is not None else default_study_dir(study, out)
    notify = progress or (lambda event: None)
    if study.search is not None:
        return _run_search(study, folder, jobs, dry_run, backend, address, data_dir, train_fn, notify)
    if study.adaptive is not None:
        return _run_adaptive(study, folder, jobs, dry_run, backend, address, data_dir, train_fn, notify)
    specs = expand(study, data_dir=data_dir)
    if dry_run:
        return _plan(study, specs, folder, jobs, notify, dry_run=True)[0]
    # one study per folder; SIGTERM/SIGHUP stop the workers and record their runs as interrupted
    with study_lock(folder), _stop_on_signals():
        outcome, state, todo = _plan(study, specs, folder, jobs, notify, dry_run=False)
        try:
            _execute_plan(outcome, state, todo, backend, address, train_fn, notify)
        except KeyboardInterrupt as err:
            raise _interrupted(outcome, state, getattr(err, "signum", signal.SIGINT)) from None
    return outcome


def _plan(study: Study, specs: list[RunSpec], folder: Path, jobs, notify, dry_run: bool,
          previous: dict | None = None, extra: dict | None = None):
    """The study's state (`previous`, by default study.json, merged in) and the runs still to do;
    `extra` adds keys to the state (a search's settings)."""
    state_path = folder / STATE_FILE
    if previous is None:
        previous = read_json(state_path) if state_path.is_file() else None
    state = _initial_state(study, specs, previous, extra)
    todo = [s for s in specs if not _is_done(state["runs"][s.key], folder)]
    jobs = jobs or max(1, min(usable_cores(), len(todo)))
    threads = _split_threads(jobs)
    outcome = StudyOutcome(study, folder, specs, skipped=[s.key for s in specs if s not in todo],
                           dry_run=dry_run, jobs=jobs, threads=threads)
    for key in outcome.skipped:
        notify({"event": "skip", "key": key, "run": state["runs"][key], "total": len(specs)})
    return outcome, state, todo


def _execute_plan(outcome: StudyOutcome, state: dict, todo: list[RunSpec], backend: str, address,
                  train_fn: TrainFn, notify) -> None:
    folder = outcome.study_dir
    state_path = folder / STATE_FILE
    total = len(outcome.runs)
    write_json(state_path, state)
    finished = [len(outcome.skipped)]

    def on_start(task: Task) -> None:
        entry = state["runs"][task.key]
        entry.update(status="running", started=_now())
        if task.resume:
            entry["resumed_from"] = _relative(task.resume, folder)
        write_json(state_path, state)
        notify({"event": "start", "key": task.key, "run": entry, "total": total})

    def on_done(task: Task, result: dict) -> None:
        entry = state["runs"][task.key]
        for name in ("path", "log"):  # stored relative, so a study folder can be moved
            if result.get(name):
                result[name] = _relative(result[name], folder)
        entry.pop("error", None)
        entry.update(result, finished=_now())
        status = entry["status"]
        (outcome.completed if status == DONE else outcome.interrupted if status == INTERRUPTED
         else outcome.failed).append(task.key)
        finished[0] += 1
        state["updated"] = _now()
        write_json(state_path, state)
        notify({"event": "done", "key": task.key, "run": entry, "done": finished[0], "total": total})

    can_resume = _accepts_resume(train_fn)
    tasks = []
    for s in todo:
        seed_dir = (folder / "runs" / s.slug).resolve()
        resume = resumable_run_dir(seed_dir / s.run_name, s.config) if can_resume else None
        if resume is not None:
            outcome.resumed.append(s.key)
        tasks.append(Task(s.key, s.config, str(seed_dir), s.run_name, outcome.threads, train_fn,
                          resume=str(resume) if resume else None))
    if backend == "ray":
        _run_ray(tasks, outcome.jobs, address, on_start, on_done)
    else:
        _run_local(tasks, outcome.jobs, on_start, on_done)


# --- adaptive seeds ---------------------------------------------------------------------------------


def _merge(total: StudyOutcome, part: StudyOutcome, done_here: set) -> None:
    """Add one round's outcome to the study's; a run completed in an earlier round of this same
    invocation is not 'skipped' (done before) when a later round sees it done."""
    total.runs = part.runs
    total.skipped = [k for k in part.skipped if k not in done_here]
    for name in ("completed", "failed", "interrupted", "resumed", "pruned"):
        getattr(total, name).extend(getattr(part, name))
    total.jobs, total.threads = part.jobs, part.threads


def _adaptive_specs(study: Study, counts: dict[str, int], data_dir) -> list[RunSpec]:
    from cnnlab.study.spec import expand_variant

    return [spec for v in study.variants for spec in expand_variant(study, v, study.adaptive.seeds[: counts[v.name]], data_dir)]


def _seed_decisions(study: Study, state: dict, folder: Path, counts: dict[str, int]):
    """The adaptive decisions from the completed runs of `state` (see `cnnlab.study.adaptive`)."""
    from cnnlab.study import adaptive, results

    data = results.from_state(state, folder)
    completed = {v.name: len(data.completed(v.name)) for v in study.variants}
    return adaptive.decide(results.analysis(data), counts, completed, study.adaptive.until_ci, study.adaptive.max)


def _run_adaptive(study: Study, folder: Path, jobs, dry_run: bool, backend, address, data_dir, train_fn,
                  notify) -> StudyOutcome:
    """Rounds of seeds: `min` for every variant, then one more for both sides of every comparison
    whose CI is still too wide, until none is. Each round's plan is recomputed from the completed
    runs, so a re-invocation replays the finished rounds (all skipped) and continues the rest.
    A dry run lists the first round that still has runs to do."""
    from cnnlab.study import adaptive

    counts = {v.name: study.adaptive.min for v in study.variants}
    specs = _adaptive_specs(study, counts, data_dir)  # validates every variant's config first
    state_path = folder / STATE_FILE
    known = read_json(state_path) if state_path.is_file() else None
    total = StudyOutcome(study, folder, specs, dry_run=dry_run)
    done_here: set = set()
    lock = contextlib.nullcontext() if dry_run else study_lock(folder)
    with lock, _stop_on_signals():
        while True:
            outcome, state, todo = _plan(study, specs, folder, jobs, notify, dry_run, previous=known)
            if todo and dry_run:
                _merge(total, outcome, done_here)
                break
            if todo:
                try:
                    _execute_plan(outcome, state, todo, backend, address, train_fn, notify)
                except KeyboardInterrupt as err:
                    _merge(total, outcome, done_here)
                    raise _interrupted(total, state, getattr(err, "signum", signal.SIGINT)) from None
            _merge(total, outcome, done_here)
            done_here.update(outcome.completed)
            known = {**state, "runs": {**(known or {}).get("runs", {}), **state["runs"]}}
            decisions = _seed_decisions(study, state, folder, counts)
            following = adaptive.next_counts(decisions, counts)
            if following == counts:
                break
            counts = following
            specs = _adaptive_specs(study, counts, data_dir)
            total.rounds += 1
    total.runs = specs
    return total


# --- hyperparameter search ---------------------------------------------------------------------------


class _SearchQueue(TaskQueue):
    """Trials made as workers free up: each `pop` asks Optuna for the next trial's settings."""

    def __init__(self, search, folder: Path, threads: int, train_fn: TrainFn, on_invalid):
        super().__init__((), threads)
        self.search, self.folder, self.train_fn, self.on_invalid = search, folder, train_fn, on_invalid
        self.asked: dict[str, object] = {}  # task key -> search.Asked, while its run is out

    def __len__(self) -> int:
        return len(self._tasks) + max(0, self.search.spec.trials - self.search.finished() - len(self.asked))

    def pop(self) -> Task | None:
        import functools

        from cnnlab.study.search import train_trial

        if self._tasks:
            return self._tasks.pop(0)
        while len(self):
            asked = self.search.ask()
            if asked.spec is None:  # its settings failed validation: failed, on to the next
                self.on_invalid(asked)
                continue
            spec = asked.spec
            self.asked[spec.key] = asked
            fn = functools.partial(train_trial, ref=asked.ref, train_fn=self.train_fn)
            return Task(spec.key, spec.config, str((self.folder / "runs" / spec.slug).resolve()), spec.run_name,
                        self.threads, fn)
        return None


def _run_search(study: Study, folder: Path, jobs, dry_run: bool, backend, address, data_dir, train_fn,
                notify) -> StudyOutcome:
    """The trials of a search study on Optuna, then the best configuration over `rerun_seeds` seeds.

    Trials run as workers free up (at most `jobs` at once), each an ordinary run folder under
    `runs/trial-<n>/`; Optuna's state lives in `search.db`, so a re-invocation keeps finished
    trials, retries those that were running, and runs only the trials still missing.
    """
    from cnnlab.study import search as optuna_search

    if backend != "local":
        raise CnnlabError(
            "A search study runs on the local backend: its trials report every epoch to the Optuna "
            f"storage in the study folder ({optuna_search.STORAGE_FILE}, SQLite), which workers on other "
            "machines cannot share. Run it without --backend ray (use --jobs for parallel trials)."
        )
    spec = study.search
    extra = {"search": optuna_search.search_settings(study)}
    jobs = jobs or max(1, min(usable_cores(), spec.trials))
    total = StudyOutcome(study, folder, [], dry_run=dry_run, jobs=jobs, threads=_split_threads(jobs))
    if dry_run:
        found = optuna_search.Search(study, folder, data_dir, create=False)
        total.search = {**extra["search"], "counts": found.counts(), "finished": found.finished(),
                        "parameters": [p.describe() for p in spec.parameters]}
        best = found.best_study() if found.finished() >= spec.trials else None
        if best is not None:
            total.runs = expand(best, data_dir=data_dir)
            total.skipped = [s.key for s in total.runs if folder.joinpath(STATE_FILE).is_file()
                             and _is_done(read_json(folder / STATE_FILE)["runs"].get(s.key, {}), folder)]
        return total
    with study_lock(folder), _stop_on_signals():
        found = optuna_search.Search(study, folder, data_dir)
        if not (folder / STATE_FILE).is_file():  # a study folder from the start: `cnnlab report` works on it
            write_json(folder / STATE_FILE, _initial_state(study, [], None, extra))
        found.recover()  # trials a killed study left running: failed, and queued again
        queue = _SearchQueue(found, folder, total.threads, train_fn,
                             on_invalid=lambda asked: total.failed.append(optuna_search.trial_slug(asked.number)))

        def trial_run(task: Task, **fields) -> dict:
            return {"variant": f"trial {queue.asked[task.key].number}", "seed": task.config["train"]["seed"], **fields}

        def on_start(task: Task) -> None:
            notify({"event": "start", "key": task.key, "run": trial_run(task, status="running"), "total": spec.trials})

        def on_done(task: Task, result: dict) -> None:
            run = trial_run(task)
            asked = queue.asked.pop(task.key)
            for name in ("path", "log"):
                if result.get(name):
                    result[name] = _relative(result[name], folder)
            interrupted = result.get("status") == INTERRUPTED
            trial_state = found.tell(asked, result, interrupted)
            (total.interrupted if interrupted else total.pruned if trial_state == PRUNED
             else total.completed if trial_state == "complete" else total.failed).append(task.key)
            value = found.optuna_study.trials[asked.number].value if trial_state == "complete" else None
            notify({"event": "done", "key": task.key, "done": found.finished(), "total": spec.trials,
                    "run": {**run, **result, "status": "interrupted" if interrupted else trial_state, "val_acc": value}})

        try:
            _run_local(queue, jobs, on_start, on_done)
        except KeyboardInterrupt as err:
            raise _search_interrupted(total, found, getattr(err, "signum", signal.SIGINT)) from None
        total.search = {**extra["search"], "counts": found.counts(), "finished": found.finished(),
                        "parameters": [p.describe() for p in spec.parameters]}
        best = found.best_study()
        if best is None or found.finished() < spec.trials:
            return total  # no completed trial (all failed or pruned): nothing to re-run
        extra["search"]["best_trial"] = found.best_params()[0]
        specs = expand(best, data_dir=data_dir)
        outcome, state, todo = _plan(best, specs, folder, jobs, notify, dry_run=False, extra=extra)
        try:
            _execute_plan(outcome, state, todo, "local", address, train_fn, notify)
        except KeyboardInterrupt as err:
            raise _interrupted(outcome, state, getattr(err, "signum", signal.SIGINT)) from None
    total.runs, total.skipped = outcome.runs, outcome.skipped
    total.completed += outcome.completed
    total.failed += outcome.failed
    total.resumed += outcome.resumed
    return total


def _relative(path, folder: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def _search_interrupted(outcome: StudyOutcome, found, signum: int) -> StudyInterrupted:
    counts = found.counts()
    message = (
        f"Search study '{outcome.study.name}' stopped by {_signal_name(signum)}: {len(outcome.interrupted)} trial(s) "
        f"interrupted (they run again, with the same settings, when the study continues); "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed of "
        f"{found.spec.trials} trials; {outcome.study_dir / 'search.db'} records them. Run the same "
        "`cnnlab study` command again to continue."
    )
    return StudyInterrupted(message, signum, outcome)


def _signal_name(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return "Ctrl-C" if signum == signal.SIGINT else name


def _interrupted(outcome: StudyOutcome, state: dict, signum: int) -> StudyInterrupted:
    """The error `run_study` raises once a signal stopped it and study.json is written."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    how = "Ctrl-C" if signum == signal.SIGINT else name
    counts = {}
    for entry in state["runs"].values():
        counts[entry.get("status")] = counts.get(entry.get("status"), 0) + 1
    not_started = counts.get(PENDING, 0)
    message = (
        f"Study '{outcome.study.name}' stopped by {how}: {len(outcome.interrupted)} run(s) interrupted "
        f"(each keeps its last checkpoint and continues from it), {not_started} not started, "
        f"{counts.get(DONE, 0)} completed, {counts.get(FAILED, 0) + counts.get(DIVERGED, 0)} failed; "
        f"{outcome.study_dir / STATE_FILE} records them. Run the same `cnnlab study` command again "
        "to continue."
    )
    return StudyInterrupted(message, signum, outcome)
