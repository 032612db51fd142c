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
  which keeps the chance of any false "significant" in the whole table under 5%;
* the effect size d_z (the mean difference over the standard deviation of the
  differences);
* an equivalence test (TOST: two one-sided paired t-tests) against the margin of
  ``EQUIVALENCE_MARGIN`` accuracy points, Holm-adjusted like the difference test, and the
  outcome that follows: better, worse, equivalent within the margin, or inconclusive
  (docs/study/plan.md section 5).

Runs under several class orders are compared at the level of the order: each order's
mean paired difference is one observation, and the interval and tests are over the
orders (k - 1 degrees of freedom), not over the pairs as if they were independent.

A pair needs both runs finished: a diverged run has no accuracy, so its seed drops out
of the comparison (the report shows how many diverged).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .cells import Cell

LEVEL = 0.95  # confidence level of the intervals
ALPHA = 0.05  # family-wise error rate of the Holm-adjusted tests
EQUIVALENCE_MARGIN = 2.0  # accuracy points (docs/study/plan.md section 5)


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
    units: int = 0  # what the interval and tests are over: pairs, or class orders
    dz: float | None = None  # mean / sd of the differences (None: no spread to divide by)
    p_equivalent: float | None = None  # TOST against +-EQUIVALENCE_MARGIN
    p_equivalent_holm: float | None = None
    # what was compared, as data: the variant cell's row and column (None for comparisons
    # made outside a table)
    variant: object = field(default=None, compare=False, repr=False)
    column: object = field(default=None, compare=False, repr=False)

    @property
    def significant(self) -> bool:
        """The Holm-adjusted test rejects "no difference" at the 5% level."""
        return self.p_holm is not None and self.p_holm < ALPHA

    @property
    def equivalent(self) -> bool:
        """The Holm-adjusted TOST rejects "a difference of the margin or more"."""
        return self.p_equivalent_holm is not None and self.p_equivalent_holm < ALPHA

    @property
    def outcome(self) -> str:
        """"better", "worse", "equivalent" (within the margin) or "inconclusive"."""
        if self.significant:
            return "better" if self.mean > 0 else "worse"
        return "equivalent" if self.equivalent else "inconclusive"


def pair_key(result: dict) -> tuple:
    """What makes two runs of different methods a pair: seed and class order."""
    config = result["config"]
    return config["seed"], config.get("class_order_seed")


def paired_difference(variant: Cell, base: Cell, setting: str) -> PairedDifference | None:
    """The difference ``variant - base`` in ``setting`` over the matched runs, or None if
    no run of one cell has a partner in the other."""
    base_values = {pair_key(r): r["metrics"][setting]["average_accuracy"] for r in base.results}
    by_order: dict = {}
    for r in variant.results:
        if pair_key(r) in base_values:
            by_order.setdefault(pair_key(r)[1], []).append(
                r["metrics"][setting]["average_accuracy"] - base_values[pair_key(r)])
    if not by_order:
        return None
    found = summarize_differences(variant.label, base.label, variant.dataset,
                                  variant.buffer_size, setting, by_order)
    return PairedDifference(**{**found.__dict__, "variant": variant.variant,
                               "column": variant.column})


def summarize_differences(label: str, base: str, dataset: str, buffer_size: int,
                          setting: str, by_order: dict) -> PairedDifference:
    """A comparison from its paired differences, grouped by class order: with one order
    the pairs are the units; with several, each order's mean difference is one."""
    pairs = sum(len(found) for found in by_order.values())
    units = next(iter(by_order.values())) if len(by_order) == 1 \
        else [statistics.fmean(found) for found in by_order.values()]
    mean, low, high = mean_interval(units)
    p = dz = p_equivalent = None
    if len(units) > 1:
        spread = statistics.stdev(units)
        dz = mean / spread if spread else None
        p, p_equivalent = paired_tests(units)
    return PairedDifference(label, base, dataset, buffer_size, setting, pairs, mean, low,
                            high, p, units=len(units), dz=dz, p_equivalent=p_equivalent)


def paired_tests(differences: list[float], margin: float = EQUIVALENCE_MARGIN
                 ) -> tuple[float, float]:
    """(p of the two-sided paired t-test of "no difference", p of the TOST of "the
    difference is at least ``margin`` in size") over 2 or more differences."""
    from scipy.special import stdtr  # Student's t CDF

    n, mean = len(differences), statistics.fmean(differences)
    standard_error = statistics.stdev(differences) / math.sqrt(n)
    if standard_error == 0:  # every pair differs by the same amount: t is 0 or infinite
        return (1.0 if mean == 0 else 0.0), (0.0 if abs(mean) < margin else 1.0)
    p = float(2 * stdtr(n - 1, -abs(mean / standard_error)))
    below = float(stdtr(n - 1, -(mean + margin) / standard_error))  # H0: mean <= -margin
    above = float(stdtr(n - 1, (mean - margin) / standard_error))  # H0: mean >= +margin
    return p, max(below, above)


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
    by_key = {(c.variant, c.dataset, c.buffer_size): c for c in cells}
    found = []
    for cell in cells:
        if not cell.variant.gms:
            continue
        base = by_key.get((cell.variant.plain, cell.dataset, cell.buffer_size))
        if base is not None and (difference := paired_difference(cell, base, setting)):
            found.append(difference)
    return with_holm(found)


def with_holm(found: list[PairedDifference]) -> list[PairedDifference]:
    """The comparisons with their difference and equivalence tests each Holm-adjusted
    over ``found`` (one family)."""
    tested = [d for d in found if d.p is not None]
    adjusted = dict(zip(map(id, tested), holm([d.p for d in tested]), strict=True))
    equivalent = dict(zip(map(id, tested), holm([d.p_equivalent for d in tested]), strict=True))
    return [PairedDifference(**{**d.__dict__, "p_holm": adjusted.get(id(d)),
                                "p_equivalent_holm": equivalent.get(id(d))}) for d in found]
