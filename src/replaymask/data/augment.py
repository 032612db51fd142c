"""Batched, device-resident image transforms: the per-sample definitions, vectorised.

The reference pipelines transform one PIL image at a time in loader workers. Here a
whole batch of raw uint8 images (stream or replay alike) is transformed by a few
tensor ops on the device that holds it; the random draws come from a
``torch.Generator`` on that device, so nothing waits for the host.

* :class:`TrainTransform`: random crop with zero padding, horizontal flip, normalise
  (the CIFAR/TinyImageNet training transform of the DER paper).
* :class:`EvalTransform`: normalise only.
* :class:`StrongTransform`: X-DER's contrastive views: random resized crop, flip,
  colour jitter, grayscale, normalise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def crop_flip_draws(batch_size: int, padding: int, generator: torch.Generator | None,
                    device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: a crop offset (top, left), each in ``0..2*padding``, and a flip bit.

    Every one of the ``(2*padding+1)**2`` offsets and both flip states is equally
    likely, and the draws are independent, as for a per-sample random crop + flip.
    """
    offsets = torch.randint(0, 2 * padding + 1, (batch_size, 2), generator=generator,
                            device=device)
    flips = torch.randint(0, 2, (batch_size,), generator=generator, device=device).bool()
    return offsets, flips


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Crop each image of ``images`` (B, C, H, W) at ``offsets`` from its zero-padded
    copy and mirror it left-right where ``flips``; one gather for the whole batch.

    Output ``[b, c, i, j] = padded[b, c, top_b + i, left_b + j']`` with ``j' = W-1-j``
    for flipped images and ``j`` otherwise: exactly pad -> crop -> flip per image.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    rows = offsets[:, :1] + torch.arange(height, device=device)  # (B, H)
    columns = torch.arange(width, device=device).expand(batch, width)
    columns = offsets[:, 1:] + torch.where(flips[:, None], width - 1 - columns, columns)
    return padded[torch.arange(batch, device=device)[:, None, None, None],
                  torch.arange(channels, device=device)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]


class EvalTransform:
    """Raw inputs -> float network input: uint8 images as ``x / 255``, float inputs as they
    are; then, given ``mean``/``std``, normalised per channel (along each sample's first
    dimension: an image's channels, a flat vector's features)."""

    flips = False  # whether it mirrors images left-right (iCaRL's class means follow it)
    augments = False  # whether it draws at random (else the same input gives the same output)

    def __init__(self, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None, channels_last: bool = False):
        self.mean, self.std = mean, std
        self.channels_last = channels_last
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        raw_bytes = inputs.dtype == torch.uint8
        if self.mean is None:
            return torch.div(inputs, 255.0) if raw_bytes else inputs  # uint8: one op
        scale, shift = self._scale_shift(inputs.device, inputs.dim() - 1,
                                         255.0 if raw_bytes else 1.0)
        out = torch.addcmul(shift, inputs, scale)  # x * (1 / (255 std)) - mean / std
        if self.channels_last and out.dim() == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _scale_shift(self, device, sample_dims: int = 3, input_scale: float = 255.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, sample_dims, input_scale)
        if key not in self._constants:
            shape = (-1,) + (1,) * max(sample_dims - 1, 0)
            mean = torch.tensor(self.mean, device=device).view(shape)
            std = torch.tensor(self.std, device=device).view(shape)
            self._constants[key] = (1.0 / (input_scale * std), -mean / std)
        return self._constants[key]

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.normalize(inputs)


class TrainTransform(EvalTransform):
    """Random crop (zero padding ``padding``), horizontal flip, normalise; batched."""

    flips = True
    augments = True

    def __init__(self, mean, std, padding: int, generator: torch.Generator | None = None,
                 channels_last: bool = False):
        super().__init__(mean, std, channels_last)
        self.padding = padding
        self.generator = generator

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        offsets, flips = crop_flip_draws(len(images), self.padding, self.generator,
                                         images.device)
        return self.normalize(crop_and_flip(images, offsets, flips, self.padding))


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, kept as 3 channels (B, 3, H, W)."""
    red, green, blue = images.unbind(1)
    return (0.299 * red + 0.587 * green + 0.114 * blue).unsqueeze(1).expand_as(images)


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images in [0, 1] by ``shift`` (B,) turns, through HSV."""
    value, argmax = images.max(1)
    chroma = value - images.min(1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    red, green, blue = images.unbind(1)
    hue = torch.where(argmax == 0, ((green - blue) / safe) % 6,
                      torch.where(argmax == 1, (blue - red) / safe + 2, (red - green) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, 1), 0)
    # HSV -> RGB: channel n takes v - v s max(0, min(k, 4 - k, 1)), k = (n + 6 h) mod 6
    k = (torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1)
         + 6 * hue.unsqueeze(1)) % 6
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)


class StrongTransform(EvalTransform):
    """X-DER's contrastive augmentation, batched on the device.

    Per image, as in the reference (torchvision ``RandomResizedCrop(size, (0.2, 1))``,
    ``RandomApply([ColorJitter(.4, .4, .4, .1)], p=.8)``, flip, ``RandomGrayscale(.2)``,
    normalise), with two simplifications: the crop is resampled bilinearly without
    antialiasing, and the jitter's four factors are applied in a fixed order
    (brightness, contrast, saturation, hue) rather than a random one.
    """

    def __init__(self, mean, std, generator: torch.Generator | None = None,
                 scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), jitter=(0.4, 0.4, 0.4, 0.1),
                 jitter_p: float = 0.8, grayscale_p: float = 0.2, channels_last: bool = False):
        super().__init__(mean, std, channels_last)
        self.generator = generator
        self.scale, self.ratio, self.jitter = scale, ratio, jitter
        self.jitter_p, self.grayscale_p = jitter_p, grayscale_p

    def _uniform(self, shape, low, high, device) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator, device=device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch, device = len(images), images.device
        x = self._resized_crop(images.float() / 255.0)
        flips = self._uniform(batch, 0, 1, device) < 0.5
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        x = self._color_jitter(x)
        gray = (self._uniform(batch, 0, 1, device) < self.grayscale_p).view(-1, 1, 1, 1)
        x = torch.where(gray, rgb_to_grayscale(x), x)
        if self.mean is None:  # no normalisation: pixels in [0, 1], as EvalTransform's
            out = x
        else:
            scale, shift = self._scale_shift(device)
            out = x * (255.0 * scale) + shift
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def _resized_crop(self, x: torch.Tensor, tries: int = 10) -> torch.Tensor:
        """Crop a box of area fraction ~U(scale) and log-uniform aspect ratio, resized back.

        Up to ``tries`` candidate boxes per image; the first that fits is used, else the
        whole image (the reference's fallback, up to its ratio clamp).
        """
        batch, _, height, width = x.shape
        device = x.device
        area = self._uniform((batch, tries), *self.scale, device) * height * width
        log_ratio = self._uniform((batch, tries), math.log(self.ratio[0]),
                                  math.log(self.ratio[1]), device)
        box_w = torch.sqrt(area * torch.exp(log_ratio)).round()
        box_h = torch.sqrt(area / torch.exp(log_ratio)).round()
        fits = (box_w <= width) & (box_h <= height) & (box_w > 0) & (box_h > 0)
        first = torch.where(fits.any(1), fits.float().argmax(1), -1)
        pick = first.clamp(min=0).unsqueeze(1)
        box_w = torch.where(first >= 0, box_w.gather(1, pick).squeeze(1), float(width))
        box_h = torch.where(first >= 0, box_h.gather(1, pick).squeeze(1), float(height))
        left = torch.floor(self._uniform(batch, 0, 1, device) * (width - box_w + 1))
        top = torch.floor(self._uniform(batch, 0, 1, device) * (height - box_h + 1))
        # affine_grid maps output [-1, 1] to input coordinates (align_corners=False)
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0] = box_w / width
        theta[:, 0, 2] = (2 * left + box_w) / width - 1
        theta[:, 1, 1] = box_h / height
        theta[:, 1, 2] = (2 * top + box_h) / height - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def _color_jitter(self, x: torch.Tensor) -> torch.Tensor:
        batch, device = len(x), x.device
        brightness, contrast, saturation, hue = self.jitter
        apply = (self._uniform(batch, 0, 1, device) < self.jitter_p).view(-1, 1, 1, 1)

        def factor(strength):
            return self._uniform(batch, 1 - strength, 1 + strength, device).view(-1, 1, 1, 1)

        y = (x * factor(brightness)).clamp(0, 1)
        mean_gray = rgb_to_grayscale(y)[:, :1].mean((2, 3), keepdim=True)
        y = (mean_gray + factor(contrast) * (y - mean_gray)).clamp(0, 1)
        gray = rgb_to_grayscale(y)
        y = (gray + factor(saturation) * (y - gray)).clamp(0, 1)
        y = shift_hue(y, self._uniform(batch, -hue, hue, device))
        return torch.where(apply, y, x)
