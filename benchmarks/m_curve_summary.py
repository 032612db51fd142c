"""The m curve in numbers: each finite GMS mask value against hard masking (m = -inf).

    python benchmarks/m_curve_summary.py [--db results/study.db] [--setting class_il]

For every method and buffer size run with several mask values (docs/study/m_curve.yaml with
docs/study/study.yaml): per value of m, the mean accuracy over seeds, and the paired
difference to m = -inf over the seeds both have (same initial weights, data order and
replay draws) with its 95% t-interval and paired t-test; the p-values are Holm-adjusted
over every (cell, m) comparison printed, and a star marks those significant at 5 %
after the adjustment. The comparisons are fixed in advance (every m against -inf), not
chosen after looking at which m did best.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from replaymask.experiments.cells import group_runs
from replaymask.experiments.plots import mask_value_curves
from replaymask.experiments.stats import holm, mean_interval, paired_difference
from replaymask.experiments.store import ResultsStore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/study.db"))
    parser.add_argument("--setting", choices=["class_il", "task_il"], default="class_il")
    args = parser.parse_args()
    store = ResultsStore(args.db, create=False)
    cells = [c for c in group_runs([row["result"] for row in store.runs("done")],
                                   [row["config"] for row in store.runs("failed")])
             if not c.scenario]  # the natural order, 5 tasks, the test set
    plain = {(c.variant, c.dataset, c.buffer_size): c for c in cells if not c.variant.gms}
    rows, tests = [], []
    for dataset in sorted({c.dataset for c in cells}):
        curves = mask_value_curves([c for c in cells if c.dataset == dataset])
        for (method, buffer_size), curve in sorted(curves.items(), key=lambda i: i[0][1]):
            hard = curve.get(-math.inf)
            base = plain.get((method, dataset, buffer_size))
            entries = []
            for m in sorted(curve):
                cell = curve[m]
                mean, _, _ = mean_interval(cell.values(args.setting))
                versus = None if hard is None or m == -math.inf else paired_difference(
                    cell, hard, args.setting)
                if versus is not None and versus.p is not None:
                    tests.append(versus)
                entries.append((m, mean, cell.failed, versus))
            no_gms = None if base is None else mean_interval(base.values(args.setting))[0]
            rows.append((dataset, method.name, buffer_size, no_gms, entries))
    adjusted = dict(zip(map(id, tests), holm([t.p for t in tests]), strict=True))
    print(f"{args.setting}: mean over seeds; under it, the paired difference to m = -inf "
          f"[95% CI]; * = significant after Holm over {len(tests)} comparisons")
    for dataset, method, buffer_size, no_gms, entries in rows:
        print(f"\n{dataset} {method} buffer {buffer_size} (no GMS: "
              f"{'-' if no_gms is None else f'{no_gms:.2f}'})")
        for m, mean, failed, versus in entries:
            text = f"  m={'-inf' if m == -math.inf else f'{m:g}':>5}  {mean:6.2f}"
            if failed:
                text += f"  ({failed} diverged)"
            if versus is not None and versus.low is not None:
                star = "*" if adjusted.get(id(versus), 1.0) < 0.05 else ""
                text += (f"   {versus.mean:+6.2f} [{versus.low:+6.2f}, {versus.high:+6.2f}] "
                         f"p={versus.p:.2g} holm={adjusted.get(id(versus), 1.0):.2g}{star}")
            print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
