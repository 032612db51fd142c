"""A run's live logs (``--tensorboard DIR``, ``--wandb DIR``) as the one observer the
training loop takes: :class:`LiveLogs` hands each observation to every logger asked for."""

from __future__ import annotations

from pathlib import Path

from ..core.observer import TrainingObserver
from ..core.results import RunResult
from ..core.run_config import RunConfig
from .tensorboard import TensorBoardLogger
from .weights_and_biases import WandbLogger


class LiveLogs(TrainingObserver):
    """The loggers of one run, as the one observer the training loop takes. Each logger
    has ``finish(result)`` besides the observer's methods."""

    def __init__(self, loggers: list):
        self.loggers = loggers

    def begin(self, steps_done):
        for logger in self.loggers:
            logger.begin(steps_done)

    def loss(self, step, task, mean_loss):
        for logger in self.loggers:
            logger.loss(step, task, mean_loss)

    def task_end(self, task, step, accuracy_matrix):
        for logger in self.loggers:
            logger.task_end(task, step, accuracy_matrix)

    def analysis(self, record):
        for logger in self.loggers:
            logger.analysis(record)

    def finish(self, result: RunResult | None) -> None:
        """Close every logger (each, even if one fails); ``result`` None: the run failed."""
        errors = []
        for logger in self.loggers:
            try:
                logger.finish(result)
            except Exception as error:  # the others still close their files
                errors.append(error)
        if errors:
            raise errors[0]


def live_logs(config: RunConfig, tensorboard: str | Path | None = None,
              wandb: str | Path | None = None) -> LiveLogs | None:
    """The loggers asked for (folders already checked), or None for none."""
    loggers = []
    if tensorboard is not None:
        loggers.append(TensorBoardLogger(tensorboard, config))
    if wandb is not None:
        loggers.append(WandbLogger(wandb, config))
    return LiveLogs(loggers) if loggers else None
