"""Gradients as one flat vector: what the gradient-projection methods (GEM, A-GEM) work on."""

from __future__ import annotations

import torch


def flat_gradient(params: list[torch.Tensor],
                  gradients: tuple[torch.Tensor | None, ...] | None = None) -> torch.Tensor:
    """The parameters' gradients (``.grad``, or ``gradients`` as ``torch.autograd.grad``
    returns them), concatenated; zeros where a parameter has none."""
    if gradients is None:
        gradients = tuple(p.grad for p in params)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for p, g in zip(params, gradients, strict=True)])


def set_gradient(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector back as the parameters' gradients."""
    for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = part.view_as(p).clone()
