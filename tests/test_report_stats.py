"""The report's statistics: paired differences, their intervals and tests, Holm's
correction, and the count of diverged runs."""

import csv
import math
import statistics

import pytest

from replaymask import cli
from replaymask.experiments.cells import group_runs
from replaymask.experiments.stats import gms_comparisons, holm, paired_difference
from replaymask.experiments.store import ResultsStore

T_975_2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom


def result(model, seed, class_il, task_il=90.0, gms=False, buffer_size=200, order=None):
    config = {"model": model, "dataset": "seq-mnist", "buffer_size": buffer_size,
              "seed": seed, "class_order_seed": order, "gms": gms}
    if gms:
        config["gms_mask_value"] = "-inf"
    return {"config": config, "wall_time_s": 1.0,
            "metrics": {"class_il": {"average_accuracy": class_il},
                        "task_il": {"average_accuracy": task_il}},
            "accuracy_matrix": {"class_il": [[class_il], [class_il, class_il]],
                                "task_il": [[task_il], [task_il, task_il]]}}


def cells_of(base_values, gms_values, base_seeds=None, gms_seeds=None):
    base_seeds = base_seeds or range(len(base_values))
    gms_seeds = gms_seeds or range(len(gms_values))
    runs = [result("er", s, v) for s, v in zip(base_seeds, base_values, strict=True)]
    runs += [result("er", s, v, gms=True) for s, v in zip(gms_seeds, gms_values, strict=True)]
    cells = {c.label: c for c in group_runs(runs)}
    return cells["ER + GMS (m=-inf)"], cells["ER"]


def test_the_difference_is_paired_by_seed_with_a_t_interval_and_a_paired_test():
    # differences 1, 2, 3 within the pairs, although the cells' means differ by 2 and
    # their spread (10 points between seeds) would hide it in an unpaired comparison
    variant, base = cells_of([50.0, 60.0, 70.0], [51.0, 62.0, 73.0])
    found = paired_difference(variant, base, "class_il")
    assert found.pairs == 3 and found.mean == pytest.approx(2.0)
    half = T_975_2 * 1.0 / math.sqrt(3)
    assert (found.low, found.high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    t = 2.0 / (1.0 / math.sqrt(3))
    assert t == pytest.approx(3.4641016)
    assert found.p == pytest.approx(0.0741799, abs=1e-6)  # two-sided, 2 degrees of freedom


def test_only_runs_with_a_partner_of_the_same_seed_and_class_order_are_compared():
    variant, base = cells_of([50.0, 60.0, 70.0], [61.0, 72.0, 99.0],
                             base_seeds=[0, 1, 2], gms_seeds=[1, 2, 3])
    found = paired_difference(variant, base, "class_il")
    assert found.pairs == 2 and found.mean == pytest.approx(1.5)
    other_order = group_runs([result("er", 0, 50.0, order=7),
                              result("er", 0, 60.0, gms=True, order=8)])
    assert paired_difference(*sorted(other_order, key=lambda c: "GMS" not in c.label),
                             "class_il") is None


def test_one_pair_has_no_interval_and_identical_differences_are_certain():
    variant, base = cells_of([50.0], [55.0])
    single = paired_difference(variant, base, "class_il")
    assert single.pairs == 1 and single.low is None and single.p is None
    variant, base = cells_of([50.0, 60.0], [52.0, 62.0])
    constant = paired_difference(variant, base, "class_il")
    assert constant.low == constant.high == pytest.approx(2.0) and constant.p == 0.0
    variant, base = cells_of([50.0, 60.0], [50.0, 60.0])
    assert paired_difference(variant, base, "class_il").p == 1.0


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_plus_1_monotonically():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_a_difference_significant_alone_may_not_survive_the_whole_table():
    runs = []
    for buffer_size, shift in ((10, [3.0, 3.5, 2.5, 3.2, 2.8]), (20, [0.5, -0.4, 0.3, 0.1, -0.2]),
                               (50, [0.2, -0.3, 0.4, 0.0, -0.1])):
        for seed, delta in enumerate(shift):
            runs.append(result("er", seed, 50.0 + seed, buffer_size=buffer_size))
            runs.append(result("er", seed, 50.0 + seed + delta, gms=True,
                               buffer_size=buffer_size))
    found = {d.buffer_size: d for d in gms_comparisons(group_runs(runs), "class_il")}
    assert found[10].significant and found[10].p_holm == pytest.approx(3 * found[10].p)
    assert not found[20].significant and not found[50].significant
    assert all(d.p_holm >= d.p for d in found.values())


def test_report_prints_intervals_tests_and_diverged_counts(tmp_path, capsys):
    db = tmp_path / "runs.db"
    store = ResultsStore(db)
    for seed, (plain, masked) in enumerate([(70.0, 75.0), (72.0, 78.0), (71.0, 75.5)]):
        for gms, value in ((False, plain), (True, masked)):
            run = result("er", seed, value, gms=gms)
            store.record(f"{seed}{gms}", run["config"], run)
    diverged = result("er", 3, 0.0, gms=True)["config"]
    store.record("diverged", diverged, error="training diverged (loss nan) in task 2")
    store.close()
    out = tmp_path / "report"
    assert cli.main(["report", "--db", str(db), "--no-plots", "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "6 finished runs, 1 diverged" in markdown
    assert "(n=3; 1/4 diverged)" in markdown
    assert "| ER + GMS (m=-inf) | seq-mnist | 200 | 3 | +5.17 [" in markdown
    with open(out / "paired.csv") as file:
        rows = list(csv.DictReader(file))
    class_il = next(r for r in rows if r["setting"] == "class_il")
    assert class_il["pairs"] == "3"
    assert float(class_il["mean_difference"]) == pytest.approx(31.0 / 6, abs=1e-4)
    assert float(class_il["ci95_low"]) < float(class_il["mean_difference"]) < float(
        class_il["ci95_high"])
    with open(out / "report.csv") as file:
        cells = {r["method"]: r for r in csv.DictReader(file)}
    assert (cells["ER + GMS (m=-inf)"]["runs"], cells["ER + GMS (m=-inf)"]["diverged"]) == (
        "4", "1")
    assert cells["ER"]["diverged"] == "0"


def test_a_cell_whose_runs_all_diverged_is_reported_as_such(tmp_path):
    from replaymask.experiments.report import write_report

    runs = [result("er", 0, 70.0)]
    written = write_report(runs, tmp_path, plots=False,
                           failed=[result("der", 0, 0.0)["config"]] * 2)
    assert "all 2 diverged" in written[0].read_text()


def test_the_test_agrees_with_scipy_stats():
    from scipy import stats

    variant, base = cells_of([50.0, 61.0, 70.0, 58.0, 66.0], [53.0, 62.5, 70.1, 62.0, 66.2])
    found = paired_difference(variant, base, "class_il")
    differences = [3.0, 1.5, 0.1, 4.0, 0.2]
    reference = stats.ttest_rel([53.0, 62.5, 70.1, 62.0, 66.2], [50.0, 61.0, 70.0, 58.0, 66.0])
    assert found.p == pytest.approx(reference.pvalue, rel=1e-9)
    interval = stats.t.interval(0.95, 4, loc=sum(differences) / 5, scale=stats.sem(differences))
    assert (found.low, found.high) == (pytest.approx(interval[0]), pytest.approx(interval[1]))


def test_the_m_curve_figure_is_drawn_when_four_or_more_mask_values_were_run(tmp_path):
    pytest.importorskip("matplotlib")
    from replaymask.experiments.plots import mask_value_curves

    runs = []
    for seed in range(3):
        runs.append(result("er", seed, 60.0 + seed, buffer_size=20))
        for m in ("-inf", -1.0, 0.0, 1.0, 5.0, "detach"):
            run = result("er", seed, 70.0 + seed, gms=True, buffer_size=20)
            run["config"]["gms_mask_value"] = m
            runs.append(run)
    for run in runs:
        run["metrics"]["class_il"].update(forgetting=10.0, final_task_accuracy=[80.0, 99.0])
    from replaymask.experiments.cells import Variant
    from replaymask.experiments.report import write_report

    curves = mask_value_curves(group_runs(runs))
    assert list(curves) == [(Variant("er"), 20)]
    assert sorted(curves[(Variant("er"), 20)]) == [float("-inf"), -1.0, 0.0, 1.0, 5.0]
    written = write_report(runs, tmp_path, plots=True)
    figure = tmp_path / "seq-mnist_m_curve.png"
    assert figure in written and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fewer = [r for r in runs if r["config"].get("gms_mask_value") in (None, "-inf", 0.0, 5.0)]
    assert not mask_value_curves(group_runs(fewer))


def test_runs_with_other_hyperparameters_than_the_best_arguments_are_their_own_cells():
    runs = [result("er", seed, 70.0 + seed) for seed in range(3)]  # best args: lr 0.01
    runs += [result("er", seed, 75.0 + seed, gms=True) for seed in range(3)]
    for seed in range(3):
        for gms, value in ((False, 60.0), (True, 64.0)):
            run = result("er", seed, value + seed, gms=gms)
            run["config"].update(lr=0.1, minibatch_size=10)
            runs.append(run)
    for run in runs:  # the best arguments of ER on seq-mnist at buffer 200
        run["config"].setdefault("lr", 0.01)
        run["config"].setdefault("minibatch_size", 10)
    labels = {c.label: c for c in group_runs(runs)}
    assert sorted(labels) == ["ER", "ER + GMS (m=-inf)", "ER [lr=0.1]",
                              "ER [lr=0.1] + GMS (m=-inf)"]
    found = {d.label: d for d in gms_comparisons(list(labels.values()), "class_il")}
    assert found["ER + GMS (m=-inf)"].mean == pytest.approx(5.0)
    assert found["ER [lr=0.1] + GMS (m=-inf)"].mean == pytest.approx(4.0)


def test_per_buffer_figures_leave_variants_run_at_a_few_sizes_to_the_m_curve():
    from replaymask.experiments.plots import full_buffer_axis

    runs = [result("er", 0, 60.0, buffer_size=size) for size in (10, 20, 200)]
    runs += [result("er", 0, 65.0, gms=True, buffer_size=size) for size in (10, 20, 200)]
    for size in (20, 200):
        run = result("er", 0, 66.0, gms=True, buffer_size=size)
        run["config"]["gms_mask_value"] = -2.0
        runs.append(run)
    kept = {(c.label, c.buffer_size) for c in full_buffer_axis(group_runs(runs))}
    assert ("ER + GMS (m=-inf)", 10) in kept and ("ER", 200) in kept
    assert not any("m=-2.0" in label for label, _ in kept)


def test_other_class_orders_and_task_counts_are_their_own_cells_and_orders_are_the_units(
        tmp_path):
    from replaymask.experiments.cells import pooled_over_orders
    from replaymask.experiments.report import write_report

    runs = []
    for order, gain in ((None, 1.0), (1, 3.0), (2, 5.0)):
        for seed in range(3):
            runs += [result("er", seed, 60.0 + seed, order=order),
                     result("er", seed, 60.0 + seed + gain, gms=True, order=order)]
    ten_tasks = [result("er", 0, 40.0), result("er", 0, 45.0, gms=True)]
    for run in ten_tasks:
        run["config"]["n_tasks"] = 10
    cells = group_runs(runs + ten_tasks)
    assert sorted({c.dataset for c in cells}) == [
        "seq-mnist", "seq-mnist (10 tasks)", "seq-mnist (order 1)", "seq-mnist (order 2)"]
    assert all(len(c.results) == 3 for c in cells if c.scenario != "10 tasks")
    (pooled_base, pooled_gms) = sorted(pooled_over_orders(cells), key=lambda c: c.label)
    assert pooled_gms.dataset == "seq-mnist (orders pooled)" and len(pooled_gms.results) == 9
    found = paired_difference(pooled_gms, pooled_base, "class_il")
    assert found.pairs == 9 and found.mean == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    # the three order means (1, 3, 5) are the units, not the nine pairs: t = 3 / (2 / sqrt 3)
    assert found.units == 3 and found.p == pytest.approx(0.1213, abs=1e-3)
    assert found.low == pytest.approx(3.0 - 4.303 * 2 / 3 ** 0.5, abs=1e-3)

    write_report(runs + ten_tasks, tmp_path, plots=False)
    markdown = (tmp_path / "report.md").read_text()
    main, _, others = markdown.partition("## Other scenarios")
    assert "order 1" not in main.partition("## Paired differences")[0]  # main tables
    # columns: natural order, 10 tasks, order 1, order 2, orders pooled (the differences
    # are constant within each order, so each order's test with 3 pairs is certain; the
    # pooled cell's three order means differ, and 3 of them prove nothing at 5%)
    assert "| ER | +1.0* | +5.0 | +3.0* | +5.0* | +3.0 |" in others
    assert "| seq-mnist buf 200 | seq-mnist (10 tasks) buf 200 |" in others


def test_validation_runs_only_select_the_learning_rate_and_never_enter_the_main_tables(
        tmp_path):
    from replaymask.experiments.report import write_report

    runs = []
    for lr, value in ((0.01, 50.0), (0.03, 58.0), (0.1, 55.0)):
        for seed in (10, 11):
            for gms, shift in ((False, 0.0), (True, 4.0 if lr == 0.1 else -1.0)):
                run = result("er", seed, value + shift + seed, gms=gms)
                run["config"].update(lr=lr, validation_fraction=0.1)
                runs.append(run)
    test_runs = [result("er", 0, 70.0), result("er", 0, 72.0, gms=True)]
    write_report(runs + test_runs, tmp_path, plots=False)
    markdown = (tmp_path / "report.md").read_text()
    main, _, selection = markdown.partition("## Hyper-parameter selection")
    assert "validation" not in main.partition("## Paired differences")[0]
    assert "seq-mnist (validation 10%)" not in main
    rows = {line.split(" | ")[0].strip("| "): line for line in selection.splitlines()
            if line.startswith("| ER")}
    assert rows["ER"].endswith("| **0.03** |")  # 58.5 mean beats 55.5 and 50.5
    assert rows["ER + GMS (m=-inf)"].endswith("| **0.1** |")  # 59.5 beats 57.5
    assert "0.01: 60.50 ± 0.71 (n=2)" in rows["ER"]
    from replaymask.experiments.sweep import load_sweep

    selected = load_sweep(tmp_path / "selected.yaml")
    assert sorted((c.gms, c.lr, c.seed) for c in selected) == [
        *((False, 0.03, seed) for seed in range(5)), *((True, 0.1, seed) for seed in range(5))]
    assert all(c.validation_fraction == 0 and c.model == "er" and c.buffer_size == 200
               for c in selected)


def test_a_learning_rate_at_which_a_run_diverged_is_never_selected(tmp_path):
    from replaymask.experiments.report import write_report

    runs, failed = [], []
    for lr, value in ((0.01, 50.0), (0.3, 70.0)):
        for seed in (10, 11):
            run = result("er", seed, value)
            run["config"].update(lr=lr, validation_fraction=0.1)
            runs.append(run)
    broken = result("er", 12, 0.0)["config"]
    broken.update(lr=0.3, validation_fraction=0.1)
    failed.append(broken)  # one of the three seeds at lr 0.3 diverged
    write_report(runs, tmp_path, plots=False, failed=failed)
    selection = (tmp_path / "report.md").read_text().partition("## Hyper-parameter")[2]
    row = next(line for line in selection.splitlines() if line.startswith("| ER |"))
    assert "0.3: 70.00 ± 0.00 (n=2; 1/3 diverged)" in row and row.endswith("| **0.01** |")


def test_tost_and_effect_size_match_their_definitions():
    """TOST p = the larger of the two one-sided p-values against -2 and +2 points; d_z =
    mean / sd of the differences (checked against SciPy's t distribution)."""
    from scipy import stats as scipy_stats

    from replaymask.experiments.stats import paired_tests

    differences = [0.3, -0.5, 0.9, 0.1, -0.2, 0.4, 0.0, 0.6, -0.3, 0.2]
    p, p_equivalent = paired_tests(differences)
    n = len(differences)
    mean = sum(differences) / n
    se = scipy_stats.tstd(differences) / n ** 0.5
    assert p == pytest.approx(scipy_stats.ttest_1samp(differences, 0).pvalue)
    expected = max(scipy_stats.t.sf((mean + 2) / se, n - 1), scipy_stats.t.cdf((mean - 2) / se,
                                                                                 n - 1))
    assert p_equivalent == pytest.approx(expected) and p_equivalent < 1e-6
    assert paired_tests([2.5, 3.0, 2.8])[1] > 0.5  # a clear 2.8-point gain is not "equivalent"


@pytest.mark.parametrize("gains, outcome", [
    ([3.0, 3.4, 2.8, 3.1, 3.3, 2.9], "better"),
    ([-3.0, -3.4, -2.8, -3.1, -3.3, -2.9], "worse"),
    ([0.1, -0.2, 0.3, 0.0, -0.1, 0.2], "equivalent"),
    ([6.0, -5.0, 4.0, -6.0, 5.0, -3.0], "inconclusive"),
])
def test_every_comparison_has_one_of_four_outcomes(gains, outcome):
    base = [result("er", seed, 60.0 + seed) for seed in range(len(gains))]
    gms = [result("er", seed, 60.0 + seed + gain, gms=True) for seed, gain in enumerate(gains)]
    (found,) = gms_comparisons(group_runs(base + gms), "class_il")
    assert found.outcome == outcome
    spread = statistics.stdev(gains)
    assert found.dz == pytest.approx(statistics.fmean(gains) / spread)


def test_a_cell_is_data_and_its_label_is_derived():
    """A row is a Variant (method, arguments, GMS) and a column a Scenario: the report
    never parses a label back. Arguments are named against the best-args row the run was
    resolved with, as its provenance recorded it, so editing a row relabels no stored run."""
    from replaymask.experiments.cells import Scenario, Variant, variant_of

    run = result("er", 0, 70.0, gms=True)
    run["config"].update(lr=0.05, gms_mask_value="0.0", gms_on_buffer=True)
    (cell,) = group_runs([run])
    assert cell.variant == Variant("er", (("lr", 0.05),), True, "0.0", True)
    assert cell.label == "ER [lr=0.05] + GMS (m=0.0, buffer masked)"
    assert cell.variant.plain == Variant("er", (("lr", 0.05),))
    assert cell.column == Scenario("seq-mnist") and cell.dataset == "seq-mnist"
    recorded = {"best_args_values": {"lr": 0.05, "minibatch_size": 10}}
    assert variant_of(run["config"], recorded).arguments == ()  # 0.05 was that run's row
    ordered = Scenario("seq-mnist", class_order_seed=3, validation_fraction=0.1)
    assert ordered.label == "seq-mnist (order 3, validation 10%)" and not ordered.protocol


def test_each_comparison_joins_its_family_by_its_cells_data(tmp_path):
    """primary: hard masking at the best arguments in the protocol's scenario, for the
    plan's five methods; rehearsal: the same for any other method; tasks: another task
    count; buffer masked vs plain GMS: two GMS variants; each family has its own Holm
    correction, shown beside the whole report's (families.md)."""
    from replaymask.experiments.report import write_report

    runs = []
    for seed in range(4):
        runs += [result("er", seed, 60.0 + seed), result("er", seed, 65.0 + seed, gms=True)]
        runs += [result("agem", seed, 30.0 + seed), result("agem", seed, 40.0 + seed, gms=True)]
        masked = result("er", seed, 50.0 + seed, gms=True)
        masked["config"]["gms_on_buffer"] = True
        runs.append(masked)
        for gms, gain in ((False, 0.0), (True, 2.0)):
            run = result("er", seed, 40.0 + seed + gain, gms=gms)
            run["config"]["n_tasks"] = 10
            runs.append(run)
    write_report(runs, tmp_path, plots=False)
    families = (tmp_path / "families.md").read_text()
    sections = {part.split(":")[0]: part for part in families.split("## ")[1:]}
    assert set(sections) == {"primary", "rehearsal", "tasks", "buffer masked vs plain GMS"}
    assert "| ER + GMS (m=-inf) | seq-mnist | 200 | 4 | +5.0" in sections["primary"]
    assert "A-GEM" not in sections["primary"]
    assert "| A-GEM + GMS (m=-inf) | seq-mnist | 200 | 4 | +10.0" in sections["rehearsal"]
    assert "seq-mnist (10 tasks)" in sections["tasks"]
    assert "| ER + GMS (m=-inf, buffer masked) vs plain GMS | seq-mnist | 200 | 4 | -15.0" \
        in sections["buffer masked vs plain GMS"]


def test_the_report_writes_the_m_curve_and_ss_replay_summaries_where_the_runs_allow(tmp_path):
    from replaymask.experiments.report import write_report

    runs = []
    for seed in range(3):
        runs += [result("er", seed, 60.0 + seed, buffer_size=20),
                 result("ss_replay", seed, 58.0 + seed, buffer_size=20)]
        for m, gain in (("-inf", 10.0), (-1.0, 9.0), (0.0, 8.0), (1.0, 7.0)):
            run = result("er", seed, 60.0 + seed + gain, gms=True, buffer_size=20)
            run["config"]["gms_mask_value"] = m
            runs.append(run)
    written = write_report(runs, tmp_path, plots=False)
    assert tmp_path / "m_curve.md" in written and tmp_path / "ss_replay.md" in written
    curve = (tmp_path / "m_curve.md").read_text()
    assert "## seq-mnist ER buffer 20 (no GMS: 61.00)" in curve
    assert "| 0 | 69.00 | -2.00 [-2.00, -2.00]" in curve
    ss = (tmp_path / "ss_replay.md").read_text()
    assert "| seq-mnist | 20 | 61.0 (3/3) | 71.0 (3/3) | 59.0 (3/3) |" in ss
    assert "-2.0 [-2.0, -2.0]" in ss  # SS - ER, the same every seed


def test_the_m_curve_tests_each_finite_m_against_hard_masking_with_an_equivalence_test():
    from replaymask.experiments.summaries import m_curve_markdown

    runs = []
    # hard masking 70, 71, 72; m = -20 gives the same numbers (equivalent: no spread, no
    # difference); m = 0 adds 0.2, 0.1, 0.3 (equivalent within 2); m = 5 subtracts 10, 11,
    # 12 (worse); m = 1 adds 1, 5, 0 (inconclusive); the plain method sits beside them
    for m, deltas in (("-inf", (0, 0, 0)), ("-20.0", (0, 0, 0)), ("0.0", (0.2, 0.1, 0.3)),
                      ("5.0", (-10, -11, -12)), ("1.0", (1, 5, 0))):
        for seed, delta in enumerate(deltas):
            run = result("er", seed, 70.0 + seed + delta, gms=True)
            run["config"]["gms_mask_value"] = m
            runs.append(run)
    runs += [result("er", seed, 60.0) for seed in range(3)]
    text = m_curve_markdown(group_runs(runs))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| m ")}
    assert "over the 4 such comparisons" in text and "## seq-mnist ER buffer 200" in text
    assert rows["-20"].endswith("| equivalent |")
    assert rows["0"].endswith("| equivalent |")
    assert rows["5"].endswith("| worse |") and "-11.00 [" in rows["5"]
    assert rows["1"].endswith("| inconclusive |")
    assert rows["-inf"] == "| -inf | 71.00 | | | | | |"
