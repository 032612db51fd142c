"""Reports over many runs: paper-layout tables (Markdown, CSV) and PNG plots."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from ..core.results import atomic_write
from .cells import Cell, group_runs, row_order


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


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
            parts.append("" if cell is None else
                         f"{_mean_std(cell.values('class_il'))} / "
                         f"{_mean_std(cell.values('task_il'))} (n={len(cell.results)})")
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def gms_effect_table(cells: list[Cell], setting: str = "class_il") -> str:
    """Change of the mean accuracy that each GMS variant brings to its base method, per
    (dataset, buffer); a star marks a change larger than both cells' std combined."""
    by_key = {(c.label, c.dataset, c.buffer_size): c for c in cells}
    variants = sorted({c.label.split(" + GMS")[1] for c in cells if " + GMS" in c.label})
    bases = [label for label in row_order(cells) if " + GMS" not in label]
    columns = sorted({(c.dataset, c.buffer_size) for c in cells})
    lines = []
    for variant in variants:
        rows = []
        for base in bases:
            parts, any_cell = [], False
            for dataset, buffer_size in columns:
                plain = by_key.get((base, dataset, buffer_size))
                masked = by_key.get((f"{base} + GMS{variant}", dataset, buffer_size))
                if plain is None or masked is None:
                    parts.append("")
                    continue
                any_cell = True
                a, b = plain.values(setting), masked.values(setting)
                delta = statistics.fmean(b) - statistics.fmean(a)
                spread = sum(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (a, b))
                parts.append(f"{delta:+.1f}{'*' if abs(delta) > spread else ''}")
            if any_cell:
                rows.append(f"| {base} | " + " | ".join(parts) + " |")
        if rows:
            header = " | ".join(f"{d} buf {b}" for d, b in columns)
            lines += [f"GMS{variant} minus no GMS, {setting.replace('_', '-')} points:", "",
                      f"| method | {header} |", "|---" * (len(columns) + 1) + "|", *rows, ""]
    return "\n".join(lines)


def csv_table(cells: list[Cell]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "dataset", "buffer_size", "seeds", "class_il_mean", "class_il_std",
                     "task_il_mean", "task_il_std"])
    for cell in sorted(cells, key=lambda c: (c.dataset, c.buffer_size, c.label)):
        row = [cell.label, cell.dataset, cell.buffer_size, len(cell.results)]
        for setting in ("class_il", "task_il"):
            values = cell.values(setting)
            row += [f"{statistics.fmean(values):.4f}",
                    f"{statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"]
        writer.writerow(row)
    return buffer.getvalue()


def write_report(results: list[dict], out_dir: str | Path, plots: bool = True) -> list[Path]:
    """Write report.md, report.csv and (with matplotlib) PNG plots; returns the paths."""
    cells = group_runs(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.md", out_dir / "report.csv"]
    seeds = sorted({len(c.results) for c in cells})
    atomic_write(written[0], f"# replaymask report\n\n{len(results)} finished runs; "
                 f"seeds per cell: {', '.join(map(str, seeds))}. Cells: Class-IL / Task-IL "
                 "average accuracy (%) after the last task, mean ± sample std.\n\n"
                 + markdown_table(cells) + "\n## Effect of GMS\n\n" + gms_effect_table(cells))
    atomic_write(written[1], csv_table(cells))
    if plots:
        from . import plots as plotting
        written += plotting.write_all(cells, out_dir)
    return written
