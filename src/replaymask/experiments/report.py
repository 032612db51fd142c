"""Reports over many runs: paper-layout tables (Markdown, CSV) and PNG plots."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from ..core.results import atomic_write
from .cells import (
    Cell,
    Variant,
    changed_hyperparameters,
    group_runs,
    pooled_over_orders,
    row_order,
    variant_of,
)
from .search import is_selection_test_run, is_trial_run
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
    by_key = {(c.variant, c.dataset, c.buffer_size): c for c in cells}
    header = " | ".join(f"{d} buf {b}" for d, b in columns)
    lines = [f"| method | {header} |", "|---" * (len(columns) + 1) + "|"]
    for variant in row_order(cells):
        parts = []
        for dataset, buffer_size in columns:
            cell = by_key.get((variant, dataset, buffer_size))
            if cell is None:
                parts.append("")
            elif not cell.results:
                parts.append(f"all {cell.failed} diverged")
            else:
                parts.append(f"{_mean_std(cell.values('class_il'))} / "
                             f"{_mean_std(cell.values('task_il'))} ({_runs(cell)})")
        lines.append(f"| {variant.label} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def gms_effect_table(cells: list[Cell], setting: str = "class_il",
                     tested: list[PairedDifference] | None = None) -> str:
    """Mean paired change that each GMS variant brings to its base method, per (dataset,
    buffer); a star marks a change whose paired test survives the Holm correction over
    the family ``tested`` (default: the comparisons among ``cells``;
    :mod:`replaymask.experiments.stats`)."""
    if tested is None:
        tested = gms_comparisons(cells, setting)
    comparisons = {(d.label, d.dataset, d.buffer_size): d for d in tested}
    by_key = {(c.variant, c.dataset, c.buffer_size): c for c in cells}
    kinds = sorted({(c.variant.mask_order, c.variant.gms_part, c.variant.mask_value,
                     c.variant.on_buffer) for c in cells if c.variant.gms})
    bases = [variant for variant in row_order(cells) if not variant.gms]
    columns = sorted({(c.dataset, c.buffer_size) for c in cells})
    lines = []
    for _, gms_part, mask_value, on_buffer in kinds:
        rows = []
        for base in bases:
            parts, any_cell = [], False
            masked_variant = Variant(base.method, base.arguments, True, mask_value, on_buffer)
            for dataset, buffer_size in columns:
                masked = by_key.get((masked_variant, dataset, buffer_size))
                difference = None if masked is None else comparisons.get(
                    (masked.label, dataset, buffer_size))
                if difference is None:
                    parts.append("")
                    continue
                any_cell = True
                parts.append(f"{difference.mean:+.1f}{'*' if difference.significant else ''}")
            if any_cell:
                rows.append(f"| {base.label} | " + " | ".join(parts) + " |")
        if rows:
            header = " | ".join(f"{d} buf {b}" for d, b in columns)
            lines += [f"GMS{gms_part} minus no GMS, {setting.replace('_', '-')} points "
                      "(mean over pairs of runs with the same seed and class order; * = "
                      "significant at 5% after Holm's correction):", "",
                      f"| method | {header} |", "|---" * (len(columns) + 1) + "|", *rows, ""]
    return "\n".join(lines)


def paired_table(cells: list[Cell], found: dict[str, list[PairedDifference]] | None = None
                 ) -> str:
    """Every GMS variant against its method without GMS: the mean paired difference with
    its 95% interval, the paired t-test's p-value and its Holm-adjusted value, for
    Class-IL and Task-IL (each its own family of tests; ``found``: the comparisons by
    setting, default those among ``cells``)."""
    found = found or {setting: gms_comparisons(cells, setting) for setting in SETTINGS}
    task_il = {(d.label, d.dataset, d.buffer_size): d for d in found["task_il"]}
    lines = ["| GMS variant | dataset | buffer | pairs | Class-IL difference [95% CI] | p | "
             "p (Holm) | d_z | TOST p (Holm) | outcome | Task-IL difference [95% CI] | p | "
             "p (Holm) |", "|---" * 13 + "|"]
    for class_il in sorted(found["class_il"], key=lambda d: (d.dataset, d.buffer_size,
                                                             _order(cells, d.label))):
        pairs = str(class_il.pairs) + (f" ({class_il.units} orders)"
                                       if class_il.units != class_il.pairs else "")
        parts = [class_il.label, class_il.dataset, str(class_il.buffer_size), pairs,
                 *_difference_columns(class_il), *_equivalence_columns(class_il),
                 *_difference_columns(task_il.get((class_il.label, class_il.dataset,
                                                   class_il.buffer_size)))]
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def _order(cells: list[Cell], label: str) -> int:
    return [variant.label for variant in row_order(cells)].index(label)


def _difference_columns(difference: PairedDifference | None) -> list[str]:
    if difference is None:
        return ["", "", ""]
    mark = "*" if difference.significant else ""
    if difference.p is None:
        return [f"{difference.mean:+.2f}", "", ""]
    return [f"{difference.mean:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]",
            _p(difference.p), _p(difference.p_holm) + mark]


def _equivalence_columns(difference: PairedDifference) -> list[str]:
    """d_z, the Holm-adjusted TOST p and the outcome (docs/study/plan.md section 5)."""
    if difference.p is None:
        return ["", "", ""]
    dz = "" if difference.dz is None else f"{difference.dz:+.2f}"
    return [dz, _p(difference.p_equivalent_holm), difference.outcome]


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


def paired_csv(cells: list[Cell], found: dict[str, list[PairedDifference]] | None = None
               ) -> str:
    """One row per (GMS variant, dataset, buffer, setting): the paired comparison."""
    found = found or {setting: gms_comparisons(cells, setting) for setting in SETTINGS}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "base", "dataset", "buffer_size", "setting", "pairs",
                     "mean_difference", "ci95_low", "ci95_high", "p", "p_holm", "significant",
                     "units", "dz", "p_equivalent", "p_equivalent_holm", "outcome"])

    def number(value, digits=".6g"):
        return "" if value is None else f"{value:{digits}}"
    for setting in SETTINGS:
        for d in found[setting]:
            writer.writerow([d.label, d.base, d.dataset, d.buffer_size, setting, d.pairs,
                             f"{d.mean:.4f}", number(d.low, ".4f"), number(d.high, ".4f"),
                             number(d.p), number(d.p_holm), int(d.significant), d.units,
                             number(d.dz, ".4f"), number(d.p_equivalent),
                             number(d.p_equivalent_holm),
                             d.outcome if d.p is not None else ""])
    return buffer.getvalue()


def write_report(results: list[dict], out_dir: str | Path, plots: bool = True,
                 failed: list[dict] = (), tuned: list | None = None,
                 plan: str = "") -> list[Path]:
    """Write report.md, report.csv, paired.csv and (with matplotlib) PNG plots from the
    finished runs' results and the configurations of the ``failed`` (diverged) runs;
    returns the paths.

    The main tables hold the protocol's scenario (natural class order, the benchmark's
    tasks, the test set); other class orders (each, and pooled over orders) and task
    counts have their own section; runs on a validation split only feed the
    hyper-parameter selection table. One Holm family spans every comparison shown.
    ``tuned`` (:func:`replaymask.experiments.tuned.tuned_pairs`): the tuned-against-tuned
    comparisons, shown first, with their own family's correction and the whole report's
    (``tuned.md`` and ``tuned.csv`` too), after ``plan`` (a sentence naming the plan, its
    commit and the search's first run: :func:`.tuned.plan_line`). Beside them:
    ``families.md`` (the study's families, :mod:`.families`) and, where the runs allow,
    ``m_curve.md`` and ``ss_replay.md`` (:mod:`.summaries`)."""
    trials = [r for r in results if is_trial_run(r)]  # a search's, reported in F1
    selections = [r for r in results if is_selection_test_run(r)]  # F1's pairs
    results = [r for r in results if not is_trial_run(r) and not is_selection_test_run(r)]
    cells = group_runs(results, failed)
    protocol = [c for c in cells if not c.scenario]
    validation = [c for c in cells if "validation" in c.scenario]
    scenarios = [c for c in cells if c.scenario and c not in validation]
    scenarios += pooled_over_orders(protocol + scenarios)
    family = protocol + scenarios
    found = {setting: gms_comparisons(family, setting) for setting in SETTINGS}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.md", out_dir / "report.csv", out_dir / "paired.csv"]
    seeds = sorted({len(c.results) for c in protocol})
    text = (f"# replaymask report\n\n{len(results)} finished runs"
            + (f", {len(failed)} diverged" if failed else "")
            + (f" (and {len(trials)} runs of search trials, on the validation split, "
               "reported by what they selected)" if trials else "")
            + (f" (and {len(selections)} test runs of a search's selections, reported in "
               "the tuned-against-tuned table only)" if selections else "")
            + f"; finished runs per cell: {', '.join(map(str, seeds))}. Cells: Class-IL / "
            "Task-IL average accuracy (%) after the last task, mean ± sample std over "
            "the finished runs, and how many diverged.\n\n")
    if tuned is not None:
        from . import tuned as tuning

        table = TUNED_TEXT + plan + tuning.markdown_table(tuned, found["class_il"])
        text += "## Tuned against tuned (F1)\n\n" + table + "\n## The runs\n\n"
        written += [out_dir / "tuned.md", out_dir / "tuned.csv"]
        atomic_write(written[-2], "# Tuned against tuned (F1)\n\n" + table)
        atomic_write(written[-1], tuning.csv_table(tuned))
    text += (markdown_table(protocol) + "\n## Effect of GMS\n\n"
            + gms_effect_table(protocol, tested=found["class_il"])
            + "\n## Paired differences to the same method without GMS\n\n" + PAIRED_TEXT
            + paired_table(family, found))
    if scenarios:
        text += "\n## Other scenarios\n\n" + SCENARIO_TEXT + scenario_tables(
            protocol, scenarios, found["class_il"])
    if validation:
        text += "\n## Hyper-parameter selection on a validation split\n\n" + \
            SELECTION_TEXT + selection_table(validation)
        written.append(out_dir / "selected.yaml")
        atomic_write(written[-1], selected_sweep(validation))
    from .families import markdown as families_markdown
    from .families import study_families

    families = study_families(cells, found["class_il"], "class_il",
                              learning_rate_searches(validation))
    written.append(out_dir / "families.md")
    atomic_write(written[-1], FAMILIES_TEXT + families_markdown(families, found["class_il"]))
    from .summaries import m_curve_markdown, ss_replay_markdown

    for name, summary in (("m_curve.md", m_curve_markdown(cells)),
                          ("ss_replay.md", ss_replay_markdown(cells))):
        if summary:
            written.append(out_dir / name)
            atomic_write(written[-1], summary)
    atomic_write(written[0], text)
    atomic_write(written[1], csv_table(cells + pooled_over_orders(protocol + scenarios)))
    atomic_write(written[2], paired_csv(family, found))
    if plots:
        from . import plots as plotting
        written += plotting.write_all([c for c in protocol if c.results], out_dir)
    return written


def scenario_tables(protocol: list[Cell], scenarios: list[Cell],
                    tested: list[PairedDifference]) -> str:
    """Per dataset: the GMS effect and the accuracies under each other scenario, beside
    the protocol's cells of the same methods and buffer sizes."""
    text = ""
    for dataset in sorted({c.column.dataset for c in scenarios}):
        shown = [c for c in scenarios if c.column.dataset == dataset]
        keys = {(c.variant, c.buffer_size) for c in shown}
        shown += [c for c in protocol
                  if c.dataset == dataset and (c.variant, c.buffer_size) in keys]
        text += (f"### {dataset}\n\n" + gms_effect_table(shown, tested=tested)
                 + "\n" + markdown_table(shown) + "\n")
    return text


def learning_rate_searches(cells: list[Cell], setting: str = "class_il"
                           ) -> list[tuple[Variant, Cell, dict[float, Cell], float]]:
    """The searches among validation ``cells``: (the row without its lr, a cell, the cells
    by learning rate, the selected learning rate: the highest mean ``setting`` among the
    learning rates at which no run diverged), in table order; a search where every
    learning rate had a diverged run selects none (None)."""
    groups: dict[tuple, dict[float, Cell]] = {}
    for cell in cells:
        if cell.results:
            config = cell.results[0]["config"]
            searched = variant_of(config, cell.results[0].get("provenance"), leave_out=("lr",))
            groups.setdefault((searched, cell.dataset, cell.buffer_size), {})[
                config["lr"]] = cell
    rows = row_order([c for members in groups.values() for c in members.values()])
    found = []
    for (searched, _, _), by_lr in sorted(groups.items(), key=lambda item: (
            item[0][1], item[0][2], min(rows.index(c.variant) for c in item[1].values()))):
        means = {lr: statistics.fmean(cell.values(setting)) for lr, cell in by_lr.items()
                 if not cell.failed}
        found.append((searched, next(iter(by_lr.values())), by_lr,
                      max(sorted(means), key=means.get) if means else None))
    return found


def selection_table(cells: list[Cell], setting: str = "class_il") -> str:
    """For each (method and GMS variant, benchmark, buffer) run at several learning rates
    on a validation split: the mean validation accuracy at each, and the one selected
    (the highest mean)."""
    lines = ["| method | benchmark | buffer | validation Class-IL by learning rate "
             "(mean ± std, n) | selected lr |", "|---|---|---|---|---|"]
    for searched, cell, by_lr, best in learning_rate_searches(cells, setting):
        entries = [f"{lr:g}: {_mean_std(by_lr[lr].values(setting))} ({_runs(by_lr[lr])})"
                   for lr in sorted(by_lr)]
        lines.append(f"| {searched.label} | {cell.dataset} | {cell.buffer_size} | "
                     f"{'; '.join(entries)} | "
                     f"{'none' if best is None else f'**{best:g}**'} |")
    return "\n".join(lines) + "\n"


TEST_SEEDS = [0, 1, 2, 3, 4]
SELECTED_KEYS = ("model", "dataset", "buffer_size", "class_order_seed", "n_tasks", "gms",
                 "gms_mask_value", "gms_on_buffer")


def selected_sweep(cells: list[Cell]) -> str:
    """A sweep file that runs every selected learning rate on the test set (seeds
    ``TEST_SEEDS``), with the other settings of its validation runs."""
    grids = []
    for _, _, by_lr, best in learning_rate_searches(cells):
        if best is None:
            continue
        result = by_lr[best].results[0]
        config = result["config"]
        grid = {"seed": list(TEST_SEEDS), **{key: config[key] for key in SELECTED_KEYS
                                       if config.get(key) not in (None, False)}}
        if not config.get("gms"):
            grid.pop("gms_mask_value", None)
        grid |= dict(changed_hyperparameters(config, result.get("provenance")))
        grid["lr"] = best
        grids.append(grid)
    import yaml

    return ("# Written by replaymask report: the learning rates selected on the validation "
            "split,\n# each to be run on the test set. replaymask sweep FILE --db DB\n"
            + yaml.safe_dump({"grids": grids}, sort_keys=False, default_flow_style=None))


SCENARIO_TEXT = (
    "The same comparisons under other scenarios: another class order ('order k': the "
    "classes permuted by --class-order-seed k), all orders pooled (the natural order "
    "too; pairs still match on seed and order), and other task counts (--n-tasks). The "
    "stars belong to the same Holm family as the paired table above.\n\n")
SELECTION_TEXT = (
    "These runs are evaluated on held-out training images (--validation-fraction), never "
    "on the test set. The learning rate with the best mean among those at which no run "
    "diverged is selected, and then run on the test set like any other: selected.yaml, "
    "next to this report, is the sweep file that does it.\n\n")


FAMILIES_TEXT = (
    "# The study's families of comparisons\n\n"
    "Each family is Holm-corrected on its own (p (Holm, family)); beside it, the same "
    "comparison corrected over every comparison of report.md's paired table (p (Holm, "
    "whole report)). Which family a comparison belongs to follows from its cells' data "
    "(replaymask.experiments.families); the tuned-against-tuned family F1 is in tuned.md "
    "when the report was given a search. The rehearsal family is issue 19's, not the "
    "plan's: each method outside the plan's five with GMS (m = -inf) and without, at its "
    "declared arguments (the DER paper's S-MNIST rows for A-GEM, GEM, FDR, iCaRL, GSS, HAL "
    "and MER, buffer 200's row serving buffer 20 and S-FMNIST, untuned there; Mammoth's "
    "defaults for BiC; ER's for LODE), from docs/study/rehearsal.yaml, committed before "
    "its runs.\n\n")
TUNED_TEXT = (
    "Each cell's hyper-parameters were searched on a validation split with the same budget "
    "for both sides (docs/study/plan.md section 2); each side's selection is run on the "
    "test set with the search file's test seeds, and a seed's two runs are a pair. "
    "Difference = GMS minus baseline, Class-IL points; p (Holm, F1): adjusted over these "
    "comparisons (the plan's family F1); p (Holm, whole report): over these and every "
    "comparison below; outcome as in the paired table below (TOST margin +-2 points).\n\n")
PAIRED_TEXT = (
    "Runs with the same seed and class order share initial weights, data order and buffer "
    "draws, so each GMS run is compared with its partner without GMS. Difference = with "
    "GMS minus without, accuracy points, mean over the pairs (a diverged run has no "
    "partner); 95% confidence interval from the t distribution; p: two-sided paired "
    "t-test; p (Holm): adjusted for every comparison in this table (Class-IL and Task-IL "
    "each a family); * = significant at 5% after the adjustment. Runs under several class "
    "orders are compared over the orders' mean differences (the units: one per order), not "
    "over their pairs. d_z: the mean difference over the standard deviation of the "
    "differences. TOST p (Holm): the equivalence test (two one-sided paired t-tests) "
    "against a difference of 2 points or more, adjusted like p. Outcome: better or worse "
    "(the difference test rejects), equivalent (within +-2 points: the TOST rejects) or "
    "inconclusive (neither); docs/study/plan.md section 5.\n\n")
