"""The training loop's hook for live logs: an object told what a run measures as it
trains. torch-free, so that the loggers above (:mod:`replaymask.experiments.live_logs`)
can be set up and checked without it."""

from __future__ import annotations


class TrainingObserver:
    """Watches a run without changing it: a logger (TensorBoard, above core) subclasses it
    and overrides what it needs. The loop calls these only where it holds the values on
    the host already (the loss read-back, a task's evaluation), with plain Python numbers
    and copies, so a run's results are the same with an observer and without one."""

    def begin(self, steps_done: int) -> None:
        """Training starts after ``steps_done`` steps: 0, or where a checkpoint left off."""

    def loss(self, step: int, task: int, mean_loss: float) -> None:
        """The mean training loss of the steps since the last call: every 100 steps (the
        loop's read-back interval) and at each epoch's end. ``step`` counts every step of
        the run so far."""

    def task_end(self, task: int, step: int, accuracy_matrix: dict[str, list[list[float]]]
                 ) -> None:
        """Task ``task`` (from 0) is trained and evaluated: ``accuracy_matrix["class_il"]``
        and ``["task_il"]`` hold rows 0..task (percent)."""

    def analysis(self, record: dict) -> None:
        """One record of the ``--analysis`` instrumentation (:mod:`.analysis`)."""
