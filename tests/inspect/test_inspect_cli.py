"""The inspection commands: thin wrappers that print, write files and exit 2 on user errors."""

from __future__ import annotations

from PIL import Image

from cnnlab.cli import main


def test_summary_command_prints_the_table(capsys):
    assert main(["summary", "lenet", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lenet: input 1x28x28") and "Total params:                    60,578" in out


def test_summary_command_scratch_engine_and_input(capsys):
    assert main(["summary", "small_cnn", "--engine", "scratch", "--input", "1x32x32", "--classes", "5"]) == 0
    out = capsys.readouterr().out
    assert "engine scratch" in out and "[32, 16, 16]" in out and "fc2 (Linear)" in out


def test_summary_of_a_run_folder(capsys, tiny_run):
    assert main(["summary", str(tiny_run.path)]) == 0
    out = capsys.readouterr().out
    assert "input 1x8x8" in out and f"{tiny_run.result['params']:,}" in out


def test_user_errors_exit_2_with_one_paragraph(capsys):
    assert main(["summary", "lenet", "--input", "1x4x4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "needs at least" in err and "Traceback" not in err


def test_diagram_command_writes_the_file(tmp_path, capsys):
    out = tmp_path / "model.svg"
    assert main(["diagram", "mlp", "-o", str(out), "--horizontal"]) == 0
    assert out.read_bytes().startswith(b"<?xml") and str(out) in capsys.readouterr().out


def test_plot_and_predict_commands_on_a_run(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run.path), "--mistakes"]) == 0
    printed = capsys.readouterr().out.splitlines()
    # the mistakes grid goes to mistakes.png, so the sample grid predictions.png is kept
    assert printed == [f"wrote {tiny_run.path / name}" for name in ("curves.png", "confusion.png", "mistakes.png")]
    with Image.open(tiny_run.path / "confusion.png") as image:
        assert image.size == (920, 800)  # sized for the 10 digit classes
    csv_path = tmp_path / "submission.csv"
    assert main(["predict", str(tiny_run.path), "--dataset", "digits", "--csv", str(csv_path), "--kaggle"]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and lines[1].startswith("1,") and len(lines) > 300
    assert "accuracy" in capsys.readouterr().err


def test_predict_command_prints_csv_and_lists_bad_files(tiny_run, tmp_path, capsys):
    good, bad = tmp_path / "seven.png", tmp_path / "bad.png"
    Image.new("L", (28, 28), 128).save(good)
    bad.write_bytes(b"\x00")
    assert main(["predict", str(tiny_run.path), str(good), str(bad)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "id,label,class," + ",".join(f"p_{d}" for d in range(10))
    assert captured.out.splitlines()[1].startswith(str(good))
    assert "other size or mode" in captured.err and f"skipped unreadable file {bad}" in captured.err


def test_diagram_of_a_run_defaults_to_model_png_in_the_run_folder(tiny_run, tmp_path, capsys, monkeypatch):
    assert main(["diagram", str(tiny_run.path)]) == 0
    assert (tiny_run.path / "model.png").is_file()
    assert str(tiny_run.path / "model.png") in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["diagram", "lenet", "--format", "pdf"]) == 0
    assert (tmp_path / "lenet.pdf").read_bytes().startswith(b"%PDF")


def test_a_narrow_models_diagram_title_is_wrapped_inside_the_figure():
    from cnnlab.inspect import diagram

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = diagram("mlp")
    renderer = FigureCanvasAgg(fig).get_renderer()
    title = fig.axes[0].texts[-1]
    box = title.get_window_extent(renderer)
    assert "\n" in title.get_text() and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


def test_predict_command_defaults_to_the_runs_test_split(tiny_run, capsys):
    assert main(["predict", str(tiny_run.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id,label,class,true_label,true_class")
    assert len(lines) == 1 + tiny_run.result["test_samples"]


def test_python_warnings_print_as_one_line(tiny_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run.path, copy)
    (copy / "best.pt").unlink()  # the confusion matrix and grid are skipped with a warning
    assert main(["plot", str(copy)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: confusion.png and predictions.png skipped")
    assert ".py:" not in err[0] and "warnings.warn" not in err[0]
