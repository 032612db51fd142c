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


def gradient_views(params: list[torch.Tensor], row: torch.Tensor) -> list[torch.Tensor]:
    """Views of the flat ``row``, one shaped like each parameter, in order: what
    :func:`backward_into` points the parameters' ``.grad`` at."""
    return [part.view_as(p) for p, part in
            zip(params, row.split([p.numel() for p in params]), strict=True)]


def backward_into(loss: torch.Tensor, params: list[torch.Tensor], row: torch.Tensor,
                  views: list[torch.Tensor]) -> None:
    """``loss``'s gradient with respect to ``params`` written into the flat ``row`` (zeros
    for a parameter it does not reach): ``row`` is cleared, each parameter's ``.grad``
    becomes its view of it (``views``, from :func:`gradient_views`), and the backward
    pass adds into them in place. The same numbers as a backward pass into fresh
    gradients followed by :func:`flat_gradient`, without that copy; the parameters'
    ``.grad`` stay views of ``row`` afterwards."""
    row.zero_()
    for p, view in zip(params, views, strict=True):
        p.grad = view
    loss.backward()
