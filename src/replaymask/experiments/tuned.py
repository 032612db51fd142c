"""Tuned against tuned: each GMS cell's selected configuration against its baseline cell's,
both found by the same search (:mod:`.search`), on their test runs (docs/study/plan.md
sections 3 and 4, family F1).

A pair is two cells of a search file that differ only in ``gms``. Each side runs its own
selection (its own learning rate, replay batch, alpha, beta; the GMS side its mask value)
with the search file's test seeds; a seed's two runs are a pair. A pair of cells is
compared once both searches are complete and every test run of both is in the database;
a diverged test run leaves its seed out, and is counted.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..core.methods import declaration
from .search import CellOutcome, Search, selection_configs
from .stats import PairedDifference, holm, summarize_differences, with_holm

SETTINGS = ("class_il", "task_il")


@dataclass(frozen=True)
class TunedPair:
    """One pair of cells: its two selections, their test outcomes and the comparison
    (None until both sides' test runs are all recorded)."""

    method: str
    dataset: str
    buffer_size: int | None
    baseline: dict  # the baseline's selected settings (its search's space only)
    gms: dict  # the GMS side's
    diverged: int  # test runs of either side that diverged
    missing: int  # test runs not yet in the database
    comparisons: dict  # setting -> PairedDifference
    means: dict = None  # setting -> (the baseline's mean, GMS's), over the paired seeds


def tuned_pairs(search: Search, outcomes: list[CellOutcome], outcome_of) -> list[TunedPair]:
    """The pairs of ``search``'s cells, compared on their test runs; ``outcome_of(hash)`` is
    a run's (status, result, error), or None (:meth:`ResultsStore.outcome`). Each setting's
    comparisons are Holm-adjusted as one family over the pairs compared."""
    by_key = {}
    for outcome in outcomes:
        key = tuple(sorted((k, str(v)) for k, v in outcome.cell.items() if k != "gms"))
        by_key.setdefault(key, {})[bool(outcome.cell.get("gms"))] = outcome
    pairs = []
    for sides in by_key.values():
        if set(sides) != {False, True}:
            continue
        base, masked = sides[False], sides[True]
        runs = {side: selection_configs(search, outcome) for side, outcome in sides.items()}
        if not (runs[False] and runs[True]):  # a search under way: nothing to pair yet
            runs = {False: [], True: []}
        values, diverged, missing = {s: {} for s in SETTINGS}, 0, 0
        accuracies = {s: ([], []) for s in SETTINGS}
        for config_base, config_gms in zip(runs[False], runs[True], strict=True):
            found = [outcome_of(config.hash) for config in (config_base, config_gms)]
            missing += sum(f is None for f in found)
            diverged += sum(f is not None and f[0] == "failed" for f in found)
            if all(f is not None and f[0] == "done" for f in found):
                for setting in SETTINGS:
                    base_value, gms_value = (f[1]["metrics"][setting]["average_accuracy"]
                                             for f in found)
                    values[setting][config_base.seed] = gms_value - base_value
                    accuracies[setting][0].append(base_value)
                    accuracies[setting][1].append(gms_value)
        complete = runs[False] and runs[True] and not missing
        cell = base.cell
        label = declaration(cell["model"]).label
        comparisons = {setting: summarize_differences(
            f"{label} + GMS (tuned)", f"{label} (tuned)", cell.get("dataset", "seq-mnist"),
            cell.get("buffer_size", 0), setting, {None: list(values[setting].values())})
            for setting in SETTINGS if complete and values[setting]}
        pairs.append(TunedPair(cell["model"], cell.get("dataset", "seq-mnist"),
                               cell.get("buffer_size"), dict(base.selected[0])
                               if base.selected else {},
                               dict(masked.selected[0]) if masked.selected else {},
                               diverged, missing if runs[False] and runs[True] else -1,
                               comparisons,
                               {setting: tuple(statistics.fmean(side) for side in sides)
                                for setting, sides in accuracies.items()
                                if setting in comparisons}))
    for setting in SETTINGS:  # one family per setting, over the pairs compared
        compared = [p for p in pairs if setting in p.comparisons]
        adjusted = with_holm([p.comparisons[setting] for p in compared])
        for pair, difference in zip(compared, adjusted, strict=True):
            pair.comparisons[setting] = difference
    return pairs


def whole_table_holm(pairs: list[TunedPair], others: list[PairedDifference],
                     setting: str = "class_il") -> dict[int, float]:
    """Each pair's p adjusted over the pairs and ``others`` together (the report's whole
    table), beside the family's: by the pair's index in ``pairs``."""
    tested = [(i, p.comparisons[setting].p) for i, p in enumerate(pairs)
              if setting in p.comparisons and p.comparisons[setting].p is not None]
    rest = [d.p for d in others if d.p is not None]
    adjusted = holm([p for _, p in tested] + rest)
    return {i: adjusted[k] for k, (i, _) in enumerate(tested)}


def markdown_table(pairs: list[TunedPair], others: list[PairedDifference] = ()) -> str:
    """The F1 table: per pair, both selections, the Class-IL difference with its interval,
    p, p Holm-adjusted within F1 and over the whole report, d_z, the TOST and the
    outcome; pairs not yet complete are listed with what they wait for."""
    whole = whole_table_holm(pairs, list(others))
    lines = ["| dataset | method | buffer | baseline's selection | GMS's selection | seeds | "
             "Class-IL, baseline / GMS | Class-IL difference [95% CI] | p | p (Holm, F1) | "
             "p (Holm, whole report) | d_z | TOST p (Holm, F1) | outcome | "
             "Task-IL difference [95% CI] |",
             "|---" * 15 + "|"]
    order = {name: i for i, name in enumerate(("sgd", "er", "der", "derpp", "er_ace"))}
    for index, pair in sorted(enumerate(pairs), key=lambda item: (
            item[1].dataset, order.get(item[1].method, 99), item[1].buffer_size or 0)):
        label = declaration(pair.method).label
        head = [pair.dataset, label, "-" if pair.buffer_size is None else str(pair.buffer_size),
                _settings(pair.baseline), _settings(pair.gms)]
        class_il = pair.comparisons.get("class_il")
        if class_il is None:
            wait = ("search under way" if pair.missing < 0
                    else f"{pair.missing} test runs to run")
            lines.append("| " + " | ".join([*head, "", "", wait] + [""] * 7) + " |")
            continue
        task_il = pair.comparisons.get("task_il")
        seeds = str(class_il.pairs) + (f" ({pair.diverged} diverged)" if pair.diverged else "")
        base_mean, gms_mean = pair.means["class_il"]
        lines.append("| " + " | ".join([
            *head, seeds, f"{base_mean:.2f} / {gms_mean:.2f}", _interval(class_il),
            _p(class_il.p), _p(class_il.p_holm),
            _p(whole.get(index)), "" if class_il.dz is None else f"{class_il.dz:+.2f}",
            _p(class_il.p_equivalent_holm), class_il.outcome,
            _interval(task_il) if task_il else ""]) + " |")
    return "\n".join(lines) + "\n"


def csv_table(pairs: list[TunedPair]) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "method", "buffer_size", "setting", "baseline", "gms",
                     "pairs", "diverged", "baseline_mean", "gms_mean", "mean_difference",
                     "ci95_low", "ci95_high", "p", "p_holm_f1", "dz", "p_equivalent",
                     "p_equivalent_holm_f1", "outcome"])
    for pair in pairs:
        for setting, d in pair.comparisons.items():
            writer.writerow([pair.dataset, pair.method, pair.buffer_size, setting,
                             _settings(pair.baseline), _settings(pair.gms), d.pairs,
                             pair.diverged, *(f"{m:.4f}" for m in pair.means[setting]),
                             f"{d.mean:.4f}", _number(d.low), _number(d.high),
                             _number(d.p, ".6g"), _number(d.p_holm, ".6g"), _number(d.dz),
                             _number(d.p_equivalent, ".6g"),
                             _number(d.p_equivalent_holm, ".6g"), d.outcome])
    return buffer.getvalue()


def _settings(selected: dict) -> str:
    return ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in selected.items())


def _interval(d: PairedDifference) -> str:
    if d.low is None:
        return f"{d.mean:+.2f}"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _p(value) -> str:
    if value is None:
        return ""
    return f"{value:.2g}" if value >= 0.001 else f"{value:.0e}"


def _number(value, digits: str = ".4f") -> str:
    return "" if value is None else f"{value:{digits}}"


def plan_line(plan: Path, first_run: str | None) -> str:
    """One sentence for the F1 table: the plan beside the search file, the commit that
    first added it and when (from git, where the plan is in a repository), and when the
    search's first trial run finished (from the database), so a reader can check that the
    plan came first."""
    import subprocess

    added = ""
    try:
        found = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%h %cI", "--", plan.name],
            cwd=plan.parent, capture_output=True, text=True, timeout=30, check=True)
        lines = found.stdout.split()
        if len(lines) >= 2:
            added = f", first committed in {lines[-2]} at {lines[-1]}"
    except (OSError, subprocess.SubprocessError):
        pass
    first = f"; the search's first trial run finished at {first_run}" if first_run else ""
    return f"The plan: {plan}{added or ' (not found in a git repository)'}{first}.\n\n"
