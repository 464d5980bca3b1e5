"""The fast-training augmentations: translate, cutout, flip_alternate, and the TTA views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data import ArrayDataset, BatchLoader
from cnnlab.data.augment import BatchContext, random_cutout, random_translate, tta_views


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _context(batch, **kw):
    return BatchContext(torch.arange(batch), **kw)


def test_translate_is_a_reflection_padded_shift_that_varies_per_sample():
    image = (torch.arange(3 * 8 * 8).reshape(1, 3, 8, 8) % 251).to(torch.uint8)
    batch = image.repeat(64, 1, 1, 1)
    out = random_translate(batch, _generator(), _context(64, translate=2))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(batch[:1], (2, 2, 2, 2), mode="reflect")[0]
    offsets = set()
    for sample in out:
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(sample, padded[:, dy:dy + 8, dx:dx + 8])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10
    assert torch.equal(out, random_translate(batch, _generator(), _context(64, translate=2)))  # seeded


def test_cutout_blanks_one_square_per_sample_at_different_places():
    batch = torch.full((100, 2, 16, 16), 200, dtype=torch.uint8)
    out = random_cutout(batch, _generator(), _context(100, cutout=4))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    blank = out[:, 0] == 0
    assert torch.equal(blank, out[:, 1] == 0)  # the same square in every channel
    counts = blank.flatten(1).sum(1)
    assert int(counts.max()) == 16 and int(counts.min()) >= 4  # 4x4, clipped at the edges
    corners = {tuple(np.argwhere(b.numpy())[0]) for b in blank}
    assert len(corners) > 20
    assert torch.equal(out, random_cutout(batch, _generator(), _context(100, cutout=4)))


def test_flip_alternate_flips_complementary_images_on_consecutive_epochs():
    n = 40
    images = np.stack([np.full((1, 4, 4), i, np.uint8) for i in range(n)])
    images[:, :, :, 0] = 255  # a bright left column shows whether an image was mirrored
    dataset = ArrayDataset(images, np.zeros(n, np.int64), ("a",))
    loader = BatchLoader(dataset, 7, shuffle=True, mean=0, std=1, augment=("flip_alternate",), seed=3)

    def flipped_ids(epoch):
        loader.set_epoch(epoch)
        ids = set()
        for x, _ in loader:
            for sample in x:
                identity = round(float(sample[0, 0, 1]) * 255)
                if sample[0, 0, -1] > sample[0, 0, 0]:  # bright column now on the right
                    ids.add(identity)
        return ids

    first, second, third = flipped_ids(1), flipped_ids(2), flipped_ids(3)
    assert first and second and first.isdisjoint(second) and first | second == set(range(n))
    assert third == first  # the half stays fixed; epochs alternate
    assert 10 < len(first) < 30


def test_tta_views():
    x = torch.randn(2, 3, 6, 6)
    assert len(tta_views(x, [])) == 1 and torch.equal(tta_views(x, [])[0], x)
    flip = tta_views(x, ["flip"])
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(3))
    both = tta_views(x, ["flip", "translate"])
    assert len(both) == 6 and all(v.shape == x.shape for v in both)
    assert torch.equal(both[2][:, :, 1:, 1:], x[:, :, :-1, :-1])  # shifted down-right by one
    assert torch.equal(both[4][:, :, :-1, :-1], x[:, :, 1:, 1:])  # shifted up-left by one
    with pytest.raises(Exception, match="unknown test-time augmentation 'rotate'"):
        tta_views(x, ["rotate"])
