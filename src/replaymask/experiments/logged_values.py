"""What the live logs of a run hold, the same in both loggers (:mod:`.tensorboard`,
:mod:`.weights_and_biases`): names, values and the accuracy-matrix image."""

from __future__ import annotations

import io
import math

from ..core.metrics import forgetting
from ..core.results import RunResult
from ..core.run_config import RunConfig
from ..errors import ConfigError, one_line

SETTINGS = ("class_il", "task_il")


def require(flag: str, package: str, *modules: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``modules`` of ``package`` (the extra of
    the same name) import."""
    import importlib

    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{flag} needs the {package} package: "
                          f"pip install 'replaymask[{package}]'") from None
    except Exception as error:  # an installation that is broken, e.g. by its protobuf
        raise ConfigError(f"{flag}: the {package} package does not load "
                          f"({type(error).__name__}: {one_line(str(error))})") from None


def run_label(config: RunConfig) -> str:
    """A run's name in the logs: readable, and unique (runs that differ only in, say, the
    lr do not share one)."""
    return f"{config.name}_{config.hash[:8]}"


def hyperparameters(config: RunConfig) -> dict[str, bool | int | float | str]:
    """The configuration's scalar values (``result.json``'s ``config``)."""
    return {name: value for name, value in config.to_dict().items()
            if isinstance(value, (bool, int, float, str))}


def task_end_values(accuracy_matrix: dict[str, list[list[float]]]) -> dict[str, float]:
    """After a task: each task's accuracy (``class_il/task_J``), their average and the
    forgetting so far (``class_il/average``, ``class_il/forgetting``), and Task-IL's."""
    values = {}
    for setting in SETTINGS:
        rows = accuracy_matrix[setting]
        values.update({f"{setting}/task_{j + 1}": value for j, value in enumerate(rows[-1])})
        values[f"{setting}/average"] = sum(rows[-1]) / len(rows[-1])
        if (forgot := forgetting(rows)) is not None:
            values[f"{setting}/forgetting"] = forgot
    return values


def analysis_values(record: dict) -> dict[str, float]:
    """An ``--analysis`` record's measurements (``analysis/grad_old``, ...)."""
    return {f"analysis/{name}": value for name, value in record.items()
            if name not in ("task", "step") and value is not None}


def final_metrics(result: RunResult) -> dict[str, float]:
    """The metrics that compare runs: Class-IL and Task-IL average accuracy after the last
    task, and their forgetting (where there was a task to forget)."""
    metrics = {}
    for setting in SETTINGS:
        summary = result.metrics[setting]
        metrics[setting] = summary["average_accuracy"]
        if summary["forgetting"] is not None:
            metrics[f"{setting}_forgetting"] = summary["forgetting"]
    return metrics


def accuracy_matrix_png(accuracy_matrix: dict[str, list[list[float]]], title: str
                        ) -> bytes | None:
    """The Class-IL and Task-IL accuracy matrices side by side, as a PNG; None without
    matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    n_tasks = len(accuracy_matrix["class_il"])
    side = 1.2 + 0.55 * n_tasks
    figure = Figure(figsize=(2 * side + 0.6, side + 0.8), dpi=80, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, setting, label in zip(axes, SETTINGS, ("Class-IL", "Task-IL"), strict=True):
        grid = [[math.nan] * n_tasks for _ in range(n_tasks)]
        for i, row in enumerate(accuracy_matrix[setting]):
            grid[i][:len(row)] = row
        ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        if n_tasks <= 12:  # numbers in the cells while they stay legible
            for i, row in enumerate(accuracy_matrix[setting]):
                for j, value in enumerate(row):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if value < 60 else "black")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("task")
        ax.set_ylabel("after task")
        ticks = range(n_tasks)
        ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
        ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
    figure.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
