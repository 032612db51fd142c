"""Class-IL and Task-IL accuracy of a network on a benchmark's test sets."""

from __future__ import annotations

import torch

from ..data.benchmarks import Benchmark

EVAL_ELEMENTS = 2048 * 784  # input elements per forward pass: 2048 MNIST images, 522
# CIFAR or 130 TinyImageNet ones; bounds peak memory, and larger is not faster on CPU


@torch.inference_mode()
def evaluate(net, benchmark: Benchmark, tasks: list[int],
             visible_tasks: list[int]) -> tuple[list[float], list[float]]:
    """Accuracy (percent) on the test set of each of ``tasks``.

    Class-IL predicts the argmax over the classes of tasks ``0..visible_tasks[k]`` for
    ``tasks[k]`` (after training task i that is every class seen so far); Task-IL the
    argmax over the test sample's own task's classes.
    """
    per_task = benchmark.classes_per_task
    indices = torch.cat([benchmark.task_indices("test", t) for t in tasks])
    labels = benchmark.test_labels[indices]
    sample_task = labels // per_task
    device = labels.device
    task_index = torch.tensor(tasks, device=device)
    visible = torch.zeros(benchmark.n_tasks, dtype=torch.long, device=device)
    visible[task_index] = (torch.tensor(visible_tasks, device=device) + 1) * per_task
    class_index = torch.arange(benchmark.num_classes, device=labels.device)

    was_training = net.training
    net.eval()
    rows = max(1, EVAL_ELEMENTS // benchmark.test_images[0].numel())
    logits = torch.cat([net(benchmark.prepare(benchmark.test_images[chunk]))
                        for chunk in indices.split(rows)])
    net.train(was_training)

    hidden = class_index.unsqueeze(0) >= visible[sample_task].unsqueeze(1)
    class_il_correct = logits.masked_fill(hidden, float("-inf")).argmax(1) == labels
    own_task = logits.view(len(labels), benchmark.n_tasks, per_task)[
        torch.arange(len(labels)), sample_task]
    task_il_correct = own_task.argmax(1) + sample_task * per_task == labels

    counts = torch.bincount(sample_task, minlength=benchmark.n_tasks).clamp(min=1)
    def per_task_accuracy(correct):
        hits = torch.bincount(sample_task, weights=correct.double(), minlength=benchmark.n_tasks)
        return (100.0 * hits / counts)[task_index].tolist()
    return per_task_accuracy(class_il_correct), per_task_accuracy(task_il_correct)


@torch.inference_mode()
def task_confusion(net, benchmark: Benchmark) -> list[list[float]]:
    """Where the Class-IL predictions of each task's test samples fall, after the last
    task (every class visible): row i = the samples of task i, column j = the percent
    of them predicted as one of task j's classes. The diagonal holds the right answers
    and the within-task mistakes; above it, samples taken for a later task's (recency),
    below it, for an earlier task's."""
    labels = benchmark.test_labels
    rows = max(1, EVAL_ELEMENTS // benchmark.test_images[0].numel())
    was_training = net.training
    net.eval()
    predicted = torch.cat([net(benchmark.prepare(benchmark.test_images[chunk])).argmax(1)
                           for chunk in torch.arange(len(labels)).split(rows)])
    net.train(was_training)
    per_task, n_tasks = benchmark.classes_per_task, benchmark.n_tasks
    true_task, predicted_task = labels // per_task, predicted // per_task
    counts = torch.bincount(true_task * n_tasks + predicted_task.to(labels.device),
                            minlength=n_tasks * n_tasks).view(n_tasks, n_tasks).double()
    return (100.0 * counts / counts.sum(1, keepdim=True).clamp(min=1)).tolist()
