"""`--backend ray` against a real Ray head started on 127.0.0.1 (issue 13, item 8).

One head (2 CPUs, its own temp folder) serves every test in this module and is stopped at the
end (as `ray stop --force` would, but only its own processes: see `stop_head`). Ray binds its node to the routable IP unless told that the
cluster is single-machine (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), so the head and this driver
both get that setting (and token auth off) and nothing listens beyond the loopback interface.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cnnlab import cli
from cnnlab.errors import CnnlabError
from cnnlab.study import run_study
from cnnlab.study.runner import StudyInterrupted, ray_init_options
from cnnlab.study.store import read_state
from cnnlab.utils import read_json

from fakes import CRASH_LR, STOPPABLE_LR, fake_train, stoppable_train

ray = pytest.importorskip("ray")  # in the `test` extra, so CI always has it
pytestmark = pytest.mark.slow
# a single-machine cluster on the loopback interface; no token auth (which would read and
# write ~/.ray/auth_token, outside the test's folders)
HEAD_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_cli(*args: str, env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    exe = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of the live processes, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), cmdline)
    return found


def stop_head(temp: Path, timeout: float = 30) -> None:
    """`ray stop --force`, but only for this head: SIGKILL every process whose command line
    names its temp folder (GCS, raylet, agents) and all their descendants (the workers), so
    another Ray on the same machine is left alone and nothing of this one is left over."""
    procs = _processes()
    doomed = {pid for pid, (_, cmd) in procs.items() if str(temp) in cmd and pid != os.getpid()}
    assert doomed, f"no process of the Ray head under {temp} was found"
    while True:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in doomed} - doomed
        if not more:
            break
        doomed |= more
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while doomed and time.monotonic() < deadline:
        time.sleep(0.1)
        doomed &= set(_processes())
    assert not doomed, f"Ray processes left after stopping the head: {sorted(doomed)}"


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The address of a Ray head on 127.0.0.1 with 2 CPUs; stopped (all its processes) after."""
    import ray._private.ray_constants as ray_constants

    temp = tmp_path_factory.mktemp("ray")  # Ray's sockets and logs, not /tmp/ray
    env = {**os.environ, **HEAD_ENV, "RAY_TMPDIR": str(temp)}
    saved = {var: os.environ.get(var) for var in (*HEAD_ENV, "RAY_TMPDIR")}
    os.environ.update({k: env[k] for k in saved})
    saved_flag, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    port = free_port()
    try:
        started = ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                          "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        stop_head(temp)
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def write_study(folder: Path, lrs, seeds: int, epochs: int = 1) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits", "train_limit": 200}, "model": {"name": "mlp"},
                 "train": {"epochs": epochs, "batch_size": 64}},
        "grid": {"optim.lr": lrs}, "seeds": seeds,
    }))
    return path


def finished_runs(study_dir: Path) -> dict:
    """key -> (test_acc, metrics.csv rows without the wall-clock column), from the folders."""
    found = {}
    for key, entry in read_state(study_dir)["runs"].items():
        run_dir = study_dir / entry["path"]
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = [{k: v for k, v in row.items() if k != "epoch_s"} for row in csv.DictReader(f)]
        found[key] = (entry["status"], entry["test_acc"], rows, (run_dir.parent / "study.log").is_file())
    return found


def test_a_study_on_a_ray_cluster_equals_the_local_backend(ray_head, tmp_path):
    # 3 runs on 2 jobs: more runs than workers, so one worker takes a second run
    study = write_study(tmp_path, [0.05, 0.02, 0.01], seeds=1)
    on_ray = run_study(study, jobs=2, backend="ray", address=ray_head, out=tmp_path / "ray")
    on_local = run_study(study, jobs=2, backend="local", out=tmp_path / "local")
    assert len(on_ray.completed) == 3 and on_ray.ok and on_local.ok
    assert on_ray.threads == on_local.threads
    ray_runs, local_runs = finished_runs(on_ray.study_dir), finished_runs(on_local.study_dir)
    assert ray_runs == local_runs  # same test accuracy and per-epoch metrics, to the last digit
    assert all(status == "completed" and log for status, _, _, log in ray_runs.values())
    # the run folders sit under the study folder exactly where the local backend puts them
    state = read_state(on_ray.study_dir)
    assert sorted(e["path"] for e in state["runs"].values()) == sorted(
        e["path"] for e in read_state(on_local.study_dir)["runs"].values())


def test_failed_and_stopped_ray_tasks_are_recorded_as_with_the_local_backend(ray_head, tmp_path):
    """A crashing run is failed with its log; SIGTERM to the study stops the running task
    (KeyboardInterrupt in it), which is recorded interrupted with its resumable folder."""
    study = write_study(tmp_path, [0.01, CRASH_LR, STOPPABLE_LR], seeds=1)
    stop = threading.Timer(0, lambda: None)

    def progress(event):
        nonlocal stop
        if event["event"] == "start" and event["key"] == "optim.lr=3/seed0":
            stop = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
            stop.start()

    with pytest.raises(StudyInterrupted, match="stopped by SIGTERM: 1 run"):
        run_study(study, jobs=2, backend="ray", address=ray_head, out=tmp_path, train_fn=stoppable_train,
                  progress=progress)
    stop.cancel()
    state = read_state(tmp_path / "s")
    runs = state["runs"]
    assert runs["optim.lr=0.01/seed0"]["status"] == "completed"
    crashed = runs["optim.lr=9/seed0"]
    assert crashed["status"] == "failed" and "simulated crash at lr=9.0" in crashed["error"]
    assert "RuntimeError: simulated crash" in (tmp_path / "s" / crashed["log"]).read_text()
    # one thread per run (2 jobs on 2 CPUs), in the environment Ray gave the worker too
    ok_log = (tmp_path / "s" / runs["optim.lr=0.01/seed0"]["log"]).read_text()
    assert "threads=1 OMP_NUM_THREADS=1" in ok_log
    stopped = runs["optim.lr=3/seed0"]
    assert stopped["status"] == "interrupted" and stopped["path"] == "runs/optim.lr=3/seed0/v1"
    assert read_json(tmp_path / "s" / stopped["path"] / "result.json")["status"] == "interrupted"


def test_an_unreachable_address_is_a_quick_clear_error(tmp_path, capsys):
    study = write_study(tmp_path, [0.01], seeds=1)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert cli.main(["study", str(study), "--backend", "ray", "--address", address, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Cannot reach a Ray cluster at '{address}'" in err and "ray start --head" in err
    assert "Traceback" not in err
    with pytest.raises(CnnlabError, match="not HOST:PORT"):
        run_study(study, backend="ray", address="head-node", out=tmp_path, train_fn=fake_train)


def test_without_ray_installed_the_error_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    study = write_study(tmp_path, [0.01], seeds=1)
    assert cli.main(["study", str(study), "--backend", "ray", "--out", str(tmp_path)]) == 2
    assert "pip install 'cnnlab[ray]'" in capsys.readouterr().err


def test_without_an_address_ray_starts_a_private_instance_sized_for_the_jobs():
    options = ray_init_options(None, jobs=3, threads=2, modules=[])
    assert options["num_cpus"] == 6 and options["_node_ip_address"] == "127.0.0.1"
    assert options["include_dashboard"] is False and "address" not in options
    assert ray_init_options("head:6379", jobs=3, threads=2, modules=[])["address"] == "head:6379"
