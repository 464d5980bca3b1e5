"""Small helpers shared by every module: atomic files, JSON, suggestions, `pair`."""

from __future__ import annotations

import contextlib
import difflib
import errno
import functools
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator


# Temporary files of atomic writes: `.<target>.<pid>@<host>.<random>.tmp` beside the target.
# A process killed mid-write (SIGKILL, power loss) leaves one behind; the next atomic write to the
# same folder removes such leftovers, by this rule, so a live writer's file is never touched:
#   - only names of exactly that form (or the older `.<target>.<random>.tmp` form);
#   - ours (same host tag) only when the pid in the name is no longer running AND the file is
#     older than LEFTOVER_MIN_AGE_S (a margin against pid namespaces that share a file system);
#     a live pid keeps its file however old it is (e.g. a study worker's study.log, open for
#     hours); a reused pid only delays the clean-up until that process ends;
#   - another host's: never (its pid cannot be checked from here);
#   - the older form, which names no owner: only when untouched for LEGACY_MAX_AGE_S.
# A folder is scanned at most once per SCAN_INTERVAL_S per process, so frequent writers (log.txt
# per epoch) pay almost nothing.
LEFTOVER_MIN_AGE_S = 10.0
LEGACY_MAX_AGE_S = 24 * 3600.0
SCAN_INTERVAL_S = 60.0
_RAND = r"[a-z0-9_]{8}"  # tempfile.mkstemp's random part
_TEMP_NAME = re.compile(rf"^\.(?P<target>.+)\.(?P<pid>\d+)@(?P<host>[0-9a-f]{{8}})\.{_RAND}\.tmp$")
_LEGACY_TEMP_NAME = re.compile(rf"^\.(?P<target>.+)\.{_RAND}\.tmp$")
_last_scan: dict[str, float] = {}


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep the file
    try:  # a zombie (exited, not yet reaped) no longer writes
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


def remove_leftover_temps(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove the temporary files of atomic writes that their writer can no longer finish (the
    rule above); return the paths removed. Errors (a file gone already, no permission) are ignored."""
    folder = Path(folder)
    now = time.time() if now is None else now
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        match = _TEMP_NAME.match(name)
        if match:
            stale = (match["host"] == host and age >= LEFTOVER_MIN_AGE_S
                     and not _pid_running(int(match["pid"])))
        else:
            stale = bool(_LEGACY_TEMP_NAME.match(name)) and age >= LEGACY_MAX_AGE_S
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _maybe_remove_leftovers(folder: Path) -> None:
    key = str(folder.resolve())
    now = time.monotonic()
    last = _last_scan.get(key)
    if last is not None and now - last < SCAN_INTERVAL_S:
        return
    _last_scan[key] = now
    remove_leftover_temps(folder)


# errno values that mean "this output cannot be written there", each with the reason in words
# and what to do; anything else is not about the place we write to and is left alone.
_OUTPUT_ERRNOS = {
    errno.ENOSPC: ("no space is left on the device", "free some space on it or write somewhere else"),
    errno.EDQUOT: ("the disk quota is used up", "free some space within the quota or write somewhere else"),
    errno.EFBIG: ("the file is larger than the file system allows", "write somewhere else"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable file system"),
    errno.EACCES: ("permission denied", "give yourself write permission there or choose another folder"),
    errno.EPERM: ("the operation is not permitted", "give yourself write permission there or choose "
                  "another folder"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose a path whose folders are folders"),
    # mkdir -p meets a file where a folder of the path should be
    errno.EEXIST: ("a part of the path is a file, not a folder", "choose a path whose folders are folders"),
    errno.EISDIR: ("a folder is in the way where the file goes", "move that folder or choose another path"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter path"),
}


def output_error(err: OSError, target: str | os.PathLike):
    """An OSError from writing `target` as an `OutputError` that names `target` (never the
    temporary file beside it) and says what to do; None when the error is not about writing
    there (e.g. a network error while downloading into it)."""
    from cnnlab.errors import OutputError

    known = _OUTPUT_ERRNOS.get(err.errno)
    if known is None:
        return None
    reason, advice = known
    detail = f" ({err.strerror})" if err.strerror and err.strerror.lower() != reason else ""
    if err.filename and target_of(err.filename) != Path(target):  # e.g. the file in the way
        detail = f" ({err.strerror or 'error'}: '{err.filename}')"
    return OutputError(f"Cannot write '{target}': {reason}{detail}. Nothing was left half-written; "
                       f"{advice}, then run the command again.", target=Path(target), reason=reason)


def target_of(filename: str | os.PathLike) -> Path:
    """The file an atomic write's temporary file stands for (`.<name>.<pid>@<host>.<random>.tmp`
    -> `<name>` in the same folder); any other path as it is."""
    path = Path(filename)
    match = _TEMP_NAME.match(path.name) or _LEGACY_TEMP_NAME.match(path.name)
    return path.with_name(match["target"]) if match else path


@contextlib.contextmanager
def writing(target: str | os.PathLike) -> Iterator[None]:
    """Turn OSErrors of writing (no space, read-only, no permission, ...) inside the block into
    an `OutputError` naming `target`; other errors pass unchanged."""
    try:
        yield
    except OSError as err:
        translated = output_error(err, target)
        if translated is None:
            raise
        raise translated from err


def make_dirs(path: str | os.PathLike) -> Path:
    """`mkdir -p`, with OS errors as an `OutputError` naming `path`."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    Readers never see a half-written file: either the old file or the new one. On failure
    the temporary file is removed and `path` is left untouched. The temporary file is named
    `.<name>.<pid>@<host>.<random>.tmp`; leftovers of killed writers in the same folder are
    removed first (see `remove_leftover_temps`). Writing errors of the OS (no space, read-only,
    no permission), from creating the folder to the final rename, including the caller's own
    writes to the temporary file, come out as an `OutputError` naming `path`.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _maybe_remove_leftovers(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host_tag()}.", suffix=".tmp",
                                   dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        yield tmp_path
        _pause_for_tests(path)
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        # an OS error about this write (the temporary file or no file named) names the target;
        # one about another file (e.g. a source read inside the block) is not ours to rename
        if isinstance(err, OSError) and (err.filename is None or target_of(err.filename) == path
                                         or Path(err.filename) == tmp_path):
            translated = output_error(err, path)
            if translated is not None:
                raise translated from err
        raise


# Test-only fault-injection hook. With CNNLAB_TEST_WRITE_PAUSE="<file name>:<seconds>" (e.g.
# "last.pt:0.3"), every atomic write of a file of that name waits that long between finishing
# its temporary file and renaming it into place, so a test can kill -9 a process in the middle
# of a checkpoint or figure write (tests/test_fault_injection.py). Unset, as always outside
# tests, it costs one dictionary lookup per write.
WRITE_PAUSE_ENV = "CNNLAB_TEST_WRITE_PAUSE"


def _pause_for_tests(path: Path) -> None:
    pause = os.environ.get(WRITE_PAUSE_ENV)
    if pause:
        name, _, seconds = pause.rpartition(":")
        if name == path.name:
            time.sleep(float(seconds))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure atomically; the format follows the suffix (png, svg, pdf)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)
    return path


def _json_default(obj):
    # numpy scalars and arrays, tuples, paths: written as plain JSON values
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option most like `name`, for 'did you mean' hints, or None."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """' Did you mean 'x'?' or an empty string."""
    match = closest(name, options)
    return f" Did you mean '{match}'?" if match else ""


def pair(value, name: str = "value") -> tuple[int, int]:
    """An int or a 2-sequence of ints as an (h, w) pair, as torch's layers accept them."""
    from cnnlab.errors import ModelError

    if isinstance(value, int) or hasattr(value, "__index__"):  # numpy integers too
        return int(value), int(value)
    try:
        first, second = value
        return int(first), int(second)
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be an int or a pair of ints; got {value!r}.") from None


def exit_skipping_teardown(code: int) -> None:
    """Exit with `code`. With torch loaded and no other thread running, the exit handlers run
    (`atexit` of every library: loggers, multiprocessing) and stdout/stderr are flushed, but
    the interpreter's teardown is skipped: there it garbage-collects torch's objects one by
    one, ~1.5 s after a `cnnlab train` or a study worker has finished, with nothing of ours
    left to write (our files are closed and renamed into place as they are written)."""
    import atexit
    import threading

    if "torch" not in sys.modules or threading.active_count() > 1:
        sys.exit(code)  # a thread may still have work to finish: the ordinary exit waits for it
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`cnnlab runs | head`) has nothing to take
            pass
    os._exit(code)
