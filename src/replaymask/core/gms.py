"""The General Masked Softmax (GMS) cross-entropy of Kim, Kwon & Kim (arXiv 2309.14808).

This module depends on torch alone, so it can be copied into any training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

import torch
import torch.nn.functional as F

MaskValue = Union[float, Literal["detach"]]  # noqa: UP007 (a runtime alias on 3.10)

__all__ = ["MaskValue", "GMSRule", "gms_cross_entropy", "gms_masked_logits", "live_classes",
           "same_task_table", "class_to_task_layout"]


def gms_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    live: torch.Tensor,
    mask_value: MaskValue = float("-inf"),
    reduction: Literal["mean", "sum", "none"] = "mean",
    check_targets: bool = True,
) -> torch.Tensor:
    r"""Cross-entropy over a softmax whose non-live logits are replaced by a constant.

    For a sample with logits :math:`z_1..z_K`, of which the ``C`` entries where
    ``live`` is True are kept (the classes of the sample's own task), every other
    entry is replaced by the constant :math:`m` with *no gradient* into it::

        p_i = exp(z_i) / (sum_{j live} exp(z_j) + (K - C) exp(m))      (i live)
        loss = -log p_y

    and therefore, for live ``i``, ``dloss/dz_i = p_i - [i == y]``, while masked
    logits receive exactly zero gradient: the stream data of task t never pushes
    the logits of other tasks' classes down.

    * ``mask_value=-inf``: hard masking; the masked entries get probability 0 and
      the loss equals cross-entropy over the live logits alone.
    * finite ``m``: the general form; ``(K - C) exp(m)`` stays in the denominator,
      so a larger ``m`` pulls the target logit harder and pushes the other live
      logits less, and anchors the live logits' absolute level.
    * ``"detach"``: pure stop gradient; masked logits keep their own forward value
      (the loss value equals plain cross-entropy) but pass no gradient back.

    Args:
        logits: ``(N, K)`` float tensor.
        targets: ``(N,)`` integer class indices; each target must be live.
        live: bool tensor broadcastable to ``logits``; True marks the classes kept.
        mask_value: a float (``-inf`` or finite, never NaN or ``+inf``) or ``"detach"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as in ``F.cross_entropy``.
        check_targets: verify that every target is live (one host sync); callers
            that build ``live`` from the targets themselves may skip it.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]], requires_grad=True)
        >>> live = torch.tensor([[False, False, True, True]])
        >>> loss = gms_cross_entropy(logits, torch.tensor([2]), live)
        >>> loss.backward()
        >>> logits.grad[0, :2].tolist()  # no gradient into the masked (old) classes
        [0.0, 0.0]
    """
    _check_arguments(logits, targets, live, mask_value, reduction)
    live = live.expand_as(logits)
    if check_targets and not bool(live.gather(1, targets.long().unsqueeze(1)).all()):
        raise ValueError("gms_cross_entropy: every target must be a live class of its sample")
    return F.cross_entropy(gms_masked_logits(logits, live, mask_value), targets,
                           reduction=reduction)


def gms_masked_logits(logits: torch.Tensor, live: torch.Tensor,
                      mask_value: MaskValue) -> torch.Tensor:
    """The logits the GMS softmax sees: non-live entries replaced by ``mask_value`` (or,
    for ``"detach"``, by their own value cut from the graph). No argument checks.

    One ``where`` either way; its backward passes the gradient of live entries and
    exactly zero elsewhere."""
    if isinstance(mask_value, str):
        return torch.where(live, logits, logits.detach())
    return torch.where(live, logits, mask_value)


def _check_arguments(logits, targets, live, mask_value, reduction) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("gms_cross_entropy: logits must be a 2-D (N, K) tensor")
    if not logits.is_floating_point():
        raise ValueError("gms_cross_entropy: logits must be a floating-point tensor")
    if not isinstance(targets, torch.Tensor) or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"gms_cross_entropy: targets must have shape ({logits.shape[0]},), "
            f"got {tuple(getattr(targets, 'shape', ()))}"
        )
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError("gms_cross_entropy: targets must be integer class indices")
    if not isinstance(live, torch.Tensor) or live.dtype != torch.bool:
        raise ValueError("gms_cross_entropy: live must be a bool tensor")
    try:
        torch.broadcast_shapes(live.shape, logits.shape)
    except RuntimeError:
        raise ValueError(
            f"gms_cross_entropy: live of shape {tuple(live.shape)} does not broadcast "
            f"to logits of shape {tuple(logits.shape)}"
        ) from None
    if isinstance(mask_value, str):
        if mask_value != "detach":
            raise ValueError(
                f"gms_cross_entropy: mask_value must be a float or 'detach', got {mask_value!r}"
            )
    elif isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
        raise ValueError(
            f"gms_cross_entropy: mask_value must be a float or 'detach', got {mask_value!r}"
        )
    elif math.isnan(mask_value) or mask_value == math.inf:
        raise ValueError(f"gms_cross_entropy: mask_value must not be NaN or +inf, got {mask_value}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"gms_cross_entropy: unknown reduction {reduction!r}")


@dataclass(frozen=True)
class GMSRule:
    """Which rows of a batch GMS masks, in one place (the methods, the base class and the
    Avalanche and Mammoth integrations all ask it): with GMS on, a stream row is masked to
    its own task's classes; a replayed row keeps the plain softmax unless ``on_buffer``
    (``--gms-on-buffer``), as in the authors' code. ``mask_value`` is what the masked
    logits become (:func:`gms_masked_logits`).
    """

    enabled: bool = False
    mask_value: MaskValue = float("-inf")
    on_buffer: bool = False

    def masks(self, replayed: bool) -> bool:
        """Whether a stream (``replayed`` False) or replayed row is masked."""
        return self.enabled and (self.on_buffer or not replayed)

    def live(self, labels: torch.Tensor, same_task: torch.Tensor,
             replayed: bool | int | torch.Tensor = False) -> torch.Tensor | None:
        """``(N, K)`` bool: True where a row's logit stays in its softmax; None when no row
        is masked (the plain softmax). ``same_task``: :func:`same_task_table`; ``replayed``:
        False (stream rows), True (replayed rows), an int (the rows from that index on are
        replayed: a stream batch followed by a replay batch) or a bool tensor per row."""
        if isinstance(replayed, bool):
            return same_task[labels] if self.masks(replayed) else None
        if not self.enabled:
            return None
        live = same_task[labels]
        if self.on_buffer:
            return live
        if isinstance(replayed, int):
            live[replayed:] = True  # replayed rows: every class live
            return live
        return live | replayed.unsqueeze(1)


def class_to_task_layout(tasks: list[list[int]], num_classes: int | None = None) -> torch.Tensor:
    """Map each class to the task that introduces it, e.g. ``[[0, 1], [2, 3]] -> [0, 0, 1, 1]``.

    Classes that belong to no task get ``-1`` (they are never live).
    """
    flat = [c for task in tasks for c in task]
    if len(flat) != len(set(flat)):
        raise ValueError("class_to_task_layout: a class appears in more than one task")
    if any(c < 0 for c in flat):
        raise ValueError("class_to_task_layout: class indices must be non-negative")
    size = num_classes if num_classes is not None else max(flat, default=-1) + 1
    if flat and max(flat) >= size:
        raise ValueError(f"class_to_task_layout: class {max(flat)} >= num_classes {size}")
    layout = torch.full((size,), -1, dtype=torch.long)
    for task_id, task in enumerate(tasks):
        layout[list(task)] = task_id
    return layout


def live_classes(targets: torch.Tensor, class_to_task: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` bool mask: True where class k belongs to the same task as ``targets[n]``."""
    return same_task_table(class_to_task.to(targets.device))[targets]


def same_task_table(class_to_task: torch.Tensor) -> torch.Tensor:
    """``(K, K)`` bool table: row c marks the classes of class c's task, so that
    ``table[targets]`` is :func:`live_classes` in one gather (build it once per run)."""
    return class_to_task.unsqueeze(0) == class_to_task.unsqueeze(1)
