"""The mechanism analysis over seeds (``replaymask analyze --seeds``): per loss variant,
the stability instrumentation of :mod:`replaymask.core.analysis` and the final task
confusion, each run's value first, then their mean and 95% interval over the seeds."""

from __future__ import annotations

import statistics

from .stats import mean_interval, summarize_differences, with_holm

# (key, what it is): the quantities summarised, each a run's mean over tasks 2.. (the
# steps where old classes exist), or a share of the final task confusion
QUANTITIES = (
    ("class_il", "Class-IL (%)"),
    ("grad_old", "gradient into old logits"),
    ("grad_current", "gradient into current logits"),
    ("old_class_mass", "softmax mass on old classes"),
    ("old_logit_drift", "old-logit drift"),
    ("into_later_task", "test samples taken for a later task's (%)"),
    ("into_earlier_task", "test samples taken for an earlier task's (%)"),
    ("test_into_later", "over training: seen-task test samples taken for a later task's (%)"),
    ("test_into_earlier",
     "over training: seen-task test samples taken for an earlier task's (%)"),
)


def run_summary(class_il: float, records: list[dict], confusion: list[list[float]]) -> dict:
    """One run's quantities: the instrumentation averaged over the steps of tasks 2..
    (task 1 has no old classes), and from the task confusion after the last task the
    percent of all test samples predicted into a later or an earlier task than their own
    (every task has the same number of test samples up to a few)."""
    later = [r for r in records if r["task"] > 0]

    def mean(key):
        values = [r[key] for r in later if r.get(key) is not None]
        return statistics.fmean(values) if values else None
    n_tasks = len(confusion)
    return {
        "class_il": class_il,
        **{key: mean(key) for key in ("grad_old", "grad_current", "old_class_mass",
                                       "old_logit_drift", "test_into_later",
                                       "test_into_earlier")},
        "into_later_task": statistics.fmean(
            sum(row[j] for j in range(i + 1, n_tasks)) for i, row in enumerate(confusion)),
        "into_earlier_task": statistics.fmean(
            sum(row[j] for j in range(i)) for i, row in enumerate(confusion)),
    }


def over_seeds(summaries: list[dict]) -> dict[str, tuple[float, float | None, float | None]]:
    """Per quantity: the mean over the runs and its 95% interval (None with one run)."""
    return {key: mean_interval([s[key] for s in summaries])
            for key, _ in QUANTITIES if all(s.get(key) is not None for s in summaries)}


def markdown(variants: dict[str, list[dict]], title: str) -> str:
    """A table: one row per variant, one column per quantity, mean [95% CI] over seeds."""
    lines = [f"# {title}", "", "Each value: the mean over the seeds of each run's value, "
             "with its 95% interval (t distribution). Instrumentation: mean over the "
             "measured steps of tasks 2 and later (the 'over training' shares: of test "
             "samples of the tasks seen so far, over the seen classes); task confusion: "
             "after the last task, every class visible.", "",
             "| variant | seeds | " + " | ".join(label for _, label in QUANTITIES) + " |",
             "|---" * (len(QUANTITIES) + 2) + "|"]
    for name, summaries in variants.items():
        found = over_seeds(summaries)
        cells = [_interval(found.get(key)) for key, _ in QUANTITIES]
        lines.append(f"| {name} | {len(summaries)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval(value, digits: int | None = None) -> str:
    """``mean [low, high]`` of a (mean, low, high), with 2 decimals from 1 up and 4 below
    (or ``digits``); '' for None."""
    if value is None:
        return ""
    mean, low, high = value
    digits = digits if digits is not None else 2 if abs(mean) >= 1 else 4
    if low is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# The plan's ablations (docs/study/plan.md section 7), as data: (the ablation's name, the
# method it changes, the direction of its earlier-task errors under GMS that the clause
# "only a replay term across tasks prevents the new errors" predicts, what it is). The
# names are those of docs/study/mechanism.sh's output folders, <name>-<dataset>-buf<N>.
ABLATIONS = (
    ("der-cross-task-replay", "der", "lower",
     "A1: DER plus a cross-task replay cross-entropy (DER++'s beta term, beta 0.5, at "
     "DER's arguments)"),
    ("er-earlier-replay", "er", "higher",
     "A2: ER with its replay cross-entropy over the earlier tasks' classes only"),
)
# the variants instrumented beside them, in the order they are shown
INSTRUMENTED = ("er", "er-earlier-replay", "der", "der-cross-task-replay", "derpp", "er_ace")
ERRORS = ("into_earlier_task", "into_later_task", "test_into_earlier", "test_into_later",
          "class_il")


def read_analyses(folder) -> dict[tuple[str, str, int], dict[str, dict[int, dict]]]:
    """Every ``<name>-<dataset>-buf<N>/analysis.json`` under ``folder`` (``replaymask
    analyze`` output): (name, dataset, buffer) -> {"plain" or "gms": {seed: run summary}},
    "gms" being hard masking (m = -inf); dataset and buffer come from the runs' configs."""
    import json
    from pathlib import Path

    found = {}
    for path in sorted(Path(folder).glob("*/analysis.json")):
        runs = json.loads(path.read_text())["runs"]
        by_side: dict[str, dict[int, dict]] = {}
        config = None
        for by_seed in runs.values():
            for seed, run in by_seed.items():
                config = run["config"]
                if config["gms"] and str(config["gms_mask_value"]) != "-inf":
                    continue  # a finite m: not part of the plan's tests
                by_side.setdefault("gms" if config["gms"] else "plain", {})[int(seed)] = \
                    run["summary"]
        if config is None:
            continue
        suffix = f"-{config['dataset']}-buf{config['buffer_size']}"
        if not path.parent.name.endswith(suffix):
            raise ValueError(f"{path}: its folder should end in {suffix!r}")
        found[(path.parent.name[:-len(suffix)], config["dataset"], config["buffer_size"])] = \
            by_side
    return found


def _paired(label: str, base: str, dataset: str, buffer_size: int, quantity: str,
            variant: dict[int, dict], reference: dict[int, dict]):
    """``variant - reference`` in ``quantity``, paired by seed (None without 2 pairs)."""
    differences = [variant[seed][quantity] - reference[seed][quantity]
                   for seed in sorted(set(variant) & set(reference))
                   if variant[seed].get(quantity) is not None
                   and reference[seed].get(quantity) is not None]
    if len(differences) < 2:
        return None
    return summarize_differences(label, base, dataset, buffer_size, quantity,
                                 {None: differences})


def ablation_tests(analyses) -> list:
    """The plan's family F3: per ablation, dataset and buffer, the ablation's earlier-task
    errors (percent of all test samples, after the last task) minus its method's, both
    under GMS (m = -inf), paired by seed; Holm-adjusted over the family."""
    found = []
    for name, method, _, _ in ABLATIONS:
        for (variant, dataset, buffer_size), sides in sorted(analyses.items()):
            reference = analyses.get((method, dataset, buffer_size))
            if variant != name or reference is None:
                continue
            difference = _paired(name, method, dataset, buffer_size, "into_earlier_task",
                                 sides.get("gms", {}), reference.get("gms", {}))
            if difference is not None:
                found.append(difference)
    return with_holm(found)


def gms_changes(analyses) -> dict[tuple[str, str, int], dict]:
    """Per instrumented variant, dataset and buffer: what GMS (m = -inf) changes, paired by
    seed (GMS minus plain softmax) in each of ``ERRORS``, and the ratio of the later-task
    errors, GMS over plain, as each seed's ratio with their mean and 95% interval."""
    changes = {}
    for (name, dataset, buffer_size), sides in analyses.items():
        plain, gms = sides.get("plain", {}), sides.get("gms", {})
        found = {quantity: _paired(name, name, dataset, buffer_size, quantity, gms, plain)
                 for quantity in ERRORS}
        ratios = [gms[seed]["into_later_task"] / plain[seed]["into_later_task"]
                  for seed in sorted(set(gms) & set(plain))
                  if plain[seed]["into_later_task"]]
        found["later_ratio"] = mean_interval(ratios) if ratios else None
        changes[(name, dataset, buffer_size)] = found
    return changes


def ablation_markdown(analyses) -> str:
    """mechanism.md: family F3 (the plan's test of the causal clause), then what GMS changes
    in each instrumented variant."""
    from .tuned import _interval as _difference
    from .tuned import _p

    tests = ablation_tests(analyses)
    lines = [
        "# The mechanism, tested (docs/study/plan.md section 7, family F3)", "",
        "Instrumented runs from docs/study/mechanism.sh: seeds 0-4, the DER paper's "
        "arguments, natural class order, 1 epoch, with and without GMS (m = -inf). "
        "'Earlier-task errors': the percent of all test samples that the final network "
        "assigns to a class of an earlier task than their own; 'later-task errors' the "
        "same for a later task. 'Over training': the same shares among the test samples of "
        "the tasks seen so far, measured every 100 steps and averaged over tasks 2 and "
        "later (curves in each folder's analysis.png).", "",
        "## F3: does a replay term across tasks decide the earlier-task errors under GMS?",
        "",
        "The clause holds only if A1 (a cross-task replay term added to DER) lowers DER's "
        "earlier-task errors and A2 (ER's replay term kept within the earlier tasks) raises "
        "ER's. Each row: the ablation's earlier-task errors minus its method's, both with "
        "GMS, paired by seed; Holm over the family's comparisons.", "",
        "| ablation | against | dataset | buffer | predicted | seeds | difference "
        "(points) [95% CI] | p | p (Holm, F3) | d_z | as predicted |",
        "|---" * 11 + "|"]
    what = {name: (method, direction, text) for name, method, direction, text in ABLATIONS}
    for d in tests:
        method, direction, _ = what[d.label]
        agrees = d.significant and ((d.mean < 0) == (direction == "lower"))
        verdict = "yes" if agrees else ("no: the opposite" if d.significant else "not shown")
        lines.append("| " + " | ".join([
            d.label, method, d.dataset, str(d.buffer_size), direction, str(d.pairs),
            _difference(d), _p(d.p), _p(d.p_holm),
            "" if d.dz is None else f"{d.dz:+.2f}", verdict]) + " |")
    lines += ["", *(f"- {name}: {text}" for name, (_, _, text) in what.items()), "",
              "## What GMS changes in each instrumented variant", "",
              "GMS (m = -inf) minus plain softmax, paired by seed, mean [95% CI]; the "
              "ratio is each seed's later-task errors with GMS over those without, mean "
              "[95% CI] over the seeds (not corrected for multiplicity: descriptive).", "",
              "| variant | dataset | buffer | Class-IL | earlier-task errors | later-task "
              "errors | later-task errors, ratio | earlier, over training | later, over "
              "training |", "|---" * 9 + "|"]
    changes = gms_changes(analyses)
    order = {name: i for i, name in enumerate(INSTRUMENTED)}
    for (name, dataset, buffer_size), found in sorted(
            changes.items(), key=lambda item: (item[0][1], item[0][2],
                                               order.get(item[0][0], 99), item[0][0])):
        cells = [_difference(found[q]) if found[q] else "" for q in
                 ("class_il", "into_earlier_task", "into_later_task")]
        cells.append(_interval(found["later_ratio"], digits=2))
        cells += [_difference(found[q]) if found[q] else "" for q in
                  ("test_into_earlier", "test_into_later")]
        lines.append(f"| {name} | {dataset} | {buffer_size} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

