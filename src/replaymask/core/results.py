"""A run's results, and writing them: result.json and accuracy_matrix.csv, each atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .run_config import RunConfig


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite: the run has no result."""


@dataclass
class RunResult:
    """What a run measured: its accuracy matrices (row i = after task i, column j = task
    j, in percent), the metrics derived from them, and the configuration with its
    provenance."""

    config: RunConfig
    benchmark_source: str
    class_order: list[int]
    accuracy_matrix: dict[str, list[list[float]]]
    random_init_accuracy: dict[str, list[float]]
    before_task_accuracy: dict[str, list[float | None]]
    metrics: dict[str, dict]
    wall_time_s: float
    task_times_s: list[float] = field(default_factory=list)
    analysis: list[dict] | None = None
    task_confusion: list[list[float]] | None = None  # with the analysis: after the last task
    versions: dict[str, str] = field(default_factory=dict)
    task_sizes: list[int] = field(default_factory=list)

    def benchmark_record(self) -> dict:
        """result.json's ``benchmark``: its name, where its data came from (``source`` in
        words; ``origin``: built in, tensors, datasets, folder, and the module that
        registered it), its content fingerprint and options where it is a user's, the
        class order and the classes of each task."""
        info = self.config.benchmark
        record = {"source": self.benchmark_source, "class_order": self.class_order,
                  "name": info.name, "task_sizes": self.task_sizes, "origin": info.origin}
        if info.fingerprint is not None:
            record["fingerprint"] = info.fingerprint
        if info.options:
            record["options"] = dict(info.options)
        return record

    @property
    def class_il(self) -> float:
        """Class-IL average accuracy after the last task (%)."""
        return self.metrics["class_il"]["average_accuracy"]

    @property
    def task_il(self) -> float:
        """Task-IL average accuracy after the last task (%)."""
        return self.metrics["task_il"]["average_accuracy"]

    def to_dict(self) -> dict:
        """``result.json``'s content, as stored in the results database too."""
        return {
            "config": self.config.to_dict(),
            "hyperparameter_source": self.config.provenance.summary(),
            "provenance": self.config.provenance.to_dict(),
            "benchmark": self.benchmark_record(),
            "network": self.config.network.to_dict(self.config.benchmark),
            "accuracy_matrix": self.accuracy_matrix,
            "metrics": self.metrics,
            "random_init_accuracy": self.random_init_accuracy,
            "before_task_accuracy": self.before_task_accuracy,
            "wall_time_s": self.wall_time_s,
            "task_times_s": self.task_times_s,
            "versions": self.versions,
            **({"analysis": self.analysis} if self.analysis is not None else {}),
            **({"task_confusion": self.task_confusion}
               if self.task_confusion is not None else {}),
        }


def write_result(out_dir: str | Path, result: RunResult) -> Path:
    """Write ``result.json`` and ``accuracy_matrix.csv`` under ``out_dir``; returns the JSON path.

    Each file is written to a temporary name, flushed and renamed into place, so a
    reader never sees a half-written file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "accuracy_matrix.csv", matrix_csv(result.accuracy_matrix))
    json_path = out_dir / "result.json"
    atomic_write(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    return json_path


def matrix_csv(accuracy_matrix: dict[str, list[list[float]]]) -> str:
    """Long-ish CSV: one line per (setting, after_task), one column per task; blanks above
    the diagonal (tasks not seen yet)."""
    n_tasks = len(next(iter(accuracy_matrix.values())))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["setting", "after_task"] + [f"task_{j + 1}" for j in range(n_tasks)])
    for setting, rows in accuracy_matrix.items():
        for i, row in enumerate(rows):
            writer.writerow([setting, i + 1] + [f"{v:.2f}" for v in row]
                            + [""] * (n_tasks - len(row)))
    return buffer.getvalue()


def format_summary(result: RunResult) -> str:
    """The accuracy matrices and metrics as a plain-text table."""
    lines = []
    for setting, label in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
        rows = result.accuracy_matrix[setting]
        lines.append(f"{label} accuracy (%), row = after task, column = task")
        lines.append("        " + "".join(f"{'T' + str(j + 1):>8}" for j in range(len(rows))))
        for i, row in enumerate(rows):
            lines.append(f"after {i + 1:<2}" + "".join(f"{v:8.2f}" for v in row))
        m = result.metrics[setting]
        lines.append(f"  average {m['average_accuracy']:.2f}  forgetting {_fmt(m['forgetting'])}"
                     f"  bwt {_fmt(m['bwt'])}  fwt {_fmt(m['fwt'])}")
        lines.append("")
    lines.append(f"wall time {result.wall_time_s:.1f} s; hyper-parameters: "
                 f"{result.config.provenance.summary()}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def atomic_write(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False,
                                     encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # temporary files are private; results are not
    os.replace(handle.name, path)
