"""Leftover temporary files of killed atomic writes are removed by the next atomic write to the
folder, but never a live writer's (issue 12, F; the rule is in cnnlab/utils.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnlab import utils
from cnnlab.utils import atomic_path, atomic_write_text, remove_leftover_temps

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from cnnlab.utils import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("partial")
    print(tmp, flush=True)
    time.sleep(float(sys.argv[2]))
    tmp.write_text("whole")
"""


def hold_temp(target: Path, seconds: float) -> tuple[subprocess.Popen, Path]:
    """A writer in another process, inside atomic_path for `seconds`; returns it and its temp."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(seconds)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, Path(proc.stdout.readline().strip())


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_killed_writers_temp_is_removed_by_the_next_write(tmp_path):
    proc, temp = hold_temp(tmp_path / "curves.png", 60)
    assert temp.name.startswith(f".curves.png.{proc.pid}@") and temp.is_file()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert temp.is_file()  # a SIGKILL leaves it behind
    age(temp, utils.LEFTOVER_MIN_AGE_S + 1)
    atomic_write_text(tmp_path / "log.txt", "next write\n")
    assert not temp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_a_concurrent_writers_temp_is_never_removed(tmp_path):
    proc, temp = hold_temp(tmp_path / "study.log", 3)
    age(temp, utils.LEGACY_MAX_AGE_S * 2)  # even when it looks ancient: its pid is alive
    atomic_write_text(tmp_path / "other.txt", "x")
    assert remove_leftover_temps(tmp_path) == []
    assert temp.is_file()
    assert proc.wait(timeout=60) == 0
    assert (tmp_path / "study.log").read_text() == "whole" and not temp.exists()


def test_the_rule(tmp_path):
    host = utils._host_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()

    def make(name: str, seconds_old: float) -> Path:
        path = tmp_path / name
        path.write_text("x")
        age(path, seconds_old)
        return path

    gone = [make(f".a.pt.{dead.pid}@{host}.abcd1234.tmp", 60),  # dead owner, old enough
            make(".b.json.k2j4_x9z.tmp", utils.LEGACY_MAX_AGE_S + 60)]  # no owner named, a day old
    kept = [make(f".c.pt.{dead.pid}@{host}.abcd1235.tmp", 1),  # dead owner, but just written
            make(f".d.pt.{os.getpid()}@{host}.abcd1236.tmp", 3600),  # live owner
            make(f".e.pt.{dead.pid}@ffffffff.abcd1237.tmp", 3600 * 48),  # another host: cannot tell
            make(".f.json.k2j4_x9y.tmp", 3600),  # no owner named, recent
            make(".notes.tmp", 3600 * 48), make("data.tmp", 3600 * 48)]  # not ours
    assert sorted(remove_leftover_temps(tmp_path, now=now)) == sorted(gone)
    assert all(p.is_file() for p in kept) and not any(p.exists() for p in gone)


def test_a_failed_write_still_leaves_nothing(tmp_path):
    try:
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
