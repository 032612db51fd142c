"""Gradients as one flat vector: what the gradient-projection methods (GEM, A-GEM) work on."""

from __future__ import annotations

import torch


def flat_gradient(params: list[torch.Tensor],
                  gradients: tuple[torch.Tensor | None, ...] | None = None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """The parameters' gradients (``.grad``, or ``gradients`` as ``torch.autograd.grad``
    returns them), concatenated (into ``out`` if given: a row of a matrix of gradients);
    zeros where a parameter has none."""
    if gradients is None:
        gradients = tuple(p.grad for p in params)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for p, g in zip(params, gradients, strict=True)], out=out)


def set_gradient(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector back as the parameters' gradients (into their ``.grad`` in place
    where every parameter has one, as after a backward pass)."""
    parts = [part.view_as(p) for p, part in
             zip(params, flat.split([p.numel() for p in params]), strict=True)]
    gradients = [p.grad for p in params]
    if all(g is not None for g in gradients):
        torch._foreach_copy_(gradients, parts)
        return
    for p, part in zip(params, parts, strict=True):
        p.grad = part.clone()


def use_as_gradient(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Make each parameter's ``.grad`` a view of its part of ``flat``: the optimiser steps
    with ``flat`` itself, without a copy (until the gradients are next cleared)."""
    for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = part.view_as(p)
