"""Predictions of a run: image files converted with warnings, unreadable files listed, CSV formats."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import DataError
from cnnlab.results import csv_text, predict, write_csv
from cnnlab.results.predict import Predictions, read_images


def _fake_run(channels=1, size=8):
    """Run-like object whose 'model' predicts class 1 for bright images, class 0 for dark ones."""
    seen = []

    def run_predict(images, **_):
        seen.append(images.copy())
        bright = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([1 - bright, bright], axis=1)

    return SimpleNamespace(classes=("dark", "bright"), predict=run_predict, seen=seen,
                           result={"input_shape": [channels, size, size]})


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.new("L", (8, 8), 250).save(folder / "bright.png")
    Image.new("RGB", (16, 12), (10, 10, 10)).save(folder / "sub" / "dark_rgb.jpg")
    (folder / "broken.png").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_folder_prediction_converts_and_lists_unreadable_files(image_folder):
    run = _fake_run()
    with pytest.warns(UserWarning, match=r"1 image\(s\) had another size or mode.*1x8x8"):
        result = predict(run, folder=image_folder)
    assert result.ids == ("bright.png", "sub/dark_rgb.jpg")
    assert result.labels.tolist() == [1, 0]
    assert [path for path, _ in result.skipped] == [str(image_folder / "broken.png")]
    assert result.converted == (str(image_folder / "sub" / "dark_rgb.jpg"),)
    assert run.seen[0].shape == (2, 1, 8, 8) and run.seen[0].dtype == np.uint8


def test_grey_images_become_rgb_for_an_rgb_model(tmp_path):
    Image.new("L", (4, 4), 200).save(tmp_path / "grey.png")
    images, read, skipped, converted = read_images([tmp_path / "grey.png"], (3, 4, 4))
    assert images.shape == (1, 3, 4, 4) and (images == 200).all()
    assert converted == [str(tmp_path / "grey.png")] and not skipped


def test_all_files_unreadable_is_an_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    with pytest.raises(DataError, match="None of the 1 image file"):
        predict(_fake_run(), files=[bad, tmp_path / "missing.png"][:1])


def test_exactly_one_image_source(tmp_path):
    with pytest.raises(DataError, match="exactly one source"):
        predict(_fake_run(), dataset="digits", folder=tmp_path)
    with pytest.raises(DataError, match="exactly one source"):
        predict(_fake_run())


def _result(truth=None) -> Predictions:
    probs = np.array([[0.25, 0.75], [0.9, 0.1], [0.4, 0.6]])
    return Predictions(("a.png", "b.png", "c, d.png"), probs, ("cat", "dog"), true_labels=truth)


def test_csv_has_ids_labels_classes_and_probabilities():
    rows = list(csv.reader(io.StringIO(csv_text(_result()))))
    assert rows[0] == ["id", "label", "class", "p_cat", "p_dog"]
    assert rows[1] == ["a.png", "1", "dog", "0.250000", "0.750000"]
    assert rows[3][0] == "c, d.png"  # quoted, so commas in names survive
    assert len(rows) == 4


def test_csv_with_true_labels_adds_truth_columns():
    rows = list(csv.reader(io.StringIO(csv_text(_result(np.array([1, 1, 0]))))))
    assert rows[0][:5] == ["id", "label", "class", "true_label", "true_class"]
    assert rows[2][:5] == ["b.png", "0", "cat", "1", "dog"]
    assert _result(np.array([1, 1, 0])).accuracy == pytest.approx(1 / 3)


def test_kaggle_format_has_one_based_image_ids_and_class_names(tmp_path):
    path = write_csv(_result(), tmp_path / "out" / "submission.csv", kaggle=True)
    assert path.read_text() == "ImageId,Label\n1,dog\n2,cat\n3,dog\n"


def test_predict_defaults_to_the_runs_own_dataset_and_test_split(tiny_run):
    result = predict(tiny_run.path)
    assert result.true_labels is not None and len(result.ids) == tiny_run.result["test_samples"]
    assert result.accuracy > 0.5


def test_dataset_split_of_a_real_run(tiny_run):
    result = predict(tiny_run.path, dataset="digits", split="test")
    assert len(result.ids) == len(result.true_labels) > 300
    assert np.allclose(result.probs.sum(axis=1), 1, atol=1e-5)
    assert result.accuracy > 0.5  # trained on 300 images for 2 epochs: clearly above chance
    with pytest.raises(DataError, match="no split 'validation'"):
        predict(tiny_run.path, dataset="digits", split="validation")
