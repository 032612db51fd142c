"""A reservoir-sampling replay buffer held as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass

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
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
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
        if self.capacity == 0 or batch_size == 0:
            self.seen += batch_size
            return
        if self.examples is None:
            self._allocate(examples, labels, logits)
        slots = self._reservoir_slots(batch_size)
        # Several items of one batch may draw the same slot: the last one wins, as
        # if they had been inserted one after another.
        writer = torch.full((self.capacity,), -1, dtype=torch.long, device=self.device)
        order = torch.arange(batch_size, device=self.device)
        kept = slots >= 0
        writer.scatter_reduce_(0, slots[kept], order[kept], reduce="amax")
        target_slots = (writer >= 0).nonzero().squeeze(1)
        source_rows = writer[target_slots]
        self.examples[target_slots] = examples[source_rows].to(self.examples.dtype)
        self.labels[target_slots] = labels[source_rows]
        self.task_ids[target_slots] = task_ids[source_rows]
        if self.logits is not None and logits is not None:
            self.logits[target_slots] = logits[source_rows].to(self.logits.dtype)
        self.seen += batch_size

    def _allocate(self, examples, labels, logits) -> None:
        device, capacity = self.device, self.capacity
        self.examples = torch.zeros((capacity, *examples.shape[1:]), dtype=examples.dtype,
                                    device=device)
        self.labels = torch.zeros(capacity, dtype=labels.dtype, device=device)
        self.task_ids = torch.zeros(capacity, dtype=torch.long, device=device)
        if logits is not None:
            self.logits = torch.zeros((capacity, *logits.shape[1:]), dtype=logits.dtype,
                                      device=device)

    def _reservoir_slots(self, batch_size: int) -> torch.Tensor:
        """The slot each of the next ``batch_size`` items goes to, -1 where it is dropped."""
        position = torch.arange(self.seen, self.seen + batch_size, device=self.device)
        draw = torch.rand(batch_size, generator=self.generator, device=self.device,
                          dtype=torch.float64)
        random_slot = (draw * (position + 1)).long()  # uniform on [0, position]
        slots = torch.where(position < self.capacity, position, random_slot)
        return torch.where(slots < self.capacity, slots, torch.full_like(slots, -1))

    def sample(self, size: int) -> ReplayBatch:
        """Draw ``min(size, len(self))`` distinct items, uniformly without replacement."""
        if self.is_empty():
            raise RuntimeError("cannot sample from an empty buffer")
        count = min(size, len(self))
        index = torch.randperm(len(self), generator=self.generator, device=self.device)[:count]
        return ReplayBatch(
            examples=self.examples[index],
            labels=self.labels[index],
            task_ids=self.task_ids[index],
            logits=None if self.logits is None else self.logits[index],
        )
