"""Family F3 (docs/study/plan.md section 7): the ablations' earlier-task errors against
their methods', both with GMS, paired by seed, Holm over the family; and what GMS changes
in each instrumented variant, from the folders that `replaymask analyze` writes."""

import json
import math

import pytest

from replaymask import cli
from replaymask.experiments import mechanism
from replaymask.experiments.stats import holm
from replaymask.experiments.store import ResultsStore

from .test_report_stats import result


def summary(earlier, later=10.0, class_il=50.0):
    return {"class_il": class_il, "into_earlier_task": earlier, "into_later_task": later,
            "test_into_earlier": earlier / 2, "test_into_later": later / 2}


def write_analysis(folder, name, model, earlier_gms, earlier_plain, later_gms=(5, 6, 7),
                   later_plain=(10, 10, 10), dataset="seq-mnist", buffer_size=20,
                   finite=None):
    runs = {}
    for side, earlier, later in (("plain softmax", earlier_plain, later_plain),
                                 ("GMS m=-inf", earlier_gms, later_gms)):
        gms = side != "plain softmax"
        runs[side] = {str(seed): {
            "config": {"model": model, "dataset": dataset, "buffer_size": buffer_size,
                       "seed": seed, "gms": gms, "gms_mask_value": "-inf"},
            "summary": summary(e, late)}
            for seed, (e, late) in enumerate(zip(earlier, later, strict=True))}
    if finite is not None:  # a finite m is not part of the plan's tests
        runs["GMS m=0"] = {str(seed): {
            "config": {"model": model, "dataset": dataset, "buffer_size": buffer_size,
                       "seed": seed, "gms": True, "gms_mask_value": "0"},
            "summary": summary(e)} for seed, e in enumerate(finite)}
    out = folder / f"{name}-{dataset}-buf{buffer_size}"
    out.mkdir(parents=True)
    (out / "analysis.json").write_text(json.dumps({"title": name, "runs": runs}))


@pytest.fixture
def study_db(tmp_path):
    db = tmp_path / "runs.db"
    store = ResultsStore(db)
    for seed in range(2):
        for gms in (False, True):
            run = result("er", seed, 70.0 + seed + 5 * gms, gms=gms)
            store.record(f"{seed}{gms}", run["config"], run)
    store.close()
    return db


@pytest.fixture
def analyses(tmp_path):
    # ER: earlier-task errors 10, 12, 14 with GMS; A2 raises them by 5, 6, 7 points
    write_analysis(tmp_path, "er", "er", (10, 12, 14), (1, 1, 1), finite=(90, 90, 90))
    write_analysis(tmp_path, "er-earlier-replay", "er", (15, 18, 21), (1, 1, 1))
    # DER: 20, 20, 20 with GMS; A1 changes them by -1, +1, 0: no shown effect
    write_analysis(tmp_path, "der", "der", (20, 20, 20), (2, 2, 2))
    write_analysis(tmp_path, "der-cross-task-replay", "derpp", (19, 21, 20), (2, 2, 2))
    return tmp_path


def test_the_folders_are_read_by_their_runs_configs_and_a_finite_m_is_left_out(analyses):
    found = mechanism.read_analyses(analyses)
    assert set(found) == {("er", "seq-mnist", 20), ("er-earlier-replay", "seq-mnist", 20),
                          ("der", "seq-mnist", 20), ("der-cross-task-replay", "seq-mnist", 20)}
    assert found[("er", "seq-mnist", 20)]["gms"][2]["into_earlier_task"] == 14  # not m=0's 90


def test_f3_pairs_each_ablation_with_its_method_under_gms_by_seed(analyses):
    tests = {d.label: d for d in mechanism.ablation_tests(mechanism.read_analyses(analyses))}
    a2, a1 = tests["er-earlier-replay"], tests["der-cross-task-replay"]
    assert (a2.base, a2.pairs, a2.mean) == ("er", 3, pytest.approx(6.0))  # 5, 6, 7
    assert (a1.base, a1.pairs, a1.mean) == ("der", 3, pytest.approx(0.0))  # -1, +1, 0
    # t = 6 / (1 / sqrt 3) on 2 degrees of freedom; two-sided p
    from scipy import stats
    p = 2 * stats.t.sf(6 * math.sqrt(3), 2)
    assert a2.p == pytest.approx(p) and a1.p == pytest.approx(1.0)
    assert [a2.p_holm, a1.p_holm] == pytest.approx(holm([a2.p, a1.p]))


def test_f3_says_whether_each_ablation_moved_as_the_clause_predicts(analyses):
    text = mechanism.ablation_markdown(mechanism.read_analyses(analyses))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if "| higher |" in line or "| lower |" in line}  # F3's rows
    a2 = rows["er-earlier-replay"]
    assert "| higher | 3 | +6.00 [" in a2
    assert a2.endswith("| yes |")  # p Holm = 2 * 0.0091 < 0.05, in the predicted direction
    assert rows["der-cross-task-replay"].endswith("| not shown |")


def test_what_gms_changes_has_the_later_task_ratio_per_seed(analyses):
    changes = mechanism.gms_changes(mechanism.read_analyses(analyses))
    er = changes[("er", "seq-mnist", 20)]
    assert er["into_earlier_task"].mean == pytest.approx(11.0)  # 9, 11, 13
    assert er["into_later_task"].mean == pytest.approx(-4.0)  # 5-10, 6-10, 7-10
    assert er["later_ratio"][0] == pytest.approx(0.6)  # 0.5, 0.6, 0.7


def test_report_writes_mechanism_md_from_the_folder(analyses, tmp_path, capsys, study_db):
    out = tmp_path / "report"
    code = cli.main(["report", "--db", str(study_db), "--out", str(out), "--no-plots",
                     "--mechanism", str(analyses)])
    assert code == 0, capsys.readouterr().err
    assert "## F3" in (out / "mechanism.md").read_text()


def test_report_refuses_a_mechanism_folder_without_analyses(tmp_path, capsys, study_db):
    (tmp_path / "empty").mkdir()
    code = cli.main(["report", "--db", str(study_db), "--out", str(tmp_path / "r"),
                     "--no-plots", "--mechanism", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == 2 and "no */analysis.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "mechanism.md").exists()


def test_report_refuses_a_mechanism_folder_that_does_not_exist(tmp_path, capsys, study_db):
    code = cli.main(["report", "--db", str(study_db), "--out", str(tmp_path / "r"),
                     "--no-plots", "--mechanism", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("missing': no such folder") and "\n" not in err
    assert not (tmp_path / "r").exists()  # refused before anything was written
