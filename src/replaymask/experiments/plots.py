"""PNG figures of a report (matplotlib, the `report` extra)."""

from __future__ import annotations

import statistics
from pathlib import Path

from .cells import Cell, Variant, row_order


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


VARIANT_COLORS = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                  "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "gold", "navy", "lime",
                  "teal", "crimson", "slategray"]  # black: no GMS, and no other variant
METHOD_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def _style(variant: Variant, rows: list[Variant]) -> dict:
    """Colour by GMS variant (black: no GMS), marker by method: 20+ lines stay readable."""
    bases = list(dict.fromkeys(row.plain for row in rows))
    kinds = list(dict.fromkeys(row.gms_part for row in rows))
    kinds.sort(key=lambda kind: kind != "")
    index = kinds.index(variant.gms_part)  # past the palette: cycle, never back to black
    color = VARIANT_COLORS[index if index < len(VARIANT_COLORS)
                           else 1 + (index - 1) % (len(VARIANT_COLORS) - 1)]
    return {"color": color,
            "marker": METHOD_MARKERS[bases.index(variant.plain) % len(METHOD_MARKERS)]}


def write_all(cells: list[Cell], out_dir: Path) -> list[Path]:
    written = []
    for dataset in sorted({c.dataset for c in cells}):
        everything = [c for c in cells if c.dataset == dataset]
        subset = full_buffer_axis(everything)
        written += [
            heatmaps(subset, out_dir / f"{dataset}_accuracy_matrices.png"),
            accuracy_after_each_task(subset, out_dir / f"{dataset}_accuracy_per_task.png"),
            accuracy_vs_buffer(subset, out_dir / f"{dataset}_accuracy_vs_buffer.png"),
            stability_plasticity(subset, out_dir / f"{dataset}_stability_plasticity.png"),
        ]
        if mask_value_curves(everything):
            written.append(m_curve(everything, out_dir / f"{dataset}_m_curve.png"))
    return written


def full_buffer_axis(cells: list[Cell]) -> list[Cell]:
    """The cells of the labels that were run at every buffer size their method was run at
    without GMS: variants run at a few sizes only (the m curve's) are left to the m-curve
    figure, so that the per-buffer figures keep one line per variant of the main grid."""
    sizes: dict[Variant, set[int]] = {}
    for cell in cells:
        sizes.setdefault(cell.variant, set()).add(cell.buffer_size)
    return [c for c in cells if sizes[c.variant] >= sizes.get(c.variant.plain, set())]


M_CURVE_METRICS = (  # (title, value of one run)
    ("Class-IL accuracy (%)", lambda r: r["metrics"]["class_il"]["average_accuracy"]),
    ("Task-IL accuracy (%)", lambda r: r["metrics"]["task_il"]["average_accuracy"]),
    ("Class-IL forgetting (points)", lambda r: r["metrics"]["class_il"]["forgetting"]),
    ("last task's Class-IL accuracy (%)",
     lambda r: r["metrics"]["class_il"]["final_task_accuracy"][-1]),
)


def _mask_value(cell: Cell) -> float | None:
    """The cell's GMS mask value as a number (-inf included), or None for no GMS,
    "detach" or a masked buffer."""
    variant = cell.variant
    if not variant.gms or variant.on_buffer or variant.mask_value == "detach" \
            or not cell.results:
        return None
    return float(variant.mask_value)


def mask_value_curves(cells: list[Cell]) -> dict[tuple[Variant, int], dict[float, Cell]]:
    """(method without GMS, buffer size) -> {m: cell} where at least 4 values of m were
    run."""
    curves: dict[tuple[Variant, int], dict[float, Cell]] = {}
    for cell in cells:
        if (m := _mask_value(cell)) is not None:
            curves.setdefault((cell.variant.plain, cell.buffer_size), {})[m] = cell
    return {key: curve for key, curve in curves.items() if len(curve) >= 4}


def m_curve(cells: list[Cell], path: Path) -> Path:
    """The paper's knob: each metric against the mask value m, one column per buffer
    size, one line per method, the mean over seeds with its 95% confidence band (t
    interval); the same method without GMS as a dashed line of its colour."""
    from .stats import mean_interval

    plt = _pyplot()
    curves = mask_value_curves(cells)
    buffers = sorted({buffer_size for _, buffer_size in curves})
    values = sorted({m for curve in curves.values() for m in curve})
    position = {m: index for index, m in enumerate(values)}  # -inf first, evenly spaced
    rows = row_order(cells)
    methods = list(dict.fromkeys(method for method, _ in sorted(
        curves, key=lambda key: rows.index(key[0]) if key[0] in rows else 0)))
    colors = {method: f"C{index}" for index, method in enumerate(methods)}
    plain = {(c.variant, c.buffer_size): c for c in cells if not c.variant.gms}
    figure, axes = plt.subplots(len(M_CURVE_METRICS), len(buffers), squeeze=False,
                                figsize=(4.6 * len(buffers), 3.0 * len(M_CURVE_METRICS)),
                                sharex=True, sharey="row")
    for column, buffer_size in enumerate(buffers):
        for row, (title, metric) in enumerate(M_CURVE_METRICS):
            axis = axes[row][column]
            for method in methods:
                curve = curves.get((method, buffer_size))
                if curve is None:
                    continue
                ms = sorted(curve)
                intervals = [mean_interval([metric(r) for r in curve[m].results]) for m in ms]
                xs = [position[m] for m in ms]
                axis.plot(xs, [mean for mean, _, _ in intervals], marker="o", markersize=3,
                          linewidth=1, color=colors[method], label=f"{method.label} + GMS")
                if all(low is not None for _, low, _ in intervals):
                    axis.fill_between(xs, [low for _, low, _ in intervals],
                                      [high for _, _, high in intervals],
                                      color=colors[method], alpha=0.15, linewidth=0)
                if (baseline := plain.get((method, buffer_size))) and baseline.results:
                    axis.axhline(statistics.fmean(metric(r) for r in baseline.results),
                                 color=colors[method], linestyle="--", linewidth=0.8,
                                 label=f"{method.label}, no GMS")
            if row == 0:
                axis.set_title(f"buffer {buffer_size}" if buffer_size else "no buffer")
                axis.legend(fontsize=6)
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
            axis.set_xticks(range(len(values)))
            axis.set_xticklabels(["-inf" if m == float("-inf") else f"{m:g}" for m in values],
                                 fontsize=7)
    for axis in axes[-1]:
        axis.set_xlabel("GMS mask value m")
    figure.suptitle(f"{cells[0].dataset}: against the GMS mask value m\n(mean over seeds, "
                    "95% band; dashed: the method without GMS)", fontsize=9)
    return _save(figure, path)


def heatmaps(cells: list[Cell], path: Path) -> Path:
    """Mean Class-IL accuracy matrix of every (method, buffer)."""
    plt = _pyplot()
    rows, buffers = row_order(cells), sorted({c.buffer_size for c in cells})
    by_key = {(c.variant, c.buffer_size): c for c in cells}
    figure, axes = plt.subplots(len(rows), len(buffers), squeeze=False,
                                figsize=(2.6 * len(buffers) + 1, 2.4 * len(rows)))
    for i, variant in enumerate(rows):
        for j, buffer_size in enumerate(buffers):
            axis = axes[i][j]
            cell = by_key.get((variant, buffer_size))
            axis.set_xticks([])
            axis.set_yticks([])
            if cell is None:
                axis.axis("off")
                continue
            matrix = cell.mean_matrix("class_il")
            size = len(matrix)
            grid = [[row[k] if k < len(row) else float("nan") for k in range(size)]
                    for row in matrix]
            axis.imshow(grid, vmin=0, vmax=100, cmap="viridis")
            for r in range(size):
                for k in range(r + 1):
                    axis.text(k, r, f"{grid[r][k]:.0f}", ha="center", va="center", fontsize=7,
                              color="white" if grid[r][k] < 60 else "black")
            axis.set_title(f"{variant.label}\nbuffer {buffer_size}", fontsize=8)
    figure.suptitle(f"{cells[0].dataset}: Class-IL accuracy (%), row = after task, col = task")
    return _save(figure, path)


def accuracy_after_each_task(cells: list[Cell], path: Path) -> Path:
    """Average Class-IL accuracy over the seen tasks, after each task."""
    plt = _pyplot()
    buffers = sorted({c.buffer_size for c in cells})
    figure, axes = plt.subplots(1, len(buffers), squeeze=False, figsize=(4.2 * len(buffers), 3.6),
                                sharey=True)
    for axis, buffer_size in zip(axes[0], buffers, strict=True):
        rows = row_order(cells)
        for cell in sorted((c for c in cells if c.buffer_size == buffer_size),
                           key=lambda c: rows.index(c.variant)):
            curve = [statistics.fmean(row) for row in cell.mean_matrix("class_il")]
            axis.plot(range(1, len(curve) + 1), curve, label=cell.label, markersize=4,
                      linewidth=1, **_style(cell.variant, rows))
        axis.set_title(f"buffer {buffer_size}")
        axis.set_xlabel("after task")
        axis.set_ylim(0, 100)
    axes[0][0].set_ylabel("average Class-IL accuracy (%)")
    axes[0][-1].legend(fontsize=6, ncol=2)
    figure.suptitle(cells[0].dataset)
    return _save(figure, path)


def accuracy_vs_buffer(cells: list[Cell], path: Path) -> Path:
    """Final average accuracy against buffer size, mean ± std over seeds: one column per
    method (Class-IL above, Task-IL below), one line per GMS variant."""
    plt = _pyplot()
    rows = row_order(cells)
    bases = [b for b in dict.fromkeys(row.plain for row in rows)
             if len({c.buffer_size for c in cells if c.variant.plain == b}) > 1]
    if not bases:
        bases = list(dict.fromkeys(row.plain for row in rows))
    figure, axes = plt.subplots(2, len(bases), squeeze=False, figsize=(4 * len(bases), 7),
                                sharey="row")
    for column, base in enumerate(bases):
        for row, (setting, title) in enumerate((("class_il", "Class-IL"), ("task_il", "Task-IL"))):
            axis = axes[row][column]
            for variant in (row for row in rows if row.plain == base):
                points = sorted((c for c in cells if c.variant == variant),
                                key=lambda c: c.buffer_size)
                means = [statistics.fmean(c.values(setting)) for c in points]
                stds = [statistics.stdev(c.values(setting)) if len(c.results) > 1 else 0.0
                        for c in points]
                axis.errorbar([c.buffer_size for c in points], means, yerr=stds, capsize=3,
                              markersize=4, linewidth=1, label=variant.label,
                              **_style(variant, rows))
            axis.set_xscale("symlog", linthresh=10)
            axis.set_xlabel("buffer size")
            axis.set_title(f"{base.label}: {title}", fontsize=10)
            if column == 0:
                axis.set_ylabel(f"{title} accuracy (%)")
            if row == 0:
                axis.legend(fontsize=6)
    figure.suptitle(cells[0].dataset)
    return _save(figure, path)


def stability_plasticity(cells: list[Cell], path: Path) -> Path:
    """Old tasks' final accuracy (stability) against the newest task's (plasticity)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    rows = row_order(cells)
    for variant in rows:
        points = [c for c in cells if c.variant == variant]
        old = [statistics.fmean(statistics.fmean(r["accuracy_matrix"]["class_il"][-1][:-1])
                                for r in c.results) for c in points]
        new = [statistics.fmean(r["accuracy_matrix"]["class_il"][-1][-1] for r in c.results)
               for c in points]
        style = _style(variant, rows)
        axis.scatter(new, old, label=variant.label, c=style["color"], marker=style["marker"],
                     s=22)
        for c, x, y in zip(points, new, old, strict=True):
            axis.annotate(str(c.buffer_size), (x, y), fontsize=6, xytext=(2, 2),
                          textcoords="offset points")
    axis.set_xlabel("newest task, Class-IL accuracy (%)  [plasticity]")
    axis.set_ylabel("older tasks, mean Class-IL accuracy (%)  [stability]")
    axis.set_title(f"{cells[0].dataset}: points labelled by buffer size")
    axis.legend(fontsize=6, ncol=2)
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    figure.clear()
    import matplotlib.pyplot as plt

    plt.close(figure)
    temporary.replace(path)
    return path


ANALYSIS_PANELS = (
    ("grad_old", "gradient norm into earlier-task logits"),
    ("grad_current", "gradient norm into current-task logits"),
    ("old_class_mass", "softmax mass on earlier-task classes"),
    ("old_logit_drift", "drift of earlier-task logits on old samples"),
)


def analysis_figure(variants: dict[str, list[dict]], title: str, path: Path) -> Path:
    """One panel per measured quantity, one line per loss variant, against training step."""
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for axis, (key, label) in zip(axes.flat, ANALYSIS_PANELS, strict=True):
        for name, records in variants.items():
            points = [(r["step"], r[key]) for r in records if r[key] is not None]
            if points:
                axis.plot(*zip(*points, strict=True), label=name, linewidth=1.2)
        boundaries = [r["step"] for r, nxt in zip(records, records[1:], strict=False)
                      if nxt["task"] != r["task"]]
        for step in boundaries:
            axis.axvline(step, color="grey", linewidth=0.6, linestyle=":")
        if key == "old_logit_drift":  # detach's drift is orders of magnitude larger
            axis.set_yscale("symlog", linthresh=1.0)
            axis.set_ylim(bottom=0)
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("training step (dotted: task boundaries)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title)
    return _save(figure, path)
