"""A reservoir-sampling replay buffer held as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ReplayBatch:
    """Items drawn from the buffer. ``examples`` are stored as given (not augmented)."""

    examples: torch.Tensor
    labels: torch.Tensor
    task_ids: torch.Tensor
    logits: torch.Tensor | None


class ReservoirBuffer:
    """Fixed-size buffer filled by reservoir sampling over the whole stream.

    The n-th stream item (0-based) goes to slot n while the buffer is not full;
    afterwards it replaces a uniformly drawn slot with probability
    ``capacity / (n + 1)``, so every item seen so far is equally likely to be in
    the buffer. Insertion and sampling are vectorised over the batch.
    """

    def __init__(self, capacity: int, device: torch.device | str = "cpu", seed: int = 0):
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.seen = 0  # stream items offered so far: the reservoir counter
        self.examples: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.task_ids: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def is_empty(self) -> bool:
        return len(self) == 0

    @torch.no_grad()
    def add(
        self,
        examples: torch.Tensor,
        labels: torch.Tensor,
        task_ids: torch.Tensor,
        logits: torch.Tensor | None = None,
    ) -> None:
        """Offer a batch of stream items to the reservoir."""
        batch_size = examples.shape[0]
        slots, rows = self._reservoir_slots(batch_size)
        self.seen += batch_size
        if len(slots) == 0:  # once the buffer is full, most batches change nothing
            return
        if self.examples is None:
            self._allocate(examples, labels, logits)
        slots = torch.from_numpy(slots).to(self.device)
        rows = torch.from_numpy(rows).to(examples.device)
        self.examples[slots] = examples[rows].to(self.examples.dtype)
        self.labels[slots] = labels[rows]
        self.task_ids[slots] = task_ids[rows]
        if self.logits is not None and logits is not None:
            self.logits[slots] = logits[rows].to(self.logits.dtype)

    def _allocate(self, examples, labels, logits) -> None:
        device, capacity = self.device, self.capacity
        self.examples = torch.zeros((capacity, *examples.shape[1:]), dtype=examples.dtype,
                                    device=device)
        self.labels = torch.zeros(capacity, dtype=labels.dtype, device=device)
        self.task_ids = torch.zeros(capacity, dtype=torch.long, device=device)
        if logits is not None:
            self.logits = torch.zeros((capacity, *logits.shape[1:]), dtype=logits.dtype,
                                      device=device)

    def _reservoir_slots(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Which buffer slots the next ``batch_size`` stream items go to, and which items.

        The decisions depend on the stream position alone, so they are drawn on the
        host (vectorised NumPy, no device sync) and the device is touched only when
        something is actually written.
        """
        if self.capacity == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        position = np.arange(self.seen, self.seen + batch_size)
        if self.seen + batch_size <= self.capacity:  # still filling: distinct free slots
            return position, np.arange(batch_size)
        draw = self.rng.random(batch_size)
        slots = np.where(position < self.capacity, position,
                         (draw * (position + 1)).astype(np.int64))  # uniform on [0, position]
        rows = np.flatnonzero(slots < self.capacity)
        slots = slots[rows]
        if len(slots) > 1 and len(np.unique(slots)) < len(slots):
            # Items of one batch that draw the same slot: the last one wins, exactly as
            # if they had been inserted one after another.
            _, last_from_end = np.unique(slots[::-1], return_index=True)
            keep = np.sort(len(slots) - 1 - last_from_end)
            slots, rows = slots[keep], rows[keep]
        return slots, rows

    def sample(self, size: int) -> ReplayBatch:
        """Draw ``min(size, len(self))`` distinct items, uniformly without replacement."""
        if self.is_empty():
            raise RuntimeError("cannot sample from an empty buffer")
        count = min(size, len(self))
        index = torch.from_numpy(self.rng.permutation(len(self))[:count]).to(self.device)
        return ReplayBatch(
            examples=self.examples[index],
            labels=self.labels[index],
            task_ids=self.task_ids[index],
            logits=None if self.logits is None else self.logits[index],
        )
