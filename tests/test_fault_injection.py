"""Fault injection (issue 12, item 9): `kill -9` a real training process at 20 seeded moments,
some of them inside checkpoint, metrics, result and figure writes, and a 4-run study mid-way;
every file left in the run folders loads, and continuing (`--resume`, or running the study
again) ends with metrics equal to an uninterrupted run's.

Cost: each `cnnlab` process here is forked from a warm forkserver that has torch, cnnlab and
matplotlib imported already, so a process costs its own work, not the ~1.5 s of imports; they
are real processes writing real run folders and are killed with SIGKILL. Writes are hit on
purpose with the test-only pause hook in `cnnlab.utils` (CNNLAB_TEST_WRITE_PAUSE=<name>:<s>):
that file's writes wait between the finished temporary file and the rename, long enough for
this test to see the temporary file and kill the process there."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import COMMAND_MODULES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261202
MOMENTS = 20
EPOCHS = 2
PAUSE_S = 0.25  # long enough to be seen by a 5 ms poll on a busy machine, short enough to be cheap
SPEC = [{"conv": {"out": 6, "k": 3, "pad": 1}, "name": "conv1"}, {"bn": {}, "name": "bn1"}, "relu",
        {"maxpool": 2}, "flatten", {"linear": "classes", "name": "fc"}]
BASE = {"data": {"dataset": "digits", "train_limit": 120, "test_limit": 60, "val_fraction": 0.25},
        "model": {"spec": SPEC}, "optim": {"lr": 0.05},
        "train": {"epochs": EPOCHS, "batch_size": 32, "threads": 1}}
TIMING = ("epoch_s",)  # metrics.csv columns that measure time, the only ones allowed to differ
RESULT_KEYS = ("status", "test_acc", "test_loss", "per_class_acc", "best_epoch", "best_value",
               "best_val_acc", "epochs_run")
TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)@[0-9a-f]{8}\.[a-z0-9_]{8}\.tmp$")
PRELOAD = [__name__, "torch", "torch._dynamo", "torch.optim", "threadpoolctl",
           "PIL.Image", "matplotlib.figure", "matplotlib.backends.backend_agg", "cnnlab.cli", "cnnlab.api",
           "cnnlab.training", "cnnlab.scratch.threads", "cnnlab.results.plots", "cnnlab.study",
           *(f"cnnlab.commands.{name}" for name in COMMAND_MODULES)]  # torch.optim imports _dynamo


def _cli_child(argv: list[str], env: dict, log: str) -> None:
    """A `cnnlab` process forked from the warm server: output to `log`, exit code as `main`'s."""
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from cnnlab import cli

    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: the forkserver's modules need none


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # ignored when the server is running already
    return context


def start(context, argv: list[str], log: Path, **env: str):
    process = context.Process(target=_cli_child, args=(argv, env, str(log)), name="cnnlab-under-test")
    process.start()
    return process


def finish(context, argv: list[str], log: Path, timeout: float = 300) -> int:
    process = start(context, argv, log)
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail(f"cnnlab {' '.join(argv)} did not finish in {timeout} s:\n{log.read_text()}")
    return process.exitcode


# --- what must hold after a kill ---------------------------------------------------------------


def check_files_load(folder: Path) -> None:
    """Every file under `folder` loads with our readers; hidden ones are only atomic-write temps."""
    from PIL import Image

    from cnnlab import runs
    from cnnlab.training.checkpoint import load_checkpoint
    from cnnlab.utils import read_json

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            assert TEMP.match(path.name), f"unexpected hidden file {path}"
        elif path.suffix in (".yaml", ".yml"):
            assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path
        elif path.suffix == ".json":
            read_json(path)
        elif path.name == runs.METRICS_FILE:
            rows = runs.read_metrics(path)
            assert path.read_text().startswith(",".join(runs.METRIC_COLUMNS)) or not rows, path
            assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)), path
        elif path.suffix in (".pt", ".npz"):
            assert "model" in load_checkpoint(path), path
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
        else:
            path.read_text(encoding="utf-8")  # log.txt, study.log
    if (folder / "config.yaml").is_file():
        from cnnlab.training.run import Run

        Run.load(folder)  # the folder as a whole reads back


def check_equal(run_dir: Path, reference: Path) -> None:
    from cnnlab import runs

    got, want = runs.read_metrics(run_dir / "metrics.csv"), runs.read_metrics(reference / "metrics.csv")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in TIMING} for row in rows]  # noqa: E731
    assert strip(got) == strip(want), run_dir
    result, expected = runs.read_result(run_dir), runs.read_result(reference)
    assert {k: result.get(k) for k in RESULT_KEYS} == {k: expected.get(k) for k in RESULT_KEYS}, run_dir
    assert result["status"] == "completed"


# --- one training process, killed at one moment -------------------------------------------------


def schedule(rng: random.Random) -> list[tuple]:
    """20 moments: 8 inside named writes (the k-th write of that file), 12 at random times
    after the first checkpoint (a fraction of the rest of an uninterrupted run's time)."""
    writes = [("last.pt", rng.randint(1, EPOCHS + 1)), ("last.pt", rng.randint(1, EPOCHS + 1)),
              ("best.pt", 1), ("metrics.csv", rng.randint(1, EPOCHS)), ("result.json", rng.randint(1, 2)),
              ("log.txt", rng.randint(2, EPOCHS + 1)), ("model.json", 1), ("curves.png", 1)]
    times = [("time", round(rng.uniform(0.0, 0.8), 3)) for _ in range(MOMENTS - len(writes))]
    return [("write", name, k) for name, k in writes] + times


def temps_of(run_dir: Path, name: str) -> set[str]:
    try:
        return {e for e in os.listdir(run_dir) if (m := TEMP.match(e)) and m["target"] == name}
    except FileNotFoundError:
        return set()


def kill_at(context, moment: tuple, out: Path, after_first_checkpoint_s: float) -> Path:
    """Start a training run in `out`, kill -9 it at `moment`; return its folder. A moment the
    kill misses is tried again in a fresh folder: a time moment that the run outlived (a machine
    faster than the reference's) at a third of the delay; a write that the busy machine let
    finish before the kill arrived, as it was. Every moment is a real kill where it was meant."""
    delay = moment[1] * after_first_checkpoint_s if moment[0] == "time" else 0.0
    for attempt in range(4):
        folder = out / f"attempt{attempt}"
        killed, run_dir = _kill_once(context, moment, folder, delay)
        if killed:
            return run_dir
        delay /= 3
    pytest.fail(f"{moment}: every attempt missed its moment")


def _kill_once(context, moment: tuple, out: Path, delay: float) -> tuple[bool, Path]:
    config = out / "config.yaml"
    out.mkdir(parents=True)
    config.write_text(yaml.safe_dump(BASE))
    run_dir = out / "r" / "v1"
    plots = moment[:2] == ("write", "curves.png")
    argv = ["train", str(config), "--out", str(out), "--name", "r", "--quiet"] + ([] if plots else ["--no-plots"])
    env = {"CNNLAB_TEST_WRITE_PAUSE": f"{moment[1]}:{PAUSE_S}"} if moment[0] == "write" else {}
    process = start(context, argv, out / "killed.log", **env)
    deadline = time.monotonic() + 300
    seen: set[str] = set()
    try:
        if moment[0] == "write":
            _, name, k = moment
            while len(seen) < k and process.is_alive() and time.monotonic() < deadline:
                seen |= temps_of(run_dir, name)
                if len(seen) < k:
                    time.sleep(0.005)
        else:
            while not (run_dir / "last.pt").exists() and process.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delay)
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had exited already
            pass
    finally:
        process.join(30)
    if process.exitcode != -signal.SIGKILL:
        assert process.exitcode == 0, (out / "killed.log").read_text()
        return False, run_dir
    if moment[0] == "write":  # inside that write, its temporary file is left behind
        return len(seen) == moment[2] and bool(temps_of(run_dir, moment[1]) & seen), run_dir
    return True, run_dir


def recover(context, run_dir: Path, reference: Path, moment: tuple) -> str:
    """Check the killed folder, continue it, check the outcome; return how it was continued."""
    from cnnlab import runs

    check_files_load(run_dir)
    out = run_dir.parent.parent  # the attempt's folder
    status = runs.read_result(run_dir).get("status")
    if status == "completed":  # killed after training, e.g. while drawing the figures
        assert finish(context, ["train", "--resume", str(run_dir), "--quiet"], out / "resume.log") == 2
        assert "nothing to resume" in " ".join((out / "resume.log").read_text().split())
        how = "completed"
        if moment[:2] == ("write", "curves.png"):
            assert finish(context, ["plot", str(run_dir)], out / "plot.log") == 0, (out / "plot.log").read_text()
            how = "completed, figures redrawn"
    else:
        assert status in ("running", None) or status == "interrupted", (moment, status)
        code = finish(context, ["train", "--resume", str(run_dir), "--quiet", "--no-plots"], out / "resume.log")
        assert code == 0, (moment, (out / "resume.log").read_text())
        how = "resumed"
    check_equal(run_dir, reference)
    check_files_load(run_dir)
    return how


def reference_run(context, tmp_path: Path) -> tuple[Path, float]:
    """An uninterrupted run, and the time from its first last.pt to its end."""
    out = tmp_path / "reference"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(BASE))
    process = start(context, ["train", str(out / "config.yaml"), "--out", str(out), "--name", "r", "--quiet",
                              "--no-plots"], out / "log")
    run_dir = out / "r" / "v1"
    while not (run_dir / "last.pt").exists() and process.is_alive():
        time.sleep(0.005)
    first = time.monotonic()
    process.join(300)
    assert process.exitcode == 0, (out / "log").read_text()
    return run_dir, time.monotonic() - first


def test_kill_9_at_20_seeded_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    context = _context()
    reference, rest_s = reference_run(context, tmp_path)
    moments = schedule(random.Random(SEED))

    def one(index_moment):
        index, moment = index_moment
        run_dir = kill_at(context, moment, tmp_path / f"k{index:02d}", rest_s)
        return moment, recover(context, run_dir, reference, moment)

    with ThreadPoolExecutor(max_workers=3) as pool:  # kills and resumes of different folders overlap
        outcomes = list(pool.map(one, enumerate(moments)))
    assert len(outcomes) == MOMENTS
    hows = [how for _, how in outcomes]
    assert hows.count("resumed") >= MOMENTS // 2, outcomes  # most kills land mid-training
    assert ("write", "curves.png", 1) in [m for m, _ in outcomes]


# --- a study, killed mid-way and run again -----------------------------------------------------


def test_a_4_run_study_killed_with_kill_9_and_run_again_equals_uninterrupted_runs(tmp_path):
    """kill -9 of the study's whole process group (parent and worker: nothing can save on the
    way out), at a seeded moment once the first run has checkpointed; running the same command
    again completes all 4 runs, each equal to an uninterrupted run of its config. One job: a
    second worker would double the torch imports, the bulk of this test's cost, and the
    signal tests in tests/study already cover parallel workers."""
    context = _context()
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "base": BASE, "grid": {"optim.lr": [0.05, 0.02]}, "seeds": 2}))
    out = tmp_path / "studies"
    argv = [sys.executable, "-m", "cnnlab", "study", str(study), "--out", str(out), "--jobs", "1", "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    delay = random.Random(SEED).uniform(0.0, 1.0)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("s/runs/*/seed*/v1/last.pt")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.005)
        time.sleep(delay)
        assert proc.poll() is None, "the study finished before the kill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # parent and workers alike
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = json.loads((out / "s" / "study.json").read_text())
    assert not all(run["status"] == "completed" for run in state["runs"].values())
    for run_dir in out.glob("s/runs/*/seed*/v*"):
        check_files_load(run_dir)

    again = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    state = json.loads((out / "s" / "study.json").read_text())
    assert len(state["runs"]) == 4 and {r["status"] for r in state["runs"].values()} == {"completed"}, state
    for key, run in state["runs"].items():
        run_dir = out / "s" / run["path"]
        check_files_load(run_dir)
        reference = tmp_path / "reference" / run["slug"] / f"seed{run['seed']}"
        reference.mkdir(parents=True)
        assert finish(context, ["train", str(run_dir / "config.yaml"), "--out", str(reference), "--name", "r",
                                "--quiet", "--no-plots"], reference / "log") == 0, (reference / "log").read_text()
        check_equal(run_dir, reference / "r" / "v1")
