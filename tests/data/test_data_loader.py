import numpy as np
import pytest
import torch

from cnnlab.data import AUGMENTATIONS, ArrayDataset, BatchLoader
from cnnlab.data.augment import random_crop, random_flip, random_rotate
from cnnlab.errors import ConfigError, DataError


def _dataset(n=50, shape=(3, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % 5,
                        tuple("abcde"))


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_eval_loader_yields_every_sample_in_order_normalised():
    data = _dataset(n=23)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = BatchLoader(data, 10, shuffle=False, mean=mean, std=std)
    batches = _batches(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [10, 10, 3] and loader.num_samples == 23
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.shape == (23, 3, 8, 8)
    expected = (data.images / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), data.labels)
    assert batches[0][1].dtype == torch.int64


def test_drop_last_and_empty_datasets():
    loader = BatchLoader(_dataset(n=23), 10, shuffle=True, mean=0, std=1, drop_last=True)
    assert len(loader) == 2 and loader.num_samples == 20 and [len(y) for _, y in loader] == [10, 10]
    empty = ArrayDataset(np.zeros((0, 1, 4, 4), np.uint8), np.zeros(0, np.int64), ("a",))
    loader = BatchLoader(empty, 8, shuffle=True, mean=(0.1,), std=(0.2,), augment=("crop",))
    assert len(loader) == 0 and list(loader) == []


def test_same_epoch_replays_identical_batches_and_epochs_differ():
    kwargs = dict(shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3, augment=("crop", "flip", "rotate"), seed=7)
    loader = BatchLoader(_dataset(), 16, **kwargs)
    loader.set_epoch(3)
    first, second = _batches(loader), _batches(loader)
    fresh = BatchLoader(_dataset(), 16, **kwargs)
    fresh.set_epoch(3)
    for (x1, y1), (x2, y2), (x3, y3) in zip(first, second, _batches(fresh)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(x1, x3) and torch.equal(y1, y3)
    loader.set_epoch(4)
    other = _batches(loader)
    assert not torch.equal(first[0][1], other[0][1])
    # a shuffled epoch still visits each sample exactly once
    seen = torch.cat([y for _, y in other]).sort().values
    assert torch.equal(seen, torch.from_numpy(np.sort(_dataset().labels)))


def test_seed_changes_the_order():
    a = BatchLoader(_dataset(), 50, shuffle=True, mean=0, std=1, seed=0)
    b = BatchLoader(_dataset(), 50, shuffle=True, mean=0, std=1, seed=1)
    assert not torch.equal(next(iter(a))[0], next(iter(b))[0])


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_crop_is_a_zero_padded_shift_that_varies_per_sample():
    image = torch.arange(1, 1 + 3 * 8 * 8, dtype=torch.int32).reshape(1, 3, 8, 8) % 250 + 1
    batch = image.repeat(64, 1, 1, 1).to(torch.uint8)
    out = random_crop(batch, _generator())
    assert out.shape == batch.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(batch[0], (2, 2, 2, 2))  # 8 px < 32: 2-pixel padding
    offsets = set()
    for sample in out:
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(sample, padded[:, dy:dy + 8, dx:dx + 8])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # per-sample, not one shift for the batch


def test_crop_pads_four_pixels_from_32_px():
    batch = torch.full((200, 1, 32, 32), 255, dtype=torch.uint8)
    out = random_crop(batch, _generator())
    zero_rows = (out[:, 0].amax(dim=2) == 0).sum(dim=1)  # fully black rows per sample
    assert zero_rows.max() == 4


def test_flip_mirrors_about_half_of_the_samples():
    batch = torch.randint(0, 256, (400, 2, 5, 6), dtype=torch.uint8, generator=_generator(1))
    out = random_flip(batch, _generator())
    flipped = torch.tensor([torch.equal(o, b.flip(2)) for o, b in zip(out, batch)])
    kept = torch.tensor([torch.equal(o, b) for o, b in zip(out, batch)])
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250


def test_rotate_turns_each_sample_by_a_small_angle():
    batch = torch.zeros(32, 1, 33, 33)
    batch[:, :, 16, :] = 1.0  # a horizontal line through the centre
    out = random_rotate(batch, _generator())
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert torch.allclose(out[:, 0, 16, 16], torch.ones(32), atol=1e-4)  # centre stays put
    # the line's end moves by at most tan(10 deg) * 16 ~ 2.8 rows, and differently per sample
    rows = out[:, 0, :, 1].argmax(dim=1)
    assert int((rows - 16).abs().max()) <= 3 and len(set(rows.tolist())) > 2
    with pytest.raises(TypeError):
        random_rotate(batch.to(torch.uint8), _generator())


@pytest.mark.parametrize("augment", [(), ("crop",), ("flip",), ("rotate",), tuple(AUGMENTATIONS)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_augmented_batches_keep_shape_and_layout(augment, channels_last):
    loader = BatchLoader(_dataset(), 16, shuffle=True, mean=(0.4,) * 3, std=(0.2,) * 3,
                         augment=augment, channels_last=channels_last)
    for x, y in loader:
        assert x.shape == (len(y), 3, 8, 8) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last or x.shape[0] == 1
        # black padding normalises to (0 - mean) / std; nothing goes below that
        assert float(x.min()) >= -2.0 - 1e-5


def test_bad_arguments_are_explained():
    with pytest.raises(ConfigError, match=r"unknown augmentation 'mixup'.*Valid names: crop, flip, rotate"):
        BatchLoader(_dataset(), 8, shuffle=True, mean=0, std=1, augment=("mixup",))
    with pytest.raises(DataError, match=r"mean has 2 value\(s\).*3 channel\(s\)"):
        BatchLoader(_dataset(), 8, shuffle=True, mean=(0.1, 0.2), std=1)
    with pytest.raises(DataError, match="std must be positive"):
        BatchLoader(_dataset(), 8, shuffle=True, mean=0, std=(1, 0, 1))
    with pytest.raises(ConfigError, match="batch_size must be a positive whole number; received 0"):
        BatchLoader(_dataset(), 0, shuffle=True, mean=0, std=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_cpu_batches():
    kwargs = dict(shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3, augment=("crop", "flip", "rotate"), seed=3)
    cpu, gpu = BatchLoader(_dataset(), 16, **kwargs), BatchLoader(_dataset(), 16, device="cuda", **kwargs)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda" and torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xg.cpu(), xc, rtol=1e-4, atol=1e-4)


def test_rotation_grid_equals_affine_grid_reference():
    import math

    x = torch.rand(16, 3, 9, 13, generator=_generator(5))
    out = random_rotate(x, _generator(0))
    # the same angles, drawn the same way, through torch's affine_grid
    angles = ((torch.rand(16, generator=_generator(0), dtype=torch.float64) * 2 - 1) * math.radians(10)).float()
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros(16)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    reference = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_channels_last_gives_the_same_values():
    kwargs = dict(shuffle=True, mean=(0.5,) * 3, std=(0.25,) * 3, seed=2)
    for augment in ((), ("crop", "flip", "rotate")):
        plain = _batches(BatchLoader(_dataset(), 16, augment=augment, **kwargs))
        last = _batches(BatchLoader(_dataset(), 16, augment=augment, channels_last=True, **kwargs))
        for (xp, yp), (xl, yl) in zip(plain, last):
            assert torch.equal(yp, yl)
            torch.testing.assert_close(xl, xp, rtol=1e-6, atol=1e-6)
