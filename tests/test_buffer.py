"""The reservoir buffer: what it keeps, how it samples, and that it is reproducible."""

import numpy as np
import pytest
import torch

from replaymask.core.buffer import ReservoirBuffer


def stream(n, width=3):
    examples = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, width)
    labels = torch.arange(n) % 10
    return examples, labels, labels // 2


def fill(buffer, n, batch_size):
    examples, labels, tasks = stream(n)
    for first in range(0, n, batch_size):
        part = slice(first, first + batch_size)
        buffer.add(examples[part], labels[part], tasks[part], logits=examples[part] * 2)


def sequential_reservoir(capacity, n, batch_size, seed):
    """Reference: one item at a time, using the same random draws, per batch."""
    rng = np.random.default_rng(seed)
    slots = [None] * capacity
    for first in range(0, n, batch_size):
        positions = range(first, min(first + batch_size, n))
        draws = rng.random(len(positions)) if first + len(positions) > capacity else None
        for k, position in enumerate(positions):
            if position < capacity:
                slots[position] = position
            else:
                slot = int(draws[k] * (position + 1))
                if slot < capacity:
                    slots[slot] = position
    return slots


@pytest.mark.parametrize("capacity", [1, 10, 20, 200])
@pytest.mark.parametrize("batch_size", [1, 10, 64])
def test_vectorised_insertion_equals_one_at_a_time_reservoir(capacity, batch_size):
    buffer = ReservoirBuffer(capacity, seed=3)
    fill(buffer, 1000, batch_size)
    kept = buffer.examples[:, 0].long().tolist()
    assert kept == sequential_reservoir(capacity, 1000, batch_size, seed=3)
    assert len(buffer) == capacity and buffer.seen == 1000


def test_every_stream_item_is_equally_likely_to_be_kept():
    capacity, n, trials = 10, 100, 2000
    counts = np.zeros(n)
    for trial in range(trials):
        buffer = ReservoirBuffer(capacity, seed=trial)
        fill(buffer, n, batch_size=10)
        counts[buffer.examples[:, 0].long().numpy()] += 1
    expected = trials * capacity / n  # 200 per item
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)  # 5 sigma
    early, late = counts[:50].mean(), counts[50:].mean()
    assert abs(early - late) < 0.1 * expected


def test_labels_task_ids_and_logits_stay_with_their_example():
    buffer = ReservoirBuffer(20, seed=0)
    fill(buffer, 500, batch_size=10)
    ids = buffer.examples[:, 0].long()
    assert torch.equal(buffer.labels, ids % 10)
    assert torch.equal(buffer.task_ids, (ids % 10) // 2)
    assert torch.equal(buffer.logits, buffer.examples * 2)


def test_empty_and_zero_capacity_buffers():
    buffer = ReservoirBuffer(0)
    fill(buffer, 50, 10)
    assert buffer.is_empty() and len(buffer) == 0 and buffer.seen == 50
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(5)
    with pytest.raises(ValueError, match=">= 0"):
        ReservoirBuffer(-1)


def test_sampling_is_without_replacement_and_capped_by_the_fill_level():
    buffer = ReservoirBuffer(200, seed=0)
    fill(buffer, 30, 10)
    drawn = buffer.sample(128)
    assert len(drawn.examples) == 30  # only 30 items seen so far
    ids = drawn.examples[:, 0].tolist()
    assert len(set(ids)) == 30
    fill(buffer, 1000, 10)
    assert len(set(buffer.sample(128).examples[:, 0].tolist())) == 128


def test_same_seed_same_buffer_and_same_draws():
    first, second = ReservoirBuffer(20, seed=7), ReservoirBuffer(20, seed=7)
    fill(first, 300, 10)
    fill(second, 300, 10)
    assert torch.equal(first.examples, second.examples)
    assert torch.equal(first.sample(10).examples, second.sample(10).examples)
    other = ReservoirBuffer(20, seed=8)
    fill(other, 300, 10)
    assert not torch.equal(first.examples, other.examples)


def test_stores_examples_in_their_own_dtype():
    buffer = ReservoirBuffer(5)
    images = torch.randint(0, 255, (8, 4, 4), dtype=torch.uint8)
    buffer.add(images, torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))
    assert buffer.examples.dtype == torch.uint8 and buffer.examples.shape == (5, 4, 4)
    assert buffer.logits is None and buffer.sample(2).logits is None


def test_items_added_without_task_ids_take_their_task_from_the_class_layout():
    task_of_class = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    buffer = ReservoirBuffer(30, seed=0, task_of_class=task_of_class)
    examples, labels, _ = stream(100)
    for first in range(0, 100, 10):
        buffer.add(examples[first:first + 10], labels[first:first + 10])
    assert torch.equal(buffer.task_ids, task_of_class[buffer.labels])
    with pytest.raises(ValueError, match="task_of_class"):
        ReservoirBuffer(5).add(examples[:3], labels[:3])
