"""The mechanism analysis over seeds (``replaymask analyze --seeds``): per loss variant,
the stability instrumentation of :mod:`replaymask.core.analysis` and the final task
confusion, each run's value first, then their mean and 95% interval over the seeds."""

from __future__ import annotations

import statistics

from .stats import mean_interval

# (key, what it is): the quantities summarised, each a run's mean over tasks 2.. (the
# steps where old classes exist), or a share of the final task confusion
QUANTITIES = (
    ("class_il", "Class-IL (%)"),
    ("grad_old", "gradient into old logits"),
    ("grad_current", "gradient into current logits"),
    ("old_class_mass", "softmax mass on old classes"),
    ("old_logit_drift", "old-logit drift"),
    ("into_later_task", "test samples taken for a later task's (%)"),
    ("into_earlier_task", "test samples taken for an earlier task's (%)"),
    ("test_into_later", "over training: seen-task test samples taken for a later task's (%)"),
    ("test_into_earlier",
     "over training: seen-task test samples taken for an earlier task's (%)"),
)


def run_summary(class_il: float, records: list[dict], confusion: list[list[float]]) -> dict:
    """One run's quantities: the instrumentation averaged over the steps of tasks 2..
    (task 1 has no old classes), and from the task confusion after the last task the
    percent of all test samples predicted into a later or an earlier task than their own
    (every task has the same number of test samples up to a few)."""
    later = [r for r in records if r["task"] > 0]

    def mean(key):
        values = [r[key] for r in later if r.get(key) is not None]
        return statistics.fmean(values) if values else None
    n_tasks = len(confusion)
    return {
        "class_il": class_il,
        **{key: mean(key) for key in ("grad_old", "grad_current", "old_class_mass",
                                       "old_logit_drift", "test_into_later",
                                       "test_into_earlier")},
        "into_later_task": statistics.fmean(
            sum(row[j] for j in range(i + 1, n_tasks)) for i, row in enumerate(confusion)),
        "into_earlier_task": statistics.fmean(
            sum(row[j] for j in range(i)) for i, row in enumerate(confusion)),
    }


def over_seeds(summaries: list[dict]) -> dict[str, tuple[float, float | None, float | None]]:
    """Per quantity: the mean over the runs and its 95% interval (None with one run)."""
    return {key: mean_interval([s[key] for s in summaries])
            for key, _ in QUANTITIES if all(s.get(key) is not None for s in summaries)}


def markdown(variants: dict[str, list[dict]], title: str) -> str:
    """A table: one row per variant, one column per quantity, mean [95% CI] over seeds."""
    lines = [f"# {title}", "", "Each value: the mean over the seeds of each run's value, "
             "with its 95% interval (t distribution). Instrumentation: mean over the "
             "measured steps of tasks 2 and later (the 'over training' shares: of test "
             "samples of the tasks seen so far, over the seen classes); task confusion: "
             "after the last task, every class visible.", "",
             "| variant | seeds | " + " | ".join(label for _, label in QUANTITIES) + " |",
             "|---" * (len(QUANTITIES) + 2) + "|"]
    for name, summaries in variants.items():
        found = over_seeds(summaries)
        cells = [_interval(found.get(key)) for key, _ in QUANTITIES]
        lines.append(f"| {name} | {len(summaries)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval(value) -> str:
    if value is None:
        return ""
    mean, low, high = value
    digits = 2 if abs(mean) >= 1 else 4
    if low is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
