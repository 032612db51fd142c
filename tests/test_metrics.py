"""Metrics are pure functions of the accuracy matrix."""

import pytest

from replaymask.core.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarize,
)

MATRIX = [
    [90.0],
    [80.0, 95.0],
    [70.0, 85.0, 99.0],
]


def test_average_accuracy_is_the_mean_of_the_last_row():
    assert average_accuracy(MATRIX) == pytest.approx((70 + 85 + 99) / 3)


def test_backward_transfer_compares_the_last_row_with_the_diagonal():
    assert backward_transfer(MATRIX) == pytest.approx(((70 - 90) + (85 - 95)) / 2)


def test_forgetting_is_the_drop_from_each_tasks_best():
    matrix = [[50.0], [60.0, 90.0], [40.0, 80.0, 99.0]]  # task 1 peaked after task 2
    assert forgetting(matrix) == pytest.approx(((60 - 40) + (90 - 80)) / 2)


def test_forward_transfer_is_measured_against_a_random_model():
    assert forward_transfer([None, 10.0, 30.0], [5.0, 5.0, 20.0]) == pytest.approx(7.5)


def test_single_task_has_no_transfer_metrics():
    summary = summarize([[88.0]], [None], [10.0])
    assert summary["average_accuracy"] == 88.0
    assert summary["bwt"] is None and summary["forgetting"] is None and summary["fwt"] is None
    assert summary["final_task_accuracy"] == [88.0]
