"""Reports over many runs: paper-layout tables (Markdown, CSV) and PNG plots."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from ..core.results import atomic_write
from .cells import Cell, group_runs, mask_order, row_order, split_label
from .stats import PairedDifference, gms_comparisons

SETTINGS = ("class_il", "task_il")


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def _runs(cell: Cell) -> str:
    """'n=5', or with failures 'n=3; 2/5 diverged'."""
    if not cell.failed:
        return f"n={len(cell.results)}"
    return f"n={len(cell.results)}; {cell.failed}/{cell.attempted} diverged"


def markdown_table(cells: list[Cell]) -> str:
    """Rows: method (+ GMS); columns: dataset x buffer; cells: Class-IL / Task-IL,
    mean ± sample std over seeds, with the seed count."""
    columns = sorted({(c.dataset, c.buffer_size) for c in cells})
    by_key = {(c.label, c.dataset, c.buffer_size): c for c in cells}
    header = " | ".join(f"{d} buf {b}" for d, b in columns)
    lines = [f"| method | {header} |", "|---" * (len(columns) + 1) + "|"]
    for label in row_order(cells):
        parts = []
        for dataset, buffer_size in columns:
            cell = by_key.get((label, dataset, buffer_size))
            if cell is None:
                parts.append("")
            elif not cell.results:
                parts.append(f"all {cell.failed} diverged")
            else:
                parts.append(f"{_mean_std(cell.values('class_il'))} / "
                             f"{_mean_std(cell.values('task_il'))} ({_runs(cell)})")
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def gms_effect_table(cells: list[Cell], setting: str = "class_il") -> str:
    """Mean paired change that each GMS variant brings to its base method, per (dataset,
    buffer); a star marks a change whose paired test survives the Holm correction over
    the whole table (:mod:`replaymask.experiments.stats`)."""
    comparisons = {(d.label, d.dataset, d.buffer_size): d for d in gms_comparisons(cells, setting)}
    by_key = {(c.label, c.dataset, c.buffer_size): c for c in cells}
    variants = sorted({split_label(c.label)[1] for c in cells if " + GMS" in c.label},
                      key=lambda variant: (mask_order(variant), variant))
    bases = [label for label in row_order(cells) if " + GMS" not in label]
    columns = sorted({(c.dataset, c.buffer_size) for c in cells})
    lines = []
    for variant in variants:
        rows = []
        for base in bases:
            parts, any_cell = [], False
            for dataset, buffer_size in columns:
                masked = by_key.get((f"{base} + GMS{variant}", dataset, buffer_size))
                difference = None if masked is None else comparisons.get(
                    (masked.label, dataset, buffer_size))
                if difference is None:
                    parts.append("")
                    continue
                any_cell = True
                parts.append(f"{difference.mean:+.1f}{'*' if difference.significant else ''}")
            if any_cell:
                rows.append(f"| {base} | " + " | ".join(parts) + " |")
        if rows:
            header = " | ".join(f"{d} buf {b}" for d, b in columns)
            lines += [f"GMS{variant} minus no GMS, {setting.replace('_', '-')} points "
                      "(mean over pairs of runs with the same seed and class order; * = "
                      "significant at 5% after Holm's correction):", "",
                      f"| method | {header} |", "|---" * (len(columns) + 1) + "|", *rows, ""]
    return "\n".join(lines)


def paired_table(cells: list[Cell]) -> str:
    """Every GMS variant against its method without GMS: the mean paired difference with
    its 95% interval, the paired t-test's p-value and its Holm-adjusted value, for
    Class-IL and Task-IL (each its own family of tests)."""
    found = {setting: gms_comparisons(cells, setting) for setting in SETTINGS}
    task_il = {(d.label, d.dataset, d.buffer_size): d for d in found["task_il"]}
    lines = ["| GMS variant | dataset | buffer | pairs | Class-IL difference [95% CI] | p | "
             "p (Holm) | Task-IL difference [95% CI] | p | p (Holm) |", "|---" * 10 + "|"]
    for class_il in sorted(found["class_il"], key=lambda d: (d.dataset, d.buffer_size,
                                                             _order(cells, d.label))):
        parts = [class_il.label, class_il.dataset, str(class_il.buffer_size),
                 str(class_il.pairs)]
        for difference in (class_il, task_il.get((class_il.label, class_il.dataset,
                                                  class_il.buffer_size))):
            parts += _difference_columns(difference)
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def _order(cells: list[Cell], label: str) -> int:
    return row_order(cells).index(label)


def _difference_columns(difference: PairedDifference | None) -> list[str]:
    if difference is None:
        return ["", "", ""]
    mark = "*" if difference.significant else ""
    if difference.p is None:
        return [f"{difference.mean:+.2f}", "", ""]
    return [f"{difference.mean:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]",
            _p(difference.p), _p(difference.p_holm) + mark]


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 0.001 else f"{value:.0e}"


def csv_table(cells: list[Cell]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "dataset", "buffer_size", "seeds", "class_il_mean", "class_il_std",
                     "task_il_mean", "task_il_std", "runs", "diverged"])
    for cell in sorted(cells, key=lambda c: (c.dataset, c.buffer_size, c.label)):
        row = [cell.label, cell.dataset, cell.buffer_size, len(cell.results)]
        for setting in SETTINGS:
            values = cell.values(setting)
            row += ["", ""] if not values else [
                f"{statistics.fmean(values):.4f}",
                f"{statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"]
        writer.writerow([*row, cell.attempted, cell.failed])
    return buffer.getvalue()


def paired_csv(cells: list[Cell]) -> str:
    """One row per (GMS variant, dataset, buffer, setting): the paired comparison."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "base", "dataset", "buffer_size", "setting", "pairs",
                     "mean_difference", "ci95_low", "ci95_high", "p", "p_holm", "significant"])
    for setting in SETTINGS:
        for d in gms_comparisons(cells, setting):
            writer.writerow([d.label, d.base, d.dataset, d.buffer_size, setting, d.pairs,
                             f"{d.mean:.4f}", *("" if v is None else f"{v:.4f}"
                                                for v in (d.low, d.high)),
                             "" if d.p is None else f"{d.p:.6g}",
                             "" if d.p_holm is None else f"{d.p_holm:.6g}", int(d.significant)])
    return buffer.getvalue()


def write_report(results: list[dict], out_dir: str | Path, plots: bool = True,
                 failed: list[dict] = ()) -> list[Path]:
    """Write report.md, report.csv, paired.csv and (with matplotlib) PNG plots from the
    finished runs' results and the configurations of the ``failed`` (diverged) runs;
    returns the paths."""
    cells = group_runs(results, failed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.md", out_dir / "report.csv", out_dir / "paired.csv"]
    seeds = sorted({len(c.results) for c in cells})
    atomic_write(written[0], f"# replaymask report\n\n{len(results)} finished runs"
                 + (f", {len(failed)} diverged" if failed else "")
                 + f"; finished runs per cell: {', '.join(map(str, seeds))}. Cells: Class-IL / "
                 "Task-IL average accuracy (%) after the last task, mean ± sample std over "
                 "the finished runs, and how many diverged.\n\n"
                 + markdown_table(cells) + "\n## Effect of GMS\n\n" + gms_effect_table(cells)
                 + "\n## Paired differences to the same method without GMS\n\n" + PAIRED_TEXT
                 + paired_table(cells))
    atomic_write(written[1], csv_table(cells))
    atomic_write(written[2], paired_csv(cells))
    if plots:
        from . import plots as plotting
        written += plotting.write_all([c for c in cells if c.results], out_dir)
    return written


PAIRED_TEXT = (
    "Runs with the same seed and class order share initial weights, data order and buffer "
    "draws, so each GMS run is compared with its partner without GMS. Difference = with "
    "GMS minus without, accuracy points, mean over the pairs (a diverged run has no "
    "partner); 95% confidence interval from the t distribution; p: two-sided paired "
    "t-test; p (Holm): adjusted for every comparison in this table (Class-IL and Task-IL "
    "each a family); * = significant at 5% after the adjustment.\n\n")
