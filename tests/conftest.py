"""Shared fixtures: the offline datasets in ../shared/data, golden files, thread limits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The suite starts ~100 Python processes (study workers, `cnnlab` commands); with bytecode
# writing off (PYTHONDONTWRITEBYTECODE, set on some machines) each compiles cnnlab's sources
# again, ~0.3 s a process. Written once here, the __pycache__ folders (git-ignored) serve all.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files")


@pytest.fixture
def update_golden(request) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline copies of MNIST, Fashion-MNIST and CIFAR-10 (tests only; never the library)."""
    path = Path(os.environ.get("CNNLAB_SHARED_DATA", SHARED_DATA))
    if not (path / "mnist").is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory):
    """Each test gets its own decoded-data cache, never the user's ~/.cache, and loads its
    datasets afresh.

    Set directly (not through `monkeypatch`) so a test's own `monkeypatch.undo()` keeps it.
    """
    from cnnlab.data.cache import forget_loaded

    before = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("cnnlab-cache"))
    forget_loaded()  # nor datasets another test loaded into this process
    yield
    if before is None:
        os.environ.pop("CNNLAB_CACHE", None)
    else:
        os.environ["CNNLAB_CACHE"] = before


@pytest.fixture(autouse=True, scope="session")
def _limit_threads():
    import torch

    # pytest-xdist workers share the cores: each gets its share, so two workers on two cores do
    # not oversubscribe them (tests that start their own processes set their own threads)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))
    yield


# The files that take longest (measured: tens of seconds each, most of it in subprocesses) run
# first. `-n 2 --dist loadfile` hands files to the two workers in collection order, so a long
# file collected last keeps one worker busy while the other idles; longest first keeps the
# workers' finishing times within the length of one short file.
LONGEST_FIRST = (
    "study/test_examples.py", "study/test_ray_backend.py", "test_fault_injection.py",
    "study/test_signals.py", "study/test_search.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = Path(str(item.fspath)).as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith("tests/" + name)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within each file and among the rest is unchanged
