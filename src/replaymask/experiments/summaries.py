"""Two summaries of the study that `replaymask report` writes beside its tables, from the
same cells (rows and columns as data) and the same paired statistics:

* the m curve in numbers (``m_curve.md``): each finite GMS mask value against hard masking
  (m = -inf), per method and buffer size where four or more values of m were run;
* separated-softmax replay against ER and ER + GMS (``ss_replay.md``), on the study grid's
  cells: the best arguments, the natural class order, the protocol's tasks, the test set.
"""

from __future__ import annotations

import math
import statistics

from .cells import Cell, Variant
from .stats import EQUIVALENCE_MARGIN, mean_interval, paired_difference, with_holm

SS_VARIANTS = {  # column: the row it reads
    "ER": Variant("er"),
    "ER + GMS(-inf)": Variant("er", gms=True, mask_value="-inf"),
    "SS": Variant("ss_replay"),
    "SS + GMS(0)": Variant("ss_replay", gms=True, mask_value="0.0"),
    "SS + GMS(5)": Variant("ss_replay", gms=True, mask_value="5.0"),
}
SS_PAIRS = [("SS", "ER"), ("SS", "ER + GMS(-inf)"), ("SS + GMS(0)", "SS")]


def m_curve_markdown(cells: list[Cell], setting: str = "class_il") -> str:
    """Per dataset, method and buffer size with an m curve: each m's mean over seeds and,
    below hard masking, the paired difference to it with its 95% interval, its p and its
    p Holm-adjusted over every such comparison, the equivalence test (TOST at the plan's
    margin, Holm-adjusted the same way) and the outcome; '' without any m curve."""
    from .plots import mask_value_curves

    protocol = [c for c in cells if c.column.protocol]
    plain = {(c.variant, c.dataset, c.buffer_size): c for c in protocol if not c.variant.gms}
    rows, tests = [], []
    for dataset in sorted({c.dataset for c in protocol}):
        curves = mask_value_curves([c for c in protocol if c.dataset == dataset])
        for (method, buffer_size), curve in sorted(curves.items(), key=lambda i: i[0][1]):
            hard = curve.get(-math.inf)
            base = plain.get((method, dataset, buffer_size))
            entries = []
            for m in sorted(curve):
                mean, _, _ = mean_interval(curve[m].values(setting))
                versus = None if hard is None or m == -math.inf else paired_difference(
                    curve[m], hard, setting)
                if versus is not None and versus.p is not None:
                    tests.append(versus)
                entries.append((m, mean, curve[m].failed, versus))
            no_gms = None if base is None else mean_interval(base.values(setting))[0]
            rows.append((dataset, method.name, buffer_size, no_gms, entries))
    if not rows:
        return ""
    tested = {id(t): found for t, found in zip(tests, with_holm(tests), strict=True)}
    lines = ["# The m curve in numbers", "",
             f"{setting.replace('_', '-')}: the mean over seeds of each mask value m; beside "
             "it, the paired difference to m = -inf [95% CI], its p and its p Holm-adjusted "
             f"over the {len(tests)} such comparisons (* = significant at 5%), the "
             f"equivalence test's p (TOST, margin +-{EQUIVALENCE_MARGIN:g} points) "
             "Holm-adjusted over the same comparisons, and the outcome: better or worse "
             "than hard masking, equivalent to it within the margin, or inconclusive.", ""]
    for dataset, method, buffer_size, no_gms, entries in rows:
        lines += [f"## {dataset} {method} buffer {buffer_size} (no GMS: "
                  f"{'-' if no_gms is None else f'{no_gms:.2f}'})", "",
                  "| m | mean | vs m = -inf [95% CI] | p | p (Holm) | TOST p (Holm) | outcome |",
                  "|---" * 7 + "|"]
        for m, mean, failed, versus in entries:
            shown = "-inf" if m == -math.inf else f"{m:g}"
            text = f"| {shown} | {mean:.2f}" + (f" ({failed} diverged)" if failed else "")
            if versus is not None and versus.low is not None:
                found = tested[id(versus)]
                text += (f" | {versus.mean:+.2f} [{versus.low:+.2f}, {versus.high:+.2f}] | "
                         f"{versus.p:.2g} | {found.p_holm:.2g}{'*' if found.significant else ''}"
                         f" | {found.p_equivalent_holm:.2g} | {found.outcome} |")
            else:
                text += " | | | | | |"
            lines.append(text)
        lines.append("")
    return "\n".join(lines)


def ss_replay_markdown(cells: list[Cell], setting: str = "class_il") -> str:
    """Per dataset and buffer size of the study grid: each variant's mean over seeds with
    the runs finished out of those started, and the paired differences of ``SS_PAIRS``
    with their 95% intervals; '' without separated-softmax runs."""
    grid = {(c.variant, c.dataset, c.buffer_size): c for c in cells if c.column.protocol}
    columns = sorted({(dataset, buffer_size) for variant, dataset, buffer_size in grid
                      if variant.method == "ss_replay"})
    if not columns:
        return ""
    names = list(SS_VARIANTS)
    lines = ["# Separated-softmax replay against ER and ER + GMS", "",
             f"{setting.replace('_', '-')}: the mean over seeds (runs finished / started), "
             "and paired differences over the seeds both variants have, with their 95% "
             "t-intervals. Best arguments, natural class order, 5 tasks, test set.", "",
             "| dataset | buffer | " + " | ".join(names) + " | "
             + " | ".join(f"{a} - {b}" for a, b in SS_PAIRS) + " |",
             "|---" * (2 + len(names) + len(SS_PAIRS)) + "|"]
    for dataset, buffer_size in columns:
        found = {name: grid.get((variant, dataset, buffer_size))
                 for name, variant in SS_VARIANTS.items()}
        parts = []
        for name in names:
            cell = found[name]
            if cell is None or not cell.results:
                parts.append(f"- (0/{cell.attempted if cell else 0})")
            else:
                parts.append(f"{statistics.fmean(cell.values(setting)):.1f} "
                             f"({len(cell.results)}/{cell.attempted})")
        for a, b in SS_PAIRS:
            difference = found[a] and found[b] and paired_difference(found[a], found[b],
                                                                     setting)
            parts.append("n/a" if not difference or difference.low is None else
                         f"{difference.mean:+.1f} [{difference.low:+.1f}, {difference.high:+.1f}]")
        lines.append(f"| {dataset} | {buffer_size} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"
