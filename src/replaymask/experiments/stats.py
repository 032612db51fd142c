"""Paired comparisons of table cells: each GMS variant against its method's plain softmax.

Runs with the same seed and class order share their initial weights, data order and
buffer draws, so the right measure of what GMS changes is the difference *within* such
a pair, not the difference of two means. For every (variant, dataset, buffer size) this
module matches the variant's runs to its base method's runs on (seed, class order) and
reports, over the matched pairs:

* the mean difference (variant minus base, accuracy points) and its 95% confidence
  interval, ``mean +- t(0.975, n - 1) * sd / sqrt(n)``;
* the two-sided p-value of the paired t-test (as ``scipy.stats.ttest_rel`` computes it);
* the p-value adjusted for all comparisons of the table by Holm's step-down method,
  which keeps the chance of any false "significant" in the whole table under 5%.

A pair needs both runs finished: a diverged run has no accuracy, so its seed drops out
of the comparison (the report shows how many diverged).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .cells import Cell, split_label

LEVEL = 0.95  # confidence level of the intervals
ALPHA = 0.05  # family-wise error rate of the Holm-adjusted tests


@dataclass(frozen=True)
class PairedDifference:
    """One variant cell against its base cell, over runs matched on seed and class order."""

    label: str
    base: str
    dataset: str
    buffer_size: int
    setting: str
    pairs: int
    mean: float
    low: float | None  # the confidence interval; None with fewer than 2 pairs
    high: float | None
    p: float | None  # paired t-test, two-sided; None with fewer than 2 pairs
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        """The Holm-adjusted test rejects "no difference" at the 5% level."""
        return self.p_holm is not None and self.p_holm < ALPHA


def pair_key(result: dict) -> tuple:
    """What makes two runs of different methods a pair: seed and class order."""
    config = result["config"]
    return config["seed"], config.get("class_order_seed")


def paired_difference(variant: Cell, base: Cell, setting: str) -> PairedDifference | None:
    """The difference ``variant - base`` in ``setting`` over the matched runs, or None if
    no run of one cell has a partner in the other."""
    base_values = {pair_key(r): r["metrics"][setting]["average_accuracy"] for r in base.results}
    differences = [r["metrics"][setting]["average_accuracy"] - base_values[pair_key(r)]
                   for r in variant.results if pair_key(r) in base_values]
    if not differences:
        return None
    mean, low, high = mean_interval(differences)
    p = None
    if len(differences) > 1:
        from scipy.special import stdtr  # Student's t CDF

        standard_error = statistics.stdev(differences) / math.sqrt(len(differences))
        if standard_error == 0:  # every pair differs by the same amount: t is 0 or infinite
            p = 1.0 if mean == 0 else 0.0
        else:  # the paired t-test, two-sided
            p = float(2 * stdtr(len(differences) - 1, -abs(mean / standard_error)))
    return PairedDifference(variant.label, base.label, variant.dataset, variant.buffer_size,
                            setting, len(differences), mean, low, high, p)


def mean_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """The mean and its 95% confidence interval from the t distribution (no interval
    for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    # imported here: the report's other tables do not need SciPy; stdtrit is Student's t
    # quantile function (scipy.stats.t.ppf, without importing scipy.stats)
    from scipy.special import stdtrit

    half = float(stdtrit(len(values) - 1, 0.5 + LEVEL / 2)) * statistics.stdev(values) / \
        math.sqrt(len(values))
    return mean, mean - half, mean + half


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p-values is multiplied by
    (m - k + 1), made non-decreasing in that order, and capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def gms_comparisons(cells: list[Cell], setting: str) -> list[PairedDifference]:
    """Every GMS variant cell against the same method without GMS (same dataset and
    buffer size), Holm-adjusted over all of them."""
    by_key = {(c.label, c.dataset, c.buffer_size): c for c in cells}
    found = []
    for cell in cells:
        if " + GMS" not in cell.label:
            continue
        base = by_key.get((split_label(cell.label)[0], cell.dataset, cell.buffer_size))
        if base is not None and (difference := paired_difference(cell, base, setting)):
            found.append(difference)
    tested = [d for d in found if d.p is not None]
    adjusted = dict(zip(map(id, tested), holm([d.p for d in tested]), strict=True))
    return [PairedDifference(**{**d.__dict__, "p_holm": adjusted.get(id(d))}) for d in found]
