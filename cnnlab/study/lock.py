"""One `cnnlab study` at a time per study folder: an advisory lock on `<study_dir>/study.lock`.

The lock is `fcntl.flock` on that file, so the kernel releases it when the holder exits for
any reason (even `kill -9`): a lock file left behind by a dead process is simply taken over by
the next study. The file's content only names the holder (pid, host, start time, command) for
the error message the second study prints. The file is removed on release; a study that opened
the old file just before it was removed notices (the path then names another file or none)
and tries again, so two studies can never both believe they hold the lock.
Where the file system has no flock (some network file systems), the study runs unlocked.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.utils import make_dirs, writing

LOCK_FILE = "study.lock"


class StudyLocked(CnnlabError):
    """Another process holds the study folder's lock."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def _holder_text(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its details yet)"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')}" + (f": {holder['command']}" if holder.get("command") else ""))


def read_holder(study_dir: str | os.PathLike) -> dict:
    """What the lock file says about its holder ({} when absent or unreadable)."""
    try:
        data = json.loads((Path(study_dir) / LOCK_FILE).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_locked(study_dir: str | os.PathLike) -> bool:
    """Whether a live process holds the lock now (used to tell a running study from a dead one)."""
    import fcntl

    path = Path(study_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _command_line() -> str:
    prog = os.path.basename(sys.argv[0] or "python")
    if prog in ("__main__.py", "cli.py"):  # python -m cnnlab
        prog = "cnnlab"
    return " ".join([prog] + sys.argv[1:])


@contextlib.contextmanager
def study_lock(study_dir: str | os.PathLike, command: str | None = None):
    """Hold `<study_dir>/study.lock` inside the block; StudyLocked (exit 2) if another holds it."""
    import fcntl

    folder = Path(study_dir)
    path = folder / LOCK_FILE
    make_dirs(folder)
    while True:
        with writing(path):  # a read-only or full study folder: exit 2 naming it
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(folder)
            raise StudyLocked(
                f"Study folder '{folder}' is in use by another `cnnlab study`: {_holder_text(holder)}. "
                "Wait for it to finish, or stop it (e.g. kill its pid; it records its runs as "
                "interrupted) and run this command again to continue.", holder) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            yield None  # no locking on this file system
            return
        try:  # the file may have been removed (and maybe re-created) since we opened it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command or _command_line()}
    try:
        with writing(path):
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))
        yield holder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked, so no one can lock the old file after us
        os.close(fd)
