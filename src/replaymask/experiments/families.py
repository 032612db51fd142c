"""The study's families of comparisons, each Holm-corrected on its own, beside the whole
report's correction (docs/study/plan.md section 4).

Every comparison of the report's paired table (a GMS cell against the same method without
GMS) belongs to at most one family, by what its cells are, read from their data (the row's
:class:`~replaymask.experiments.cells.Variant`, the column's
:class:`~replaymask.experiments.cells.Scenario`), never from a label:

* **primary** (the plan's F2): hard-masking GMS (m = -inf, buffer rows plain) against no
  GMS, at the best arguments, in the protocol's scenario, at every buffer, for the plan's
  five methods (SGD, ER, DER, DER++, ER-ACE);
* **rehearsal**: the same comparison for every other method (issue 19's rehearsal family,
  `docs/study/rehearsal.yaml`, committed before its runs; not in the plan);
* **orders**: the same, over the class orders (compared at the level of the order);
* **tasks**: any GMS variant at the best arguments, under another task count;
* **fixed arguments**: arguments other than the best at buffer 500, in the protocol's
  scenario (one fixed set of arguments for every buffer);
* **options**: the post-step logits of DER and DER++, and ER-ACE at ER's learning rate;
* **learning rate tuned**: each side at the learning rate it selected on the validation
  split (`replaymask report`'s selection), on the test set;
* **buffer masked vs plain GMS**: ``--gms-on-buffer`` against GMS on the stream rows only
  (a comparison of two GMS variants, not against no GMS).

The tuned-against-tuned comparisons of a search are the plan's family F1
(:mod:`.tuned`).
"""

from __future__ import annotations

from .cells import Cell, Variant
from .stats import PairedDifference, paired_difference, with_holm

FAMILIES = ("primary", "rehearsal", "orders", "tasks", "fixed arguments", "options",
            "learning rate tuned", "buffer masked vs plain GMS")
PLAN_METHODS = ("sgd", "er", "der", "derpp", "er_ace")  # docs/study/plan.md, section 2


def family_of(difference: PairedDifference) -> str | None:
    """The family of one of the paired table's comparisons (None: in none)."""
    variant, column = difference.variant, difference.column
    hard = variant.mask_value == "-inf" and not variant.on_buffer
    if hard and not variant.arguments and column.protocol:
        return "primary" if variant.method in PLAN_METHODS else "rehearsal"
    if hard and not variant.arguments and column.pooled:
        return "orders"
    if column.n_tasks is not None and not variant.arguments:
        return "tasks"
    if variant.on_buffer:
        return None  # against plain GMS: its own family, below
    if variant.arguments and difference.buffer_size == 500 and column.protocol:
        return "fixed arguments"
    arguments = dict(variant.arguments)
    if arguments.get("der_logits") == "post-step" or (
            variant.method == "er_ace" and arguments.get("lr") == 0.01):
        return "options"
    return None


def study_families(cells: list[Cell], comparisons: list[PairedDifference],
                   setting: str = "class_il",
                   searches: list | None = None) -> dict[str, list[PairedDifference]]:
    """Each family's comparisons, Holm-adjusted within the family. ``comparisons``: the
    paired table's (they carry the whole report's adjustment); ``searches``: the report's
    learning-rate searches (:func:`~replaymask.experiments.report.learning_rate_searches`)
    of the validation runs among ``cells``."""
    members: dict[str, list[PairedDifference]] = {name: [] for name in FAMILIES}
    for difference in comparisons:
        if difference.p is not None and (name := family_of(difference)) is not None:
            members[name].append(difference)
    members["learning rate tuned"] = _tuned_learning_rates(cells, setting, searches or [])
    members["buffer masked vs plain GMS"] = _buffer_masking(cells, setting)
    return {name: with_holm(found) for name, found in members.items() if found}


def _tuned_learning_rates(cells: list[Cell], setting: str, searches) -> list:
    """GMS at the learning rate it selected against its method without GMS at the one it
    selected, on the test set, paired on seed."""
    from .cells import variant_of

    test = {(c.variant, c.dataset, c.buffer_size): c for c in cells if c.column.protocol}
    chosen = {}
    for searched, cell, by_lr, best in searches:
        if best is None:
            continue
        result = by_lr[best].results[0]
        config = {**result["config"], "validation_fraction": 0.0}
        chosen[(searched.plain, cell.column.dataset, cell.buffer_size, searched.gms_part)] = (
            best, test.get((variant_of(config, result.get("provenance")),
                            cell.column.dataset, cell.buffer_size)))
    found = []
    for (method, dataset, buffer_size, gms_part), (lr, masked) in sorted(
            chosen.items(), key=lambda item: (item[0][0].label, *item[0][1:])):
        if not gms_part:
            continue
        base_lr, base = chosen.get((method, dataset, buffer_size, ""), (None, None))
        difference = masked and base and paired_difference(masked, base, setting)
        if difference and difference.p is not None:
            found.append(_relabelled(difference, f"{method.label} + GMS{gms_part} at lr "
                                                 f"{lr:g} vs {method.label} at lr {base_lr:g}"))
    return found


def _buffer_masking(cells: list[Cell], setting: str) -> list[PairedDifference]:
    by_key = {(c.variant, c.dataset, c.buffer_size): c for c in cells}
    found = []
    for cell in cells:
        variant = cell.variant
        if not variant.on_buffer:
            continue
        plain = by_key.get((Variant(variant.method, variant.arguments, True, variant.mask_value),
                            cell.dataset, cell.buffer_size))
        difference = plain and paired_difference(cell, plain, setting)
        if difference and difference.p is not None:
            found.append(_relabelled(difference, f"{cell.label} vs plain GMS"))
    return found


def _relabelled(difference: PairedDifference, label: str) -> PairedDifference:
    return PairedDifference(**{**difference.__dict__, "label": label})


def markdown(families: dict[str, list[PairedDifference]],
             whole: list[PairedDifference], setting: str = "class_il") -> str:
    """One table per family: each comparison with its p adjusted within the family and
    over the whole report (``whole``: the paired table's comparisons, adjusted), its TOST
    and outcome within the family."""
    by_key = {(d.label, d.dataset, d.buffer_size): d for d in whole}
    lines = []
    for name, found in families.items():
        lines += [f"## {name}: {len(found)} comparisons, {setting.replace('_', '-')}, "
                  "Holm within the family", "",
                  "| variant | dataset | buffer | pairs | difference [95% CI] | p | "
                  "p (Holm, family) | p (Holm, whole report) | d_z | TOST p (Holm, family) | "
                  "outcome |", "|---" * 11 + "|"]
        for d in found:
            table = by_key.get((d.label, d.dataset, d.buffer_size))
            whole_p = "" if table is None or table.p_holm is None else _p(table.p_holm)
            lines.append(
                f"| {d.label} | {d.dataset} | {d.buffer_size} | {d.pairs}"
                + (f" ({d.units} orders)" if d.units != d.pairs else "")
                + f" | {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] | {_p(d.p)} | "
                f"{_p(d.p_holm)}{'*' if d.significant else ''} | {whole_p} | "
                + ("" if d.dz is None else f"{d.dz:+.2f}")
                + f" | {_p(d.p_equivalent_holm)} | {d.outcome} |")
        lines.append("")
    return "\n".join(lines)


def _p(value) -> str:
    if value is None:
        return ""
    return f"{value:.2g}"
