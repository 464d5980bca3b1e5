"""The study report as a PDF: the self-contained report.html printed by headless Chromium (or
WeasyPrint where no browser is installed), written atomically beside the HTML by default.

The browser is `$CNNLAB_BROWSER` when set, else the first of `BROWSER_NAMES` on the PATH. It
runs with a new empty profile, no network services and no sandbox (root in containers and CI
cannot use Chromium's sandbox, and the page is our own file with no script).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.utils import atomic_path

BROWSER_ENV = "CNNLAB_BROWSER"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEFAULT_TIMEOUT_S = 120.0
INSTALL_HINT = ("Install Chromium (`apt-get install chromium` on Debian/Ubuntu, or any Chrome/Chromium; "
                f"point ${BROWSER_ENV} at it if it is not on the PATH) or WeasyPrint (`pip install weasyprint`).")


def find_browser() -> str | None:
    """The Chromium-family browser to print with: $CNNLAB_BROWSER, else the PATH; None if none."""
    chosen = os.environ.get(BROWSER_ENV)
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise CnnlabError(f"${BROWSER_ENV} is set to '{chosen}', which is not an executable file. Point it at "
                              f"a Chromium or Chrome executable (for example /usr/bin/chromium), or unset it to "
                              f"look for {', '.join(BROWSER_NAMES)} on the PATH.")
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def headless_args(browser: str, user_data_dir: str | Path) -> list[str]:
    """The command line of a quiet, throw-away headless browser (the page or action comes after)."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
            f"--user-data-dir={user_data_dir}"]


def run_browser(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a browser command with a deadline; on timeout its whole process group is killed."""
    # A new session makes the browser its own process group, so its renderer and GPU helpers die with it.
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise CnnlabError(f"The browser '{command[0]}' did not finish within {timeout:g} s and was stopped. "
                              f"Try again with a longer timeout, or check that it starts: "
                              f"`{command[0]} --headless --no-sandbox --version`.") from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(text: bytes, lines: int = 5) -> str:
    kept = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _print_with_browser(browser: str, html_path: Path, pdf_tmp: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="cnnlab-browser-") as profile:
        command = headless_args(browser, profile) + [
            "--no-pdf-header-footer", f"--print-to-pdf={pdf_tmp}", html_path.resolve().as_uri()]
        done = run_browser(command, timeout)
    if done.returncode != 0 or not _is_pdf(pdf_tmp):
        raise CnnlabError(f"The browser '{browser}' could not print {html_path} to PDF (exit code "
                          f"{done.returncode}); its last messages: {_tail(done.stderr)}. Check that it starts "
                          f"(`{browser} --headless --no-sandbox --version`), or point ${BROWSER_ENV} at another "
                          f"Chromium or Chrome.")


def _print_with_weasyprint(html_path: Path, pdf_tmp: Path) -> None:
    import weasyprint

    try:
        weasyprint.HTML(filename=str(html_path)).write_pdf(str(pdf_tmp))
    except Exception as error:  # its own failure, on a file it was given: report it, not a traceback
        raise CnnlabError(f"WeasyPrint could not print {html_path} to PDF ({type(error).__name__}: {error}). "
                          f"Install Chromium instead (`apt-get install chromium`), which cnnlab prefers.") from None


def _weasyprint_available() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):  # OSError: installed, but its Pango libraries are missing
        return False
    return True


def _is_pdf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(5) == b"%PDF-"
    except OSError:
        return False


def pdf_target(html_path: str | Path, pdf_path: str | Path | None = None) -> Path:
    """Where the PDF of `html_path` goes: `pdf_path` when given, else beside the HTML as .pdf."""
    return Path(pdf_path) if pdf_path is not None else Path(html_path).with_suffix(".pdf")


def write_pdf(html_path: str | Path, pdf_path: str | Path | None = None, *,
              timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Print the HTML report `html_path` to `pdf_path` (default: beside it, .pdf); return the PDF path."""
    html_path = Path(html_path)
    if not html_path.is_file():
        raise CnnlabError(f"Cannot print '{html_path}' to PDF: no such file. Write the HTML report first "
                          f"(`cnnlab report STUDY_DIR`).")
    pdf_path = pdf_target(html_path, pdf_path)
    if pdf_path.suffix.lower() != ".pdf":
        raise CnnlabError(f"The PDF report needs a path ending in .pdf, got '{pdf_path}'.")
    if not pdf_path.parent.is_dir():
        raise CnnlabError(f"Cannot write the PDF report to '{pdf_path}': the folder '{pdf_path.parent}' does not exist.")
    browser = find_browser()
    if browser is None and not _weasyprint_available():
        raise CnnlabError(f"Writing the report as PDF needs a headless browser or WeasyPrint, and neither was "
                          f"found (looked for ${BROWSER_ENV}, then {', '.join(BROWSER_NAMES)} on the PATH, then "
                          f"the weasyprint package). {INSTALL_HINT}")
    with atomic_path(pdf_path) as tmp:
        if browser is not None:
            _print_with_browser(browser, html_path, tmp, timeout)
        else:
            _print_with_weasyprint(html_path, tmp)
    return pdf_path
