"""Gradients as one flat vector: what the gradient-projection methods (GEM, A-GEM) work on."""

from __future__ import annotations

import torch


def flat_gradient(params: list[torch.Tensor]) -> torch.Tensor:
    """The parameters' gradients, concatenated (zeros where a parameter has none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in params])


def set_gradient(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector back as the parameters' gradients."""
    for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = part.view_as(p).clone()
