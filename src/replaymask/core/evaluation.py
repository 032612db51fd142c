"""Class-IL and Task-IL accuracy of a network on a benchmark's test sets."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.benchmarks import Benchmark

EVAL_ELEMENTS = 2048 * 784  # input elements per forward pass: 2048 MNIST images, 522
# CIFAR or 130 TinyImageNet ones; bounds peak memory, and larger is not faster on CPU


@torch.inference_mode()
def evaluate(net, benchmark: Benchmark, tasks: list[int], visible_tasks: list[int],
             predict: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> tuple[list[float], list[float]]:
    """Accuracy (percent) on the test set of each of ``tasks``.

    The class scores are ``predict``'s (a method's :meth:`predict`; by default the
    network's logits), with ``net`` in evaluation mode.

    Class-IL predicts the argmax over the classes of tasks ``0..visible_tasks[k]`` for
    ``tasks[k]`` (after training task i that is every class seen so far); Task-IL the
    argmax over the test sample's own task's classes.
    """
    indices = torch.cat([benchmark.task_indices("test", t) for t in tasks])
    labels = benchmark.test_labels[indices]
    device = labels.device
    class_to_task = benchmark.class_to_task.to(device)
    offsets = torch.tensor(benchmark.task_offsets, device=device)
    sample_task = class_to_task[labels]
    task_index = torch.tensor(tasks, device=device)
    visible = torch.zeros(benchmark.n_tasks, dtype=torch.long, device=device)
    visible[task_index] = offsets[torch.tensor(visible_tasks, device=device) + 1]
    class_index = torch.arange(benchmark.num_classes, device=labels.device)

    was_training = net.training
    net.eval()
    rows = max(1, EVAL_ELEMENTS // benchmark.test_inputs[0].numel())
    predict = net if predict is None else predict
    logits = torch.cat([predict(benchmark.prepare(benchmark.test_inputs[chunk]))
                        for chunk in indices.split(rows)])
    net.train(was_training)

    hidden = class_index.unsqueeze(0) >= visible[sample_task].unsqueeze(1)
    class_il_correct = logits.masked_fill(hidden, float("-inf")).argmax(1) == labels
    task_il_correct = own_task_argmax(logits, sample_task, benchmark) == labels

    counts = torch.bincount(sample_task, minlength=benchmark.n_tasks).clamp(min=1)
    def per_task_accuracy(correct):
        hits = torch.bincount(sample_task, weights=correct.double(), minlength=benchmark.n_tasks)
        return (100.0 * hits / counts)[task_index].tolist()
    return per_task_accuracy(class_il_correct), per_task_accuracy(task_il_correct)


def own_task_argmax(logits: torch.Tensor, sample_task: torch.Tensor,
                    benchmark: Benchmark) -> torch.Tensor:
    """Each row's argmax over its own task's classes (the first one on ties), as a class
    label: the Task-IL prediction. Tasks may differ in size."""
    device = logits.device
    sizes = torch.tensor(benchmark.task_sizes, device=device)
    first = torch.tensor(benchmark.task_offsets[:-1], device=device)[sample_task]
    position = torch.arange(int(sizes.max()), device=device)
    columns = (first.unsqueeze(1) + position).clamp(max=logits.shape[1] - 1)
    own = logits.gather(1, columns).masked_fill(
        position >= sizes[sample_task].unsqueeze(1), float("-inf"))
    return own.argmax(1) + first


@torch.inference_mode()
def task_confusion(net, benchmark: Benchmark,
                   predict: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> list[list[float]]:
    """Where the Class-IL predictions of each task's test samples fall, after the last
    task (every class visible): row i = the samples of task i, column j = the percent
    of them predicted as one of task j's classes. The diagonal holds the right answers
    and the within-task mistakes; above it, samples taken for a later task's (recency),
    below it, for an earlier task's."""
    labels = benchmark.test_labels
    rows = max(1, EVAL_ELEMENTS // benchmark.test_inputs[0].numel())
    was_training = net.training
    net.eval()
    predict = net if predict is None else predict
    predicted = torch.cat([predict(benchmark.prepare(benchmark.test_inputs[chunk])).argmax(1)
                           for chunk in torch.arange(len(labels)).split(rows)])
    net.train(was_training)
    n_tasks = benchmark.n_tasks
    class_to_task = benchmark.class_to_task.to(labels.device)
    true_task, predicted_task = class_to_task[labels], class_to_task[predicted.to(labels.device)]
    counts = torch.bincount(true_task * n_tasks + predicted_task,
                            minlength=n_tasks * n_tasks).view(n_tasks, n_tasks).double()
    return (100.0 * counts / counts.sum(1, keepdim=True).clamp(min=1)).tolist()
