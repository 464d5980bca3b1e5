import gzip

import numpy as np
import pytest

from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.errors import DataError


def test_reads_uint8_images_plain_and_gzip(tmp_path, rng, idx_bytes):
    images = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (tmp_path / "plain").write_bytes(idx_bytes(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(images)))
    for name in ("plain", "packed.gz"):
        out = read_idx(tmp_path / name)
        np.testing.assert_array_equal(out, images)
        assert out.flags.writeable


def test_reads_big_endian_int32_into_native_order(rng, idx_bytes):
    values = rng.integers(-(2**31), 2**31 - 1, (4, 3)).astype(np.int32)
    out = parse_idx(idx_bytes(values.astype(">i4")))
    assert out.dtype == np.dtype(np.int32) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


def test_real_mnist_headers(shared_data):
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", "rb") as f:
        head = f.read(16 + 300 * 28 * 28)  # the real header plus 300 images
    assert head[:4] == bytes([0, 0, 0x08, 3])
    with pytest.raises(DataError, match=r"declares shape \(10000, 28, 28\)"):
        parse_idx(head)  # the header promises 10000 images
    images = parse_idx(head[:4] + (300).to_bytes(4, "big") + head[8:])
    assert images.shape == (300, 28, 28)
    # each MNIST digit is a dark background with a bright stroke
    assert (images[:, 0, :] == 0).all() and (images.max(axis=(1, 2)) > 200).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: raw[:3], "too short"),
    (lambda raw: b"\x01\x00" + raw[2:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "dtype code 0x07"),
    (lambda raw: raw[:3] + b"\x00" + raw[4:], "0 dimensions"),
    (lambda raw: raw[:3] + b"\x20" + raw[4:], "shorter than its"),
    # 9 dims read from pixel bytes: a huge declared size must not overflow
    (lambda raw: raw[:3] + b"\x09" + raw[4:], r"truncated: its header declares shape \(3, 4, 4, \d+"),
    (lambda raw: raw[:-5], "truncated"),
    (lambda raw: raw + b"\x00", "longer than its header"),
])
def test_corrupt_bytes_raise_data_error_naming_the_problem(rng, mutate, message, idx_bytes):
    raw = idx_bytes(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=message) as info:
        parse_idx(mutate(raw), source="demo-file")
    assert "demo-file" in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path, rng, idx_bytes):
    packed = gzip.compress(idx_bytes(rng.integers(0, 256, (50, 8, 8), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="cannot be decompressed") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope.gz")
