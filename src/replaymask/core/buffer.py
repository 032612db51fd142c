"""Replay memories held as tensors on the training device, and their selection policies:
reservoir sampling over the stream (:class:`ReservoirBuffer`), GDumb's greedy class
balance (:class:`ClassBalancedBuffer`), and class-balanced refills after a task, at
random or by iCaRL's :func:`herding` (:func:`rebalance_by_class`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

_NO_SLOTS = np.empty(0, dtype=np.int64)


@dataclass
class ReplayBatch:
    """Items drawn from the buffer. ``examples`` are stored as given (not augmented);
    ``index`` holds their buffer slots."""

    index: torch.Tensor
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

    def __init__(self, capacity: int, device: torch.device | str = "cpu", seed: int = 0,
                 task_of_class: torch.Tensor | None = None):
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        # labels -> task ids for items added without them (looked up only when written)
        self.task_of_class = None if task_of_class is None else task_of_class.to(self.device)
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
        task_ids: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
    ) -> None:
        """Offer a batch of stream items to the reservoir. Without ``task_ids``, an item's
        task is looked up in ``task_of_class`` (given to the constructor)."""
        batch_size = examples.shape[0]
        slots, rows = self._reservoir_slots(batch_size)
        self.seen += batch_size
        if len(slots) == 0:  # once the buffer is full, most batches change nothing
            return
        if self.examples is None:
            self._allocate(examples, labels, logits)
        slots = self._to_device(slots)
        rows = self._to_device(rows, examples.device)
        written_labels = labels[rows]
        self.examples[slots] = examples[rows].to(self.examples.dtype)
        self.labels[slots] = written_labels
        if task_ids is None:
            if self.task_of_class is None:
                raise ValueError("add() needs task_ids: this buffer has no task_of_class")
            self.task_ids[slots] = self.task_of_class[written_labels]
        else:
            self.task_ids[slots] = task_ids[rows]
        if self.logits is not None and logits is not None:
            self.logits[slots] = logits[rows].to(self.logits.dtype)

    def _allocate(self, examples, labels, logits) -> None:
        device, capacity = self.device, self.capacity
        self.examples = torch.zeros((capacity, *examples.shape[1:]), dtype=examples.dtype,
                                    device=device)
        self.labels = torch.zeros(capacity, dtype=labels.dtype, device=device)
        self.task_ids = torch.zeros(capacity, dtype=torch.long, device=device)
        if logits is not None:  # float32 even when computed under bf16 autocast
            self.logits = torch.zeros((capacity, *logits.shape[1:]), dtype=torch.float32,
                                      device=device)

    def _write_one(self, slot: int, examples, labels, row: int, task_ids=None,
                   logits=None) -> None:
        """Store item ``row`` of a batch in ``slot`` (the policies that decide per item)."""
        if self.examples is None:
            self._allocate(examples, labels, logits)
        self.examples[slot] = examples[row].to(self.examples.dtype)
        self.labels[slot] = labels[row]
        self.task_ids[slot] = (self.task_of_class[labels[row]] if task_ids is None
                               else task_ids[row])
        if self.logits is not None and logits is not None:
            self.logits[slot] = logits[row].to(self.logits.dtype)

    def _to_device(self, array: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        """Host indices to the device without waiting for it: a plain copy from pageable
        memory would synchronise with every kernel queued on a GPU; from pinned memory
        (the caching host allocator keeps it alive until the copy ran) it does not."""
        device = device or self.device
        tensor = torch.from_numpy(array)
        if device.type == "cuda":
            return tensor.pin_memory().to(device, non_blocking=True)
        return tensor

    @torch.no_grad()
    def replace(self, examples: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor,
                logits: torch.Tensor | None = None) -> None:
        """Make the buffer hold exactly these items (at most ``capacity``), as if they had
        been the first items of the stream: for methods that choose the contents themselves
        (X-DER's class-balanced memory)."""
        count = len(examples)
        if count > self.capacity:
            raise ValueError(f"{count} items do not fit in a buffer of {self.capacity}")
        self.seen = count
        if count == 0:
            return
        if self.examples is None:
            self._allocate(examples, labels, logits)
        self.examples[:count] = examples.to(self.examples.dtype)
        self.labels[:count] = labels
        self.task_ids[:count] = task_ids
        if self.logits is not None and logits is not None:
            self.logits[:count] = logits.to(self.logits.dtype)

    def _reservoir_slots(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Which buffer slots the next ``batch_size`` stream items go to, and which items.

        The decisions depend on the stream position alone, so they are drawn on the
        host (vectorised NumPy, no device sync) and the device is touched only when
        something is actually written.
        """
        seen, capacity = self.seen, self.capacity
        if capacity == 0:
            return _NO_SLOTS, _NO_SLOTS
        if seen + batch_size <= capacity:  # still filling: distinct free slots
            return np.arange(seen, seen + batch_size), np.arange(batch_size)
        draw = self.rng.random(batch_size)
        # item n (0-based) goes to slot floor(u (n + 1)), uniform on [0, n], if < capacity;
        # items still at a free position (n < capacity) go there
        slots = (draw * np.arange(seen + 1, seen + batch_size + 1)).astype(np.int64)
        if seen < capacity:
            slots[:capacity - seen] = np.arange(seen, capacity)
        rows = np.flatnonzero(slots < capacity)
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
        stored = len(self)
        index = self._to_device(self.rng.permutation(stored)[:size])
        return ReplayBatch(
            index=index,
            examples=self.examples.index_select(0, index),  # faster than [] for one index
            labels=self.labels.index_select(0, index),
            task_ids=self.task_ids.index_select(0, index),
            logits=None if self.logits is None else self.logits.index_select(0, index),
        )

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: contents, reservoir counter, RNG state."""
        return {"capacity": self.capacity, "seen": self.seen,
                "rng": json.dumps(self.rng.bit_generator.state),
                "examples": self.examples, "labels": self.labels, "task_ids": self.task_ids,
                "logits": self.logits}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"a buffer of {state['capacity']} cannot be loaded into one of "
                             f"{self.capacity}")
        self.seen = state["seen"]
        self.rng.bit_generator.state = json.loads(state["rng"])
        for name in ("examples", "labels", "task_ids", "logits"):
            value = state[name]
            setattr(self, name, None if value is None else value.to(self.device))


class ClassBalancedBuffer(ReservoirBuffer):
    """GDumb's greedy class-balanced memory (Prabhu et al., ECCV 2020).

    A stream item is stored while there is room; once the buffer is full, an item of a
    class holding fewer items than the largest class replaces a uniformly drawn item of
    a largest class (ties between largest classes broken uniformly), and an item of a
    largest class is dropped. The classes' counts so end up as equal as the stream
    allows. Items are offered one at a time (a loop over the batch: the policy is
    defined per item; at batch 10 it costs microseconds).
    """

    @torch.no_grad()
    def add(self, examples, labels, task_ids=None, logits=None) -> None:
        for row in range(len(labels)):
            slot = self._slot_for(int(labels[row]))
            self.seen += 1
            if slot is not None:
                self._write_one(slot, examples, labels, row, task_ids, logits)
        self.seen = min(self.seen, self.capacity)  # the count of stored items

    def _slot_for(self, label: int) -> int | None:
        stored = min(self.seen, self.capacity)
        if stored < self.capacity:
            return stored
        if self.capacity == 0:
            return None
        counts = np.bincount(self.labels.cpu().numpy(), minlength=label + 1)
        largest = counts.max()
        if counts[label] >= largest:
            return None
        classes = np.flatnonzero(counts == largest)
        victim_class = classes[self.rng.integers(len(classes))] if len(classes) > 1 \
            else classes[0]
        slots = np.flatnonzero(self.labels.cpu().numpy() == victim_class)
        return int(slots[self.rng.integers(len(slots))])


@torch.no_grad()
def herding(features: torch.Tensor, count: int) -> torch.Tensor:
    """iCaRL's herding (Rebuffi et al. 2017, after Welling 2009): ``count`` rows of
    ``features`` chosen one at a time, each the row that brings the mean of the chosen
    rows closest to the mean of all rows. Returns their indices, in the order chosen."""
    count = min(count, len(features))
    target = features.mean(0)
    running = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool, device=features.device)
    chosen = []
    for step in range(count):
        cost = (target - (features + running) / (step + 1)).norm(dim=1)
        pick = int(cost.masked_fill(~available, float("inf")).argmin())
        chosen.append(pick)
        running += features[pick]
        available[pick] = False
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


@torch.no_grad()
def rebalance_by_class(buffer: ReservoirBuffer, inputs: torch.Tensor, labels: torch.Tensor,
                       task: int, new_classes: range,
                       choose: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Make ``buffer`` a class-balanced memory after ``task``, whose classes are
    ``new_classes`` (the labels after renumbering run 0 .. new_classes.stop - 1): each
    seen class gets ``capacity // new_classes.stop`` items; the earlier classes keep their
    first items, and each new class takes, of its samples in ``inputs``/``labels`` (the
    task's data: other labels there are skipped), those ``choose(their indices, quota)``
    picks (at random, or by :func:`herding`). The memory of GEM and iCaRL as Mammoth
    keeps it (its ``fill_buffer``)."""
    quota = buffer.capacity // max(new_classes.stop, 1)
    kept_inputs, kept_labels, kept_tasks = [], [], []
    count = len(buffer)
    if count:
        stored = buffer.labels[:count]
        order = torch.sort(stored, stable=True).indices
        rank = torch.arange(count, device=stored.device) - torch.searchsorted(
            stored[order], stored[order])
        kept = order[rank < quota]
        kept = kept[torch.argsort(kept)]  # keep the stored order
        kept_inputs, kept_labels = [buffer.examples[kept]], [buffer.labels[kept]]
        kept_tasks = [buffer.task_ids[kept]]
    present = set(torch.unique(labels).tolist())
    new = [choose((labels == label).nonzero().squeeze(1), quota)
           for label in new_classes if label in present]
    index = torch.cat(new) if new else torch.zeros(0, dtype=torch.long, device=labels.device)
    new_inputs = inputs[index].to(buffer.device)
    new_labels = labels[index].to(buffer.device)
    new_tasks = torch.full_like(new_labels, task)
    buffer.replace(torch.cat(kept_inputs + [new_inputs]), torch.cat(kept_labels + [new_labels]),
                   torch.cat(kept_tasks + [new_tasks]))


class GradientSelectionBuffer(ReservoirBuffer):
    """GSS-greedy's memory (Aljundi et al., NeurIPS 2019), as in Mammoth: every stored item
    carries a score, the largest cosine similarity (+1) of its gradient with those of a
    random draw of the memory at the time it was stored (redundant items score high).

    :meth:`add_scored` stores items while there is room (each with the batch's score);
    once full, and only for a batch whose score is below 1, each item with score s_new
    evicts a slot i drawn with probability proportional to the stored scores, with
    probability score_i / (score_i + s_new). The scores come from the method
    (:mod:`~replaymask.core.methods.gss`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scores = torch.zeros(self.capacity, device=self.device)

    @torch.no_grad()
    def add_scored(self, examples: torch.Tensor, labels: torch.Tensor, batch_score: float,
                   item_score: Callable[[int], float]) -> None:
        """Offer a batch; ``item_score(row)`` is asked only where an item may evict one."""
        for row in range(len(labels)):
            slot, score = None, batch_score
            if self.seen < self.capacity:
                slot = self.seen
            elif batch_score < 1:
                score = item_score(row)
                stored = self.scores.cpu().numpy().astype(np.float64)
                candidate = int(self.rng.choice(self.capacity, p=stored / stored.sum()))
                if self.rng.random() < stored[candidate] / (stored[candidate] + score):
                    slot = candidate
            self.seen += 1
            if slot is not None:
                self._write_one(slot, examples, labels, row)
                self.scores[slot] = score

    def state_dict(self) -> dict:
        return {**super().state_dict(), "scores": self.scores}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.scores = state["scores"].to(self.device)
