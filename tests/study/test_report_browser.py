"""The report as a reader gets it: the HTML opened in headless Chromium (images decode, tables lay
out, the console stays clean) and the PDF a student hands in (its pages hold the report).

These need a Chromium-family browser. They skip only where none is found and
$CNNLAB_REQUIRE_BROWSER is unset; CI (.ci/run) installs Chromium and sets it, so there they fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
import unicodedata
from html import unescape

import pytest
from pypdf import PdfReader

from cnnlab import cli
from cnnlab.errors import CnnlabError
from cnnlab.study import stats
from cnnlab.study.pdf import find_browser, write_pdf
from cnnlab.study.results import from_study_dir

from chromium_devtools import DevToolsBrowser
from fakes import fake_train


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        message = ("no Chromium-family browser found ($CNNLAB_BROWSER, chromium, chromium-browser, google-chrome); "
                   "install one with `apt-get install chromium`")
        if os.environ.get("CNNLAB_REQUIRE_BROWSER"):
            pytest.fail(f"CNNLAB_REQUIRE_BROWSER is set but {message}")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def printed(lr_study, browser, tmp_path_factory):
    """`cnnlab report --pdf STUDY_DIR -o lab.html`: --pdf without a path (so lab.pdf), typed before
    STUDY_DIR; the command goes through the API's `report(..., pdf=True)`."""
    folder = tmp_path_factory.mktemp("printed")
    with contextlib.redirect_stdout(io.StringIO()) as said:
        assert cli.main(["report", "--pdf", str(lr_study), "-o", str(folder / "lab.html")]) == 0
    assert said.getvalue() == f"report: {folder / 'lab.html'}\npdf: {folder / 'lab.pdf'}\n"
    return folder


def _pdf_text(path) -> tuple[PdfReader, str]:
    reader = PdfReader(path)
    # NFKC: the PDF's fonts set "ff" as one ligature glyph, extracted as U+FB00
    return reader, unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in reader.pages))


def test_html_report_loads_in_chromium_with_every_image_and_table_and_no_console_error(printed, browser, tmp_path):
    html = (printed / "lab.html").read_text()
    chromium = DevToolsBrowser(browser, tmp_path / "profile")
    try:
        page = chromium.open((printed / "lab.html").as_uri())
        on_paper = chromium.open((printed / "lab.html").as_uri(), media="print")
        # the checker itself: a page with a broken image, an empty table and a script error is caught
        broken = tmp_path / "broken.html"
        broken.write_text("<!DOCTYPE html><html><head><title>broken</title></head><body>"
                          "<img alt='bad' src='data:image/png;base64,AAAA'><table><tbody></tbody></table>"
                          "<script>console.error('boom'); throw new Error('bad script')</script></body></html>")
        bad = chromium.open(broken.as_uri())
    finally:
        chromium.close()

    assert page.title == "Study report: lr" and "Factor effects" in page.headings
    assert len(page.images) == html.count("<img ") >= 2 and all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in page.images)
    assert len(page.tables) == html.count("<table>") >= 4
    assert all(t["rows"] > 0 and t["columns"] > 0 and t["width"] > 0 and t["height"] > 0 for t in page.tables)
    assert page.errors == [] and on_paper.errors == []
    # the print CSS: figures as wide as the page's text, table rows never split across pages
    assert all(abs(i["shown_width"] - on_paper.content_width) < 1 for i in on_paper.images)
    assert on_paper.row_breaks == ["avoid"] and page.row_breaks == ["auto"]

    assert bad.images[0]["width"] == 0 and bad.tables[0]["rows"] == 0
    assert any("boom" in e for e in bad.errors) and any("bad script" in e for e in bad.errors)


def test_cli_pdf_beside_the_html_has_the_reports_pages(printed, lr_study):
    pdf = printed / "lab.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert not [p.name for p in printed.iterdir() if p.name.endswith(".tmp")]  # written through a temp file
    reader, text = _pdf_text(pdf)
    assert len(reader.pages) >= 2
    html = (printed / "lab.html").read_text()
    words = lambda s: " ".join(s.split())  # noqa: E731 (line breaks in the PDF text are spaces here)
    for heading in map(unescape, re.findall(r"<h[12]>([^<]+)</h[12]>", html)):
        assert words(heading) in words(text), heading
    # a value from the results table: the baseline's mean ± std test accuracy
    data = from_study_dir(lr_study)
    baseline_accs = [r.result["test_acc"] for r in data.completed("optim.lr=0.01")]
    assert stats.format_mean_std(baseline_accs) in text
    assert sum(len(page.images) for page in reader.pages) >= 2  # both figures made it onto the pages


def test_api_writes_the_pdf_where_asked(printed, browser, tmp_path):
    out = write_pdf(printed / "lab.html", tmp_path / "hand-in.pdf")  # report(..., pdf=PATH) ends here too
    assert out == tmp_path / "hand-in.pdf" and sorted(p.name for p in tmp_path.iterdir()) == ["hand-in.pdf"]
    reader, text = _pdf_text(out)
    assert len(reader.pages) >= 2 and "Study report: lr" in text


def test_pdf_errors_say_what_to_do(lr_study, tmp_path, monkeypatch, capsys):
    html = tmp_path / "r.html"
    html.write_text("<!DOCTYPE html><html><body><h1>x</h1></body></html>")
    with pytest.raises(CnnlabError, match="ending in .pdf"):
        write_pdf(html, tmp_path / "r.txt")
    with pytest.raises(CnnlabError, match="no such file"):
        write_pdf(tmp_path / "missing.html")
    assert cli.main(["report", str(lr_study), "--pdf", str(lr_study)]) == 2  # a folder is not a PDF path
    assert "--pdf takes a path ending in .pdf" in capsys.readouterr().err

    monkeypatch.setenv("CNNLAB_BROWSER", str(tmp_path / "no-such-browser"))
    with pytest.raises(CnnlabError, match="not an executable"):
        write_pdf(html)

    fake = tmp_path / "failing-browser"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CNNLAB_BROWSER", str(fake))
    with pytest.raises(CnnlabError, match=r"could not print .* \(exit code 3\).*cannot open display"):
        write_pdf(html)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failing-browser", "r.html"]  # no PDF, no temp file

    fake.write_text("#!/bin/sh\nsleep 30\n")
    started = time.monotonic()
    with pytest.raises(CnnlabError, match="did not finish within 0.5 s"):
        write_pdf(html, timeout=0.5)
    assert time.monotonic() - started < 5

    monkeypatch.delenv("CNNLAB_BROWSER")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # `import weasyprint` fails
    with pytest.raises(CnnlabError, match=r"apt-get install chromium.*pip install weasyprint"):
        write_pdf(html)


def test_without_browser_or_weasyprint_the_command_exits_2_and_keeps_the_html(tmp_path, monkeypatch, capsys):
    cfg = {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "optim": {"lr": 0.01},
           "train": {"epochs": 2, "seed": 0, "engine": "torch", "threads": 1}}
    runs = [fake_train(cfg, str(tmp_path / "runs"), "a"), fake_train({**cfg, "optim": {"lr": 0.001}}, str(tmp_path / "runs"), "b")]
    monkeypatch.delenv("CNNLAB_BROWSER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # `import weasyprint` fails
    # `compare --pdf RUN_DIR RUN_DIR`: --pdf takes no run folder, as `report --pdf STUDY_DIR`
    assert cli.main(["compare", "--pdf", *map(str, runs), "-o", str(tmp_path / "cmp.html")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps its paragraph at 100 columns
    assert "apt-get install chromium" in err and "pip install weasyprint" in err and "Traceback" not in err
    assert "HTML report itself is written" in err and (tmp_path / "cmp.html").is_file()
    assert not (tmp_path / "cmp.pdf").exists()


def test_without_a_browser_weasyprint_prints_the_pdf(tmp_path, monkeypatch):
    from cnnlab.study import pdf

    if not pdf._weasyprint_available():
        message = "WeasyPrint (the test extra) or its Pango libraries are missing"
        if os.environ.get("CNNLAB_REQUIRE_BROWSER"):
            pytest.fail(f"CNNLAB_REQUIRE_BROWSER is set but {message}")
        pytest.skip(message)
    html = tmp_path / "small.html"
    html.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body>"
                    "<h1>Study report: small</h1><table><tr><th>variant</th><th>test acc (%)</th></tr>"
                    "<tr><td>lr=0.1</td><td>97.25 ± 0.10</td></tr></table></body></html>")
    monkeypatch.delenv("CNNLAB_BROWSER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert pdf.find_browser() is None
    out = write_pdf(html)
    reader, text = _pdf_text(out)
    assert out == tmp_path / "small.pdf" and len(reader.pages) == 1
    assert "Study report: small" in text and "97.25 ± 0.10" in text
