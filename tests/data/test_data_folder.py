import os
import tarfile

from pathlib import Path

import numpy as np
import pytest

import cnnlab.data.folder as folder_module
import cnnlab.data.registry as registry
from cnnlab.data import load
from cnnlab.data.cache import forget_loaded
from cnnlab.data.folder import read_image_folder
from cnnlab.errors import DataError


def _expected(written, split, classes):
    images = [a for c in classes for a in written[split, c]]
    labels = [i for i, c in enumerate(classes) for _ in written[split, c]]
    return np.stack(images), np.array(labels)


def test_directory_tree_decodes_to_nchw_with_sorted_classes(tmp_path, write_image_tree):
    written = write_image_tree(tmp_path / "pets", classes=("emu", "cat", "dog"))
    splits = read_image_folder(tmp_path / "pets")
    assert splits["train"].classes == ("cat", "dog", "emu")
    for split in ("train", "test"):
        images, labels = _expected(written, split, ("cat", "dog", "emu"))
        assert splits[split].images.shape == (len(labels), 3, 5, 6)
        np.testing.assert_array_equal(splits[split].images, images.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(splits[split].labels, labels)


def test_grayscale_images_give_one_channel_and_numbers_sort_naturally(tmp_path, write_image_tree):
    written = write_image_tree(tmp_path, classes=[str(i) for i in (10, 2, 1)], mode="L",
                               per_class=(12, 1), suffix=".bmp")
    splits = read_image_folder(tmp_path)
    assert splits["train"].classes == ("1", "2", "10")
    assert splits["train"].images.shape == (36, 1, 5, 6)
    # files 0..11 in numeric order, not 0, 1, 10, 11, 2, ...
    np.testing.assert_array_equal(splits["train"].images[:12, 0], np.stack(written["train", "1"]))


def _tar_tree(source, archive, prefix):
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=prefix)


def test_tar_with_a_top_level_folder_matches_the_directory(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "tree", suffix=".jpg")
    _tar_tree(tmp_path / "tree", tmp_path / "pets.tar", "pets-jpg")
    from_dir, from_tar = read_image_folder(tmp_path / "tree"), read_image_folder(tmp_path / "pets.tar")
    for split in ("train", "test"):
        np.testing.assert_array_equal(from_tar[split].images, from_dir[split].images)
        np.testing.assert_array_equal(from_tar[split].labels, from_dir[split].labels)


def test_process_pool_gives_the_same_arrays(tmp_path, write_image_tree, monkeypatch):
    write_image_tree(tmp_path / "tree", per_class=(9, 3))
    _tar_tree(tmp_path / "tree", tmp_path / "t.tar", ".")
    inline = read_image_folder(tmp_path / "t.tar", workers=1)
    monkeypatch.setattr(folder_module, "POOL_MIN_IMAGES", 1)
    pooled = read_image_folder(tmp_path / "t.tar", workers=2)
    np.testing.assert_array_equal(pooled["train"].images, inline["train"].images)
    np.testing.assert_array_equal(pooled["test"].labels, inline["test"].labels)


def test_cache_hit_skips_decoding_and_a_changed_source_is_decoded_again(tmp_path, write_image_tree, monkeypatch):
    write_image_tree(tmp_path / "tree")
    _tar_tree(tmp_path / "tree", tmp_path / "pets.tar", "pets")
    data_dir = tmp_path / "data"
    first = load(f"folder:{tmp_path / 'pets.tar'}", data_dir)
    entries = [p for p in Path(os.environ["CNNLAB_CACHE"]).iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()

    def must_not_decode(path, workers=None):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(registry, "read_image_folder", must_not_decode)
    forget_loaded()  # the entry on disk is what is tested here, not this process's memory
    second = load(f"folder:{tmp_path / 'pets.tar'}", data_dir)
    np.testing.assert_array_equal(second["train"].images, first["train"].images)
    assert second["test"].classes == first["test"].classes

    monkeypatch.undo()
    write_image_tree(tmp_path / "tree", seed=1)
    _tar_tree(tmp_path / "tree", tmp_path / "pets.tar", "pets")
    os.utime(tmp_path / "pets.tar", ns=(1, 1))  # a new mtime even on coarse clocks
    third = load(f"folder:{tmp_path / 'pets.tar'}", data_dir)
    assert not np.array_equal(third["train"].images, first["train"].images)
    # the stale entry and its lock file were removed
    (entry,) = [p for p in Path(os.environ["CNNLAB_CACHE"]).iterdir() if p.is_dir()]
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name, f"{entry.name}.lock"]


def test_processes_that_miss_the_cache_together_decode_once(tmp_path, write_image_tree, monkeypatch):
    """The first builder holds the entry's lock; the others wait, then read what it wrote."""
    import threading
    import time

    from cnnlab.data.cache import cached_splits

    write_image_tree(tmp_path / "tree")
    calls = []

    def slow_build():
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough that every other thread arrives while this one builds
        return read_image_folder(tmp_path / "tree", workers=1)

    cache_root = Path(os.environ["CNNLAB_CACHE"])
    results = [None] * 4

    def load_one(i):
        results[i] = cached_splits(cache_root, tmp_path / "tree", slow_build)

    threads = [threading.Thread(target=load_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1
    for got in results:
        np.testing.assert_array_equal(got["train"].images, results[0]["train"].images)


def test_relative_folder_name_is_also_looked_up_in_the_data_dir(tmp_path, write_image_tree, monkeypatch):
    write_image_tree(tmp_path / "data" / "pets")
    monkeypatch.chdir(tmp_path / "data" / "pets" / "train")
    assert len(load("folder:pets", tmp_path / "data")["test"]) == 6


def test_images_of_different_sizes_are_refused_by_name(tmp_path, write_image_tree):
    write_image_tree(tmp_path)
    from PIL import Image
    (tmp_path / "train" / "cat" / "big.png").unlink(missing_ok=True)
    Image.new("RGB", (7, 7)).save(tmp_path / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match=r"big\.png is 7x7 but the first image is 6x5"):
        read_image_folder(tmp_path)


def test_layout_errors_say_what_is_expected(tmp_path, write_image_tree):
    with pytest.raises(DataError, match="does not exist.*PATH/train/<class>"):
        read_image_folder(tmp_path / "missing")
    write_image_tree(tmp_path / "only_train", per_class=(2, 0))
    with pytest.raises(DataError, match="6 train and 0 test images"):
        read_image_folder(tmp_path / "only_train")
    (tmp_path / "broken" / "train" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "test" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "train" / "a" / "x.png").write_bytes(b"not a png")
    (tmp_path / "broken" / "test" / "a" / "y.png").write_bytes(b"not a png")
    for split in ("train", "test"):  # a second class, so the layout itself is valid
        (tmp_path / "broken" / split / "b").mkdir(parents=True)
        (tmp_path / "broken" / split / "b" / "z.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot decode image .*x\.png"):
        read_image_folder(tmp_path / "broken")
    with tarfile.open(tmp_path / "packed.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "only_train", arcname="x")
    with pytest.raises(DataError, match="compressed tar"):
        read_image_folder(tmp_path / "packed.tar.gz")
    with pytest.raises(DataError, match="needs a path"):
        load("folder:", tmp_path)


def test_a_single_class_is_refused(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match=r"has a single class \(cat\); a classifier needs at least two"):
        read_image_folder(tmp_path / "one")


def test_a_class_only_in_test_is_named(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "pets", classes=("cat", "dog"))
    write_image_tree(tmp_path / "extra", classes=("emu",))
    (tmp_path / "extra" / "test" / "emu").rename(tmp_path / "pets" / "test" / "emu")
    with pytest.raises(DataError, match=r"class\(es\) 'emu' have images in test/ but none in train/"):
        read_image_folder(tmp_path / "pets")


def test_a_class_only_in_train_is_named(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "pets", classes=("cat", "dog", "emu"))
    for image in (tmp_path / "pets" / "test" / "dog").iterdir():
        image.unlink()  # an empty class folder counts as no class
    with pytest.raises(DataError, match=r"class\(es\) 'dog' have images in train/ but none in test/"):
        read_image_folder(tmp_path / "pets")


def test_class_checks_apply_to_tar_archives(tmp_path, write_image_tree):
    write_image_tree(tmp_path / "pets", classes=("cat", "dog"))
    write_image_tree(tmp_path / "extra", classes=("emu",))
    (tmp_path / "extra" / "test" / "emu").rename(tmp_path / "pets" / "test" / "emu")
    with tarfile.open(tmp_path / "pets.tar", "w") as tar:
        tar.add(tmp_path / "pets", arcname="pets")
    with pytest.raises(DataError, match=r"'emu' have images in test/ but none in train/"):
        read_image_folder(tmp_path / "pets.tar")
