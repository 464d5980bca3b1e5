"""The public API as the README uses it, from a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bare_import_reaches_cnnlab_plot_curves():
    # `import cnnlab; cnnlab.plot.curves(run)` without importing cnnlab.plot first
    code = ("import cnnlab, sys; assert 'cnnlab.plot' not in sys.modules; "
            "f = cnnlab.plot.curves; print(f.__module__, callable(f), callable(cnnlab.Run.list))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cnnlab.results.plots", "True", "True"]
