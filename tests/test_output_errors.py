"""OS errors on outputs (issue 12, item 2): no space left, a read-only file system, no
permission, a file where a folder should be -> an OutputError (exit 2) that names the target,
never the temporary `.<name>.<pid>@<host>.<random>.tmp` beside it, and leaves nothing behind.
Tests run as root, where chmod blocks nothing, so the OS errors are raised by monkeypatching
`os.replace` (as the rename of a full disk's write would fail) or by a path through a file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from cnnlab import cli
from cnnlab.errors import OutputError
from cnnlab.utils import atomic_path, atomic_write_text, output_error, target_of


def refuse(monkeypatch, code: int) -> None:
    """Every rename fails with `code`, naming the temporary file as the OS does."""
    def replace(src, dst, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(src))

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "no space is left on the device"), (errno.EDQUOT, "the disk quota is used up"),
    (errno.EROFS, "the file system is read-only"), (errno.EACCES, "permission denied"),
    (errno.EPERM, "the operation is not permitted"),
])
def test_a_failed_rename_names_the_target_and_leaves_nothing(tmp_path, monkeypatch, code, reason):
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")
    refuse(monkeypatch, code)
    with pytest.raises(OutputError) as caught:
        atomic_write_text(target, "new\n")
    text = str(caught.value)
    assert text.startswith(f"Cannot write '{target}': {reason}") and ".tmp" not in text
    assert "then run the command again" in text
    assert caught.value.target == target and caught.value.reason == reason
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_a_full_disk_while_writing_the_temporary_file_names_the_target(tmp_path):
    target = tmp_path / "curves.png"
    with pytest.raises(OutputError, match=rf"^Cannot write '{target}': no space is left"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")  # as f.write() raises it
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_inside_a_write_pass_unchanged(tmp_path):
    # e.g. a source read or a download inside the block: not about the place we write to
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "data.bin"):
            raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/source.bin")
    with pytest.raises(ConnectionRefusedError):
        with atomic_path(tmp_path / "data.bin"):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_a_file_names_the_target_and_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file")
    with pytest.raises(OutputError) as caught:
        atomic_write_text(blocker / "a" / "log.txt", "x")
    assert f"Cannot write '{blocker / 'a' / 'log.txt'}': a part of the path is a file, not a folder" in str(caught.value)


def test_temporary_names_map_back_to_their_target():
    assert target_of("/r/.last.pt.123@0a1b2c3d.ab_cd123.tmp") == Path("/r/last.pt")
    assert target_of("/r/.curves.png.k2j4_x9z.tmp") == Path("/r/curves.png")
    assert target_of("/r/notes.tmp") == Path("/r/notes.tmp")
    assert output_error(OSError(errno.ECONNRESET, "reset"), "/r/x") is None


def test_the_cli_shows_a_raw_os_error_on_an_output_by_its_target(monkeypatch, capsys):
    """A write outside the atomic helpers that fails still gets exit 2 and the target's name."""
    import cnnlab.commands.models as command

    def fails(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/.report.html.77@0a1b2c3d.ab_cd123.tmp")

    monkeypatch.setattr(command, "run", fails)
    assert cli.main(["models"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: Cannot write '/out/report.html': no space is left") and ".tmp" not in err


def test_an_unrelated_os_error_is_still_reported_as_a_bug(monkeypatch, capsys):
    import cnnlab.commands.models as command

    def fails(args):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr(command, "run", fails)
    assert cli.main(["models"]) == 1
    assert "internal error: OSError" in capsys.readouterr().err


def test_a_diagram_that_cannot_be_written_is_exit_2_naming_it(tmp_path, monkeypatch, capsys):
    target = tmp_path / "model.svg"
    refuse(monkeypatch, errno.ENOSPC)
    assert cli.main(["diagram", "mlp", "-o", str(target)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: Cannot write '{target}': no space is left on the device" in err
    assert list(tmp_path.iterdir()) == []


def test_a_cache_that_cannot_be_written_warns_naming_it_and_the_data_still_loads(tmp_path, monkeypatch):
    from cnnlab.data.cache import cache_entry, cached_splits
    from cnnlab.data.dataset import ArrayDataset

    source = tmp_path / "source.bin"
    source.write_bytes(b"raw")
    split = ArrayDataset(np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 1]), ("a", "b"))
    refuse(monkeypatch, errno.ENOSPC)
    with pytest.warns(UserWarning) as warned:
        splits = cached_splits(tmp_path / "cache", source, lambda: {"train": split, "test": split})
    assert splits["train"] is split
    text = str(warned[0].message)
    entry = cache_entry(tmp_path / "cache", source)
    assert f"'{entry / 'train_images.npy'}' could not be written (no space is left on the device)" in text
    assert ".tmp" not in text and "CNNLAB_CACHE" in text
