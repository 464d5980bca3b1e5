from cnnlab.cli import main


def test_datasets_command_prints_a_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"data directory: {tmp_path}"
    assert lines[1].split()[:4] == ["name", "location", "present", "verified"]
    assert lines[2].split()[:2] == ["digits", "scikit-learn"]
    mnist = next(line for line in lines if line.startswith("mnist "))
    assert str(tmp_path / "mnist") in mnist and " NO " in mnist


def test_data_dir_falls_back_to_the_environment(tmp_path, monkeypatch):
    from cnnlab.data import resolve_data_dir

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CNNLAB_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == tmp_path / ".cache" / "cnnlab"


def test_datasets_command_points_at_a_cifar10_image_folder_in_the_data_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    (tmp_path / "cifar10-jpg.tar").write_bytes(b"")  # only its presence is looked at
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    cifar = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cifar10 "))
    assert " NO " in cifar and f"folder:{tmp_path / 'cifar10-jpg.tar'}" in cifar
