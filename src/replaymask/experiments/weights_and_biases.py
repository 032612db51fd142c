"""Live logs in Weights & Biases: ``replaymask run|sweep --wandb DIR`` (the ``wandb`` extra).

Offline unless the environment says otherwise: the run is kept in
``DIR/wandb/offline-run-<time>-<id>/``, with nothing sent anywhere, and ``wandb sync`` on
that folder uploads it later. With ``WANDB_MODE=online`` (and a ``wandb login``) it goes
to the W&B server as it trains; ``WANDB_PROJECT`` names the project (default
``replaymask``), ``WANDB_ENTITY`` the team.

A run is named as in TensorBoard (``<run name>_<hash>``) and logs the same values at the
same steps: ``train/loss``, ``class_il/task_J``, ``class_il/average``,
``class_il/forgetting`` (and ``task_il/...``), ``analysis/*``, and at the end the
``accuracy_matrix`` image; its config is the run's configuration and its summary holds
the final ``class_il``, ``task_il``, ``class_il_forgetting`` and ``task_il_forgetting``,
so that W&B's runs table and parallel-coordinates view compare the runs of a sweep. A run
that fails is marked failed (exit code 1). A run resumed from a checkpoint is a new W&B
run holding the steps from the checkpoint on.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..core.observer import TrainingObserver
from ..core.results import RunResult
from ..core.run_config import RunConfig
from ..errors import ConfigError, one_line
from .logged_values import (
    accuracy_matrix_png,
    analysis_values,
    final_metrics,
    require,
    run_label,
    task_end_values,
)

PROJECT = "replaymask"


def require_package() -> None:
    """Raise a one-line :class:`~replaymask.errors.ConfigError` unless wandb loads."""
    require("--wandb", "wandb", "wandb")


class WandbLogger(TrainingObserver):
    """Logs one run to W&B (see the module's docstring); nothing happens before
    :meth:`begin`, and :meth:`finish` ends the W&B run."""

    def __init__(self, root: str | Path, config: RunConfig):
        self.root = Path(root)
        self.config = config
        self._run = None
        self._last_step = 0

    def begin(self, steps_done: int) -> None:
        import wandb

        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._run = wandb.init(
                dir=str(self.root), project=os.environ.get("WANDB_PROJECT", PROJECT),
                name=run_label(self.config), config=self.config.to_dict(),
                mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
                settings=wandb.Settings(console="off", save_code=False, x_disable_stats=True,
                                        silent=True))
        except Exception as error:  # e.g. online without a login or a network
            message = one_line(str(error).splitlines()[0] if str(error) else "")
            raise ConfigError(f"--wandb: W&B could not start the run "
                              f"({type(error).__name__}: {message})") from None
        self._last_step = steps_done

    def loss(self, step: int, task: int, mean_loss: float) -> None:
        self._log(step, {"train/loss": mean_loss})

    def task_end(self, task: int, step: int, accuracy_matrix: dict[str, list[list[float]]]
                 ) -> None:
        self._log(step, task_end_values(accuracy_matrix))

    def analysis(self, record: dict) -> None:
        self._log(record["step"], analysis_values(record))

    def finish(self, result: RunResult | None) -> None:
        """End the W&B run: with ``result``, the accuracy-matrix image (left out without
        matplotlib), the final metrics in its summary and success; without, failed."""
        if self._run is None:
            return
        if result is not None:
            png = accuracy_matrix_png(result.accuracy_matrix, self.config.name)
            if png is not None:
                import wandb
                from PIL import Image

                self._log(self._last_step, {"accuracy_matrix": wandb.Image(
                    Image.open(io.BytesIO(png)), caption=self.config.name)})
            self._run.summary.update(final_metrics(result))
        self._run.finish(exit_code=0 if result is not None else 1)
        self._run = None

    def _log(self, step: int, values: dict) -> None:
        self._last_step = max(self._last_step, step)
        self._run.log(values, step=step)
