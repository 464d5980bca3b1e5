import types

import numpy as np
import pytest

from cnnlab.data import ArrayDataset, channel_stats, load, prepare, stratified_split, stratified_subset
from cnnlab.errors import ConfigError, DataError


def _labels():
    # unbalanced: 50 / 30 / 20
    return np.repeat(np.arange(3), [50, 30, 20])


def test_stratified_subset_keeps_proportions_and_is_seeded():
    labels = _labels()
    idx = stratified_subset(labels, 10, seed=3)
    assert len(idx) == 10 and len(np.unique(idx)) == 10 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(idx, stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(idx, stratified_subset(labels, 10, seed=4))
    # shares that do not divide evenly still sum to n (largest remainder)
    assert np.bincount(labels[stratified_subset(labels, 7, seed=0)], minlength=3).sum() == 7
    np.testing.assert_array_equal(stratified_subset(labels, 500, seed=0), np.arange(100))


def test_stratified_split_is_disjoint_and_complete():
    labels = _labels()
    keep, val = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[val]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, val])), np.arange(100))
    keep, val = stratified_split(labels, 0.0, seed=0)
    assert len(val) == 0 and len(keep) == 100
    with pytest.raises(ConfigError, match=r"\[0, 1\); received 1.5"):
        stratified_split(labels, 1.5, seed=0)
    with pytest.raises(DataError, match="non-negative whole number"):
        stratified_subset(labels, -1, seed=0)


def test_channel_stats_match_numpy_in_float64(rng):
    images = rng.integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    assert isinstance(mean, tuple) and isinstance(mean[0], float)
    with pytest.raises(DataError, match="float64 of shape"):
        channel_stats(scaled)


def _cfg(**overrides):
    values = dict(dataset="digits", data_dir=None, train_limit=None, val_fraction=0.1,
                  normalize=True, augment=(), download=False)
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_digits_is_embedded_stratified_and_scaled():
    splits = load("digits")
    assert splits["train"].images.shape == (1438, 1, 8, 8) and len(splits["test"]) == 359
    assert splits["train"].images.dtype == np.uint8 and splits["train"].images.max() == 255
    assert np.bincount(splits["test"].labels).min() >= 35  # 20% of each class (~36)
    np.testing.assert_array_equal(load("digits")["test"].labels, splits["test"].labels)


def test_digits_are_scikit_learns_read_without_importing_it(monkeypatch):
    """The file is read directly (importing scikit-learn costs ~2 s per run process); the
    result is exactly what `sklearn.datasets.load_digits` gives, and so is the fallback."""
    import subprocess
    import sys

    from cnnlab.data import registry
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    expected = np.column_stack([bunch.data, bunch.target])
    np.testing.assert_array_equal(registry._digits_table(), expected)
    # where the file is not found, scikit-learn's own loader gives the same table
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    np.testing.assert_array_equal(registry._digits_table(), expected)
    probe = ("import sys; from cnnlab.data.registry import load; load('digits'); "
             "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prepare_limits_splits_and_normalises_on_train_only():
    prepared = prepare(_cfg(train_limit=500, val_fraction=0.2), seed=1)
    assert len(prepared.train) == 400 and len(prepared.val) == 100 and len(prepared.test) == 359
    assert prepared.input_shape == (1, 8, 8) and prepared.num_classes == 10
    assert prepared.classes == tuple(str(i) for i in range(10))
    assert np.bincount(prepared.val.labels).min() >= 9
    assert prepared.mean == channel_stats(prepared.train.images)[0]
    assert prepare(_cfg(train_limit=500, val_fraction=0.2), seed=1).val.labels.tolist() == prepared.val.labels.tolist()


def test_prepare_without_val_or_normalisation():
    prepared = prepare(_cfg(val_fraction=0.0, normalize=False), seed=0)
    assert len(prepared.val) == 0 and prepared.val.images.shape == (0, 1, 8, 8)
    assert prepared.mean == (0.0,) and prepared.std == (1.0,)


def test_prepare_rejects_bad_settings():
    with pytest.raises(ConfigError, match="train_limit must be a positive whole number or null; received 0"):
        prepare(_cfg(train_limit=0), seed=0)
    with pytest.raises(ConfigError, match="unknown augmentation 'flipp'.*Did you mean 'flip'"):
        prepare(_cfg(augment=("crop", "flipp")), seed=0)
    with pytest.raises(DataError, match="unknown dataset 'mnsit'.*Did you mean 'mnist'"):
        prepare(_cfg(dataset="mnsit"), seed=0)


def test_array_dataset_validates_its_inputs():
    with pytest.raises(DataError, match=r"uint8 array of shape \(N, C, H, W\); received a float64"):
        ArrayDataset(np.zeros((2, 1, 3, 3)), np.zeros(2, np.int64), ("a",))
    with pytest.raises(DataError, match="2 images but 3 labels"):
        ArrayDataset(np.zeros((2, 1, 3, 3), np.uint8), np.zeros(3, np.int64), ("a",))
    with pytest.raises(DataError, match=r"labels range from 0 to 4.*\[0, 2\)"):
        ArrayDataset(np.zeros((2, 1, 3, 3), np.uint8), np.array([0, 4]), ("a", "b"))


def test_real_mnist_loads_with_known_counts(shared_data):
    splits = load("mnist", shared_data, download=False)
    assert splits["train"].images.shape == (60000, 1, 28, 28)
    assert np.bincount(splits["train"].labels[:300], minlength=10).sum() == 300
    assert np.bincount(splits["train"].labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421,
                                                            5918, 6265, 5851, 5949]
    mean, std = channel_stats(splits["train"].images[:300])
    assert 0.10 < mean[0] < 0.16 and 0.28 < std[0] < 0.34


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), n=st.integers(0, 250),
       seed=st.integers(0, 2**31))
def test_subset_sizes_follow_class_shares_within_one(counts, n, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    idx = stratified_subset(labels, n, seed)
    assert len(idx) == min(n, len(labels)) and len(np.unique(idx)) == len(idx)
    taken = np.bincount(labels[idx], minlength=len(counts))
    share = np.array(counts) * min(n, len(labels)) / len(labels)
    assert np.all(np.abs(taken - share) < 1 + 1e-9)
