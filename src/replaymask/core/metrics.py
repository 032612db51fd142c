"""Continual-learning metrics: pure functions of an accuracy matrix (percent).

``matrix[i][j]`` is the accuracy on task j after training on task i (j <= i).
"""

from __future__ import annotations

from statistics import fmean


def average_accuracy(matrix: list[list[float]]) -> float:
    """Mean accuracy over all tasks after the last one."""
    return fmean(matrix[-1])


def backward_transfer(matrix: list[list[float]]) -> float | None:
    """BWT = mean_{i<T-1} (R[T-1][i] - R[i][i]); negative means forgetting."""
    last = len(matrix) - 1
    if last == 0:
        return None
    return fmean(matrix[last][i] - matrix[i][i] for i in range(last))


def forgetting(matrix: list[list[float]]) -> float | None:
    """mean_{i<T-1} (max_{i<=k<T-1} R[k][i] - R[T-1][i]): the drop from each task's best."""
    last = len(matrix) - 1
    if last == 0:
        return None
    return fmean(max(matrix[k][i] for k in range(i, last)) - matrix[last][i]
                 for i in range(last))


def forward_transfer(before_task: list[float | None], random_init: list[float]) -> float | None:
    """FWT = mean_{i>=1} (accuracy on task i just before training on it - that of a
    randomly initialised model); ``before_task[0]`` is unused."""
    if len(random_init) < 2:
        return None
    return fmean(before_task[i] - random_init[i] for i in range(1, len(random_init)))


def summarize(matrix, before_task, random_init) -> dict:
    return {
        "average_accuracy": average_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "bwt": backward_transfer(matrix),
        "fwt": forward_transfer(before_task, random_init),
        "final_task_accuracy": list(matrix[-1]),
    }
