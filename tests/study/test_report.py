import base64
import re

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.errors import CnnlabError
from cnnlab.runs import read_run
from cnnlab.study import aggregate, compare, factor_effects, interactions, report, stats

from fakes import fake_train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study_dir(lr_study):
    return lr_study  # conftest.py: shared with the browser and PDF tests, so it runs once


def test_aggregate_has_mean_std_and_welch_against_baseline(study_dir):
    rows = {r["variant"]: r for r in aggregate(study_dir)}
    assert list(rows) == ["optim.lr=0.01", "optim.lr=0.001", "optim.lr=0.0001"]
    accs = [read_run(p).result["test_acc"] for p in sorted((study_dir / "runs" / "optim.lr=0.001").glob("seed*/v1"))]
    row = rows["optim.lr=0.001"]
    assert row["n"] == 3 and row["test_acc_mean"] == pytest.approx(stats.mean(accs))
    assert row["test_acc_std"] == pytest.approx(stats.sample_std(accs))
    # the fake trainer's ceiling is 10 points lower at optim.lr=1e-3: clearly significant
    assert row["vs_baseline"]["difference"] == pytest.approx(-0.10, abs=0.02)
    assert row["vs_baseline"]["significant"] and "lower than the baseline at n=3" in row["verdict"]
    assert "vs_baseline" not in rows["optim.lr=0.01"]


def test_factor_effects_api_pairs_shared_seeds_and_reads_min_effect_from_the_study_file(study_dir):
    found = {e["level"]: e for e in factor_effects(study_dir)}
    assert set(found) == {0.001, 0.0001} and all(e["reference_level"] == 0.01 for e in found.values())
    effect = found[0.001]
    assert effect["factor"] == "optim.lr" and len(effect["cells"]) == 1
    accs = {lr: [read_run(p).result["test_acc"] for p in sorted((study_dir / "runs" / f"optim.lr={lr}").glob("seed*/v1"))]
            for lr in ("0.01", "0.001")}
    ref = stats.paired(accs["0.001"], accs["0.01"])  # the three seeds are shared: a paired test
    assert effect["main"]["test"] == "paired" and effect["main"]["p"] == pytest.approx(ref.p)
    assert effect["main"]["p_adjusted"] >= effect["main"]["p"] and effect["main"]["significant"]
    assert effect["power"]["min_effect"] == pytest.approx(0.01)  # report.min_effect: 1.0 point
    assert effect["power"]["n_needed"] == stats.n_needed(0.01, effect["main"]["spread"], "paired")
    assert interactions(study_dir) == []  # one factor: nothing to cross
    assert factor_effects(study_dir, min_effect=0.5)[0]["power"]["min_effect"] == pytest.approx(0.005)


def test_report_html_is_self_contained_with_tables_and_images(study_dir):
    out = report(study_dir)
    assert out == study_dir / "report.html"
    html = out.read_text()
    for heading in ("Setup", "Results", "Against the baseline (optim.lr=0.01)", "Factor effects", "Learning curves", "Diagnostics",
                    "Timing", "Model summaries", "Failed runs"):
        assert f">{heading}</h" in html
    assert html.count("<table>") >= 4 and "Learning rate against accuracy." in html
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert "src='report_" not in html  # nothing refers to files outside the HTML
    assert "Total params" in html  # the model summary table from cnnlab.inspect
    # the study file wrote baseline: lr=0.01; the report names it as it names every variant
    assert "<b>optim.lr=0.01</b>" in html and "Holm–Bonferroni" in html
    assert "optim.lr=0.001 vs optim.lr=0.01" in html  # the grid factor's level against the baseline's
    assert "detecting 1.00 points needs n=" in html  # report.min_effect from the study file


def test_report_markdown_has_pngs_beside_it(study_dir, tmp_path):
    out = report(study_dir, tmp_path / "lab.html")
    md = (tmp_path / "lab.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["lab_curves.png", "lab_accuracy.png"]
    assert all((tmp_path / link).read_bytes().startswith(PNG_MAGIC) for link in links)
    assert "| variant | n | test acc (%) |" in md and "| optim.lr=0.001 | 3 |" in md
    assert out.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(CnnlabError, match="ending in .html"):
        report(study_dir, tmp_path / "lab.pdf")


def test_compare_loose_runs(tmp_path):
    cfg = {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "optim": {"lr": 0.01},
           "train": {"epochs": 4, "seed": 0, "engine": "torch", "threads": 1}}
    a = fake_train(cfg, str(tmp_path / "runs"), "a")
    b = fake_train({**cfg, "optim": {"lr": 0.001}}, str(tmp_path / "runs"), "b")
    out = compare([a, tmp_path / "runs" / "b"], tmp_path / "cmp.html")
    md = out.with_suffix(".md").read_text()
    assert "| a/v1 | (base config) |" in md and "| b/v1 | optim.lr=0.001 |" in md
    assert "cannot be tested" in md  # one run each: no test, said plainly
    with pytest.raises(CnnlabError, match="not a run folder"):
        compare([tmp_path], tmp_path / "x.html")
    assert b.is_dir()


def test_cli_study_report_compare(study_dir, tmp_path, capsys):
    assert cli.main(["report", str(study_dir), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and "report:" in capsys.readouterr().out
    study_file = tmp_path / "s.yaml"
    study_file.write_text("base: {data: {dataset: digits}}\ngrid: {optim.lr: [0.1, 0.01]}\nseeds: 2\n")
    assert cli.main(["study", str(study_file), "--dry-run", "--out", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "4 runs (2 variants x 2 seeds)" in out and "[todo] runs/optim.lr=0.1/seed0" in out
    assert cli.main(["study", str(tmp_path / "missing.yaml")]) == 2
    assert "Cannot read study file" in capsys.readouterr().err
    runs = sorted(study_dir.glob("runs/*/seed0/v1"))[:2]
    assert cli.main(["compare", *map(str, runs), "-o", str(tmp_path / "c.html")]) == 0


def test_aggregate_as_frame(study_dir):
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(CnnlabError, match="needs pandas"):
            aggregate(study_dir, as_frame=True)
        return
    frame = aggregate(study_dir, as_frame=True)
    assert list(frame.index) == ["optim.lr=0.01", "optim.lr=0.001", "optim.lr=0.0001"] and (frame["n"] == 3).all()


def test_progress_lines():
    import io

    from cnnlab.study.progress import LineProgress, default_progress

    stream = io.StringIO()
    progress = default_progress(stream)
    assert isinstance(progress, LineProgress)  # not a terminal: plain lines
    run = {"variant": "lr=9", "seed": 1, "status": "failed", "wall_s": 2.25,
           "error": "Traceback...\nRuntimeError: boom", "log": "runs/lr=9/seed1/study.log"}
    progress({"event": "start", "run": run, "total": 4})
    progress({"event": "done", "run": run, "done": 3, "total": 4})
    assert stream.getvalue() == ("[3/4] failed    lr=9  seed 1  2.2 s  error: RuntimeError: boom  "
                                 "log: runs/lr=9/seed1/study.log\n")


def test_per_class_accuracy_is_averaged_per_variant_in_the_report(study_dir):
    from cnnlab.study.results import from_study_dir, per_class_rows

    data = from_study_dir(study_dir)
    classes, rows = per_class_rows(data)
    assert classes == [str(k) for k in range(10)]
    for row in rows:
        tables = [r.result["per_class_acc"] for r in data.completed(row["variant"])]
        assert row["n"] == len(tables)
        expected = sum(t["3"] for t in tables) / len(tables)
        assert row["per_class"]["3"] == pytest.approx(expected)
    html = report(study_dir).read_text()
    assert ">Per-class accuracy</h" in html
    assert f"{100 * rows[0]['per_class']['0']:.2f}" in html


def test_per_class_rows_cover_variants_on_different_datasets():
    from cnnlab.runs import RunRecord
    from cnnlab.study.results import RunEntry, StudyData, per_class_rows

    def entry(variant, table):
        record = RunRecord(path=None, result={"status": "completed", "per_class_acc": table})
        return RunEntry(variant, 0, "completed", record, None, None, None)

    data = StudyData(name="s", description="", base={}, variants=[{"name": "a", "changes": {}},
                     {"name": "b", "changes": {}}], baseline="a",
                     runs=[entry("a", {"0": 0.5, "1": 0.7}), entry("b", {"cat": 0.9})])
    classes, rows = per_class_rows(data)
    assert classes == ["0", "1", "cat"]
    assert rows[0]["per_class"]["0"] == 0.5 and np.isnan(rows[0]["per_class"]["cat"])
    assert rows[1]["per_class"]["cat"] == 0.9 and np.isnan(rows[1]["per_class"]["1"])
