"""The batched, on-device transforms equal their per-sample definitions."""

import numpy as np
import pytest
import torch

from replaymask.data.augment import (
    EvalTransform,
    StrongTransform,
    TrainTransform,
    crop_and_flip,
    crop_flip_draws,
    rgb_to_grayscale,
    shift_hue,
)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615)


def per_sample_crop_flip(image: np.ndarray, top: int, left: int, flip: bool, padding: int):
    """The per-image definition: zero-pad, crop at (top, left), then mirror left-right."""
    channels, height, width = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    crop = padded[:, top:top + height, left:left + width]
    return crop[:, :, ::-1] if flip else crop


@pytest.mark.parametrize("size,padding", [(32, 4), (64, 4), (8, 2)])
def test_batched_crop_and_flip_equals_the_per_sample_operation_for_the_same_draws(size,
                                                                                   padding):
    images = torch.randint(0, 256, (64, 3, size, size), dtype=torch.uint8)
    offsets, flips = crop_flip_draws(64, padding, torch.Generator().manual_seed(0), "cpu")
    batched = crop_and_flip(images, offsets, flips, padding)
    assert batched.dtype == torch.uint8 and batched.shape == images.shape
    for b in range(64):
        expected = per_sample_crop_flip(images[b].numpy(), *offsets[b].tolist(),
                                        bool(flips[b]), padding)
        assert np.array_equal(batched[b].numpy(), expected)


def test_every_crop_offset_and_flip_is_equally_likely_and_independent():
    padding, draws = 4, 81 * 2 * 250
    offsets, flips = crop_flip_draws(draws, padding, torch.Generator().manual_seed(1), "cpu")
    assert offsets.min() == 0 and offsets.max() == 2 * padding
    cell = (offsets[:, 0] * 9 + offsets[:, 1]) * 2 + flips.long()
    counts = torch.bincount(cell, minlength=162).double()
    expected = draws / 162
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 230  # 161 degrees of freedom: P(chi2 > 230) < 0.0005 when uniform
    assert counts.min() > 0


def test_train_transform_is_crop_flip_then_normalisation_with_its_generators_draws():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    transform = TrainTransform(MEAN, STD, 4, torch.Generator().manual_seed(5))
    out = transform(images)
    offsets, flips = crop_flip_draws(16, 4, torch.Generator().manual_seed(5), "cpu")
    cropped = crop_and_flip(images, offsets, flips, 4).float() / 255
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(out, (cropped - mean) / std)


def test_each_call_draws_fresh_augmentations_and_a_seed_reproduces_them():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    transform = TrainTransform(MEAN, STD, 4, torch.Generator().manual_seed(0))
    first, second = transform(images), transform(images)
    assert not torch.equal(first, second)
    again = TrainTransform(MEAN, STD, 4, torch.Generator().manual_seed(0))
    assert torch.equal(again(images), first)


def test_the_test_transform_only_normalises_and_without_statistics_only_scales():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(EvalTransform(MEAN, STD)(images), (images / 255 - mean) / std)
    assert torch.equal(EvalTransform()(images), images / 255.0)


def test_channels_last_changes_the_layout_not_the_values():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    plain = EvalTransform(MEAN, STD)(images)
    last = EvalTransform(MEAN, STD, channels_last=True)(images)
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, last)


def test_hue_shift_by_zero_or_a_full_turn_is_the_identity_and_a_third_maps_red_to_green():
    images = torch.rand(8, 3, 5, 5)
    torch.testing.assert_close(shift_hue(images, torch.zeros(8)), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(shift_hue(images, torch.ones(8)), images, atol=1e-5, rtol=0)
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    green = shift_hue(red, torch.tensor([1 / 3]))
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-5,
                               rtol=0)


def test_grayscale_has_equal_channels_with_the_itu_601_weights():
    images = torch.rand(2, 3, 4, 4)
    gray = rgb_to_grayscale(images)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, 0], 0.299 * images[:, 0] + 0.587 * images[:, 1]
                               + 0.114 * images[:, 2])


def test_strong_transform_without_crop_jitter_flip_or_gray_only_normalises():
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    strong = StrongTransform(MEAN, STD, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                             ratio=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0)
    out = strong(images)
    expected = EvalTransform(MEAN, STD)(images)
    flipped = expected.flip(3)
    for b in range(6):  # the flip is still random: each image is itself or its mirror
        assert (torch.allclose(out[b], expected[b], atol=1e-4)
                or torch.allclose(out[b], flipped[b], atol=1e-4))


def test_strong_views_are_varied_finite_and_reproducible():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    first = StrongTransform(MEAN, STD, torch.Generator().manual_seed(3))(images)
    again = StrongTransform(MEAN, STD, torch.Generator().manual_seed(3))(images)
    assert first.shape == images.shape and torch.isfinite(first).all()
    assert torch.equal(first, again)
    plain = EvalTransform(MEAN, STD)(images)
    changed = (first - plain).abs().flatten(1).amax(1) > 1e-3
    assert changed.float().mean() > 0.9
