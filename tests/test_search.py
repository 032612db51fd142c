"""The per-cell hyper-parameter search: Optuna trials that are runs of the results database,
both sides of a comparison searched alike, resumable, and a test sweep of the selections."""

from __future__ import annotations

import json
import sqlite3

import pytest

from replaymask.experiments.search import (
    cell_key,
    read_search,
    run_search,
    selected_sweep,
)
from replaymask.experiments.sweep import SweepError, load_sweep

from .test_hardened_inputs import assert_one_clear_error, call

SEARCH = """\
cells:
  - {model: er, gms: [false, true], buffer_size: 10, dataset: seq-mnist}
space:
  lr: {log: [0.001, 0.3]}
  minibatch_size: {choice: [10, 32]}
  alpha: {log: [0.1, 1.0]}
  gms_mask_value: {choice: [-inf, -2, 0]}
trials: 3
startup_trials: 2
seeds: [0, 1]
validation_fraction: 0.2
test_seeds: [10, 11, 12]
"""


def test_each_cell_searches_only_the_settings_that_can_matter_there(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("model: er", "model: [sgd, er, der, derpp]"))
    search = read_search(path)
    searched = {(cell["model"], cell["gms"]): [d.name for d in search.dimensions(cell)]
                for cell in search.cells}
    assert searched[("sgd", False)] == ["lr"]
    assert searched[("er", False)] == ["lr", "minibatch_size"]
    assert searched[("der", True)] == ["lr", "minibatch_size", "alpha", "gms_mask_value"]
    assert searched[("derpp", False)] == ["lr", "minibatch_size", "alpha"]


def test_a_search_records_every_trial_run_resumes_and_selects_the_best(tmp_path,
                                                                       mnist_like_root):
    path = tmp_path / "search.yaml"
    path.write_text(SEARCH)
    search = read_search(path)
    db, journal = tmp_path / "runs.db", tmp_path / "search.journal"
    outcomes = run_search(search, db, journal, workers=2, progress=False,
                          data_root=str(mnist_like_root))
    assert [len(outcome.trials) for outcome in outcomes] == [3, 3]
    rows = sqlite3.connect(db).execute("SELECT config FROM runs").fetchall()
    trials = [row for row in rows if '"validation_fraction": 0.2' in row[0]]
    assert len(trials) <= 12 and len(rows) - len(trials) == 6  # and the pair's test runs
    tests = [json.loads(row[0]) for row in rows if row not in trials]
    assert sorted(config["seed"] for config in tests) == [10, 10, 11, 11, 12, 12]
    for outcome in outcomes:
        best_params, best = outcome.selected
        assert best == max(value for _, value in outcome.trials if value is not None)
        assert ("gms_mask_value" in best_params) == outcome.cell["gms"]
    again = run_search(search, db, journal, workers=1, progress=False,
                       data_root=str(mnist_like_root))
    assert [o.trials for o in again] == [o.trials for o in outcomes]  # nothing re-run
    assert len(sqlite3.connect(db).execute("SELECT config FROM runs").fetchall()) == len(rows)
    sweep = tmp_path / "selected.yaml"
    sweep.write_text(selected_sweep(search, again))
    configs = load_sweep(sweep)
    assert len(configs) == 6 and {c.seed for c in configs} == {10, 11, 12}
    assert {c.validation_fraction for c in configs} == {0.0}  # the test set


def test_a_trial_left_running_by_a_killed_search_is_scored_when_it_resumes(tmp_path,
                                                                           mnist_like_root):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("gms: [false, true]", "gms: false"))
    search = read_search(path)
    journal = tmp_path / "search.journal"
    study = optuna.create_study(study_name=cell_key(search.cells[0]), direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    study.ask({"lr": optuna.distributions.FloatDistribution(0.001, 0.3, log=True),
               "minibatch_size": optuna.distributions.CategoricalDistribution([10, 32])})
    (outcome,) = run_search(search, tmp_path / "runs.db", journal, workers=1, progress=False,
                            data_root=str(mnist_like_root))
    assert len(outcome.trials) == 3
    states = [trial.state.name for trial in study.get_trials()]
    assert states == ["COMPLETE"] * 3


@pytest.mark.parametrize("text, message", [
    (SEARCH.replace("trials: 3", "trials: 0"), "'trials' must be an integer >= 1"),
    (SEARCH.replace("lr: {log: [0.001, 0.3]}", "lr: {log: [0.3, 0.001]}"),
     "space 'lr': log needs [low, high] with 0 < low < high"),
    (SEARCH.replace("lr: {log", "lr: {uniform"), "space 'lr' must be {log: [low, high]}"),
    (SEARCH + "budget: 3\n", "unknown key 'budget'"),
    (SEARCH.replace("buffer_size: 10,", "buffer_size: 10, seed: 3,"),
     "a cell takes no seed or validation_fraction"),
    (SEARCH.replace("model: er", "model: erx"), "--model must be one of"),
    (SEARCH.replace("test_seeds: [10, 11, 12]\n", ""), "'test_seeds' is missing"),
])
def test_a_bad_search_file_is_one_line_and_writes_nothing(tmp_path, text, message):
    path = tmp_path / "search.yaml"
    path.write_text(text)
    with pytest.raises(SweepError, match=message.replace("[", r"\[").replace("{", r"\{")):
        read_search(path)
    code, stdout, stderr = call(["search", str(path), "--db", str(tmp_path / "runs.db")])
    assert_one_clear_error(code, stdout, stderr, mentions=message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.yaml"]


def test_a_search_file_that_cannot_be_read_is_called_a_search_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    code, stdout, stderr = call(["search", str(missing), "--db", str(tmp_path / "runs.db")])
    assert_one_clear_error(code, stdout, stderr, mentions="cannot read search file")
    assert not (tmp_path / "runs.db").exists()


def test_the_study_search_file_is_the_plan(tmp_path):
    """docs/study/search.yaml holds what docs/study/plan.md section 2 says."""
    from pathlib import Path

    search = read_search(Path(__file__).resolve().parent.parent / "docs/study/search.yaml")
    assert len(search.cells) == 100
    assert (search.trials, search.startup_trials, search.seeds) == (20, 8, (0, 1))
    assert (search.validation_fraction, search.test_seeds) == (0.1, tuple(range(10, 20)))
    pairs = {cell_key({k: v for k, v in cell.items() if k != "gms"}) for cell in search.cells}
    assert len(pairs) == 50
    space = {d.name: (d.low, d.high, d.choices) for d in search.space}
    assert space == {"lr": (0.001, 0.3, ()), "minibatch_size": (None, None, (10, 32, 64, 128)),
                     "alpha": (0.05, 2.0, ()), "beta": (0.05, 2.0, ()),
                     "gms_mask_value": (None, None, ("-inf", -2, 0))}


def test_tuned_pairs_compare_each_sides_selection_on_the_same_test_seeds(tmp_path):
    """F1 of the plan: the GMS cell's selection against the baseline cell's, each with its
    own settings, paired by test seed; a pair waits until both searches and all its test
    runs are there."""
    from replaymask.experiments.search import CellOutcome, selection_configs
    from replaymask.experiments.tuned import markdown_table, tuned_pairs

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("trials: 3", "trials: 2").replace(
        "buffer_size: 10", "buffer_size: [10, 20]"))
    search = read_search(path)
    outcomes = []
    for cell in search.cells:
        trials = [({"lr": 0.01, "minibatch_size": 10}, 50.0),
                  ({"lr": 0.1, "minibatch_size": 32}, 55.0)]
        if cell["gms"]:
            trials = [({**params, "gms_mask_value": "-inf"}, value) for params, value in trials]
        if cell["gms"] and cell["buffer_size"] == 20:
            trials = trials[:1]  # that search is still under way
        outcomes.append(CellOutcome(cell, trials))
    gains = {10: 2.0, 11: 3.0, 12: 4.0}
    stored = {}
    for outcome in outcomes:
        for config in selection_configs(search, outcome):
            assert (config.lr, config.minibatch_size) == (0.1, 32)  # the higher trial
            value = 60.0 + config.seed + (gains[config.seed] if config.gms else 0.0)
            stored[config.hash] = ("done", {"metrics": {
                "class_il": {"average_accuracy": value},
                "task_il": {"average_accuracy": 90.0}}}, None)
    pairs = tuned_pairs(search, outcomes, stored.get)
    complete = [p for p in pairs if p.comparisons]
    assert len(pairs) == 2 and len(complete) == 1
    (difference,) = [complete[0].comparisons["class_il"]]
    assert (difference.pairs, difference.mean) == (3, pytest.approx(3.0))
    assert difference.p_holm == difference.p  # a family of one
    assert complete[0].gms == {"lr": 0.1, "minibatch_size": 32, "gms_mask_value": "-inf"}
    # each side's mean over the paired seeds 10-12: 70, 71, 72 without GMS; 72, 74, 76 with it
    assert complete[0].means["class_il"] == (pytest.approx(71.0), pytest.approx(74.0))
    table = markdown_table(pairs)
    assert "search under way" in table and "| 71.00 / 74.00 | +3.00 [" in table


def test_a_crashed_run_stops_the_search_unrecorded_and_the_search_resumes(tmp_path,
                                                                          mnist_like_root,
                                                                          monkeypatch, capsys):
    from replaymask import cli
    from replaymask.experiments import execution

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("gms: [false, true]", "gms: false"))
    db, journal = tmp_path / "runs.db", tmp_path / "search.journal"
    command = ["search", str(path), "--db", str(db), "--journal", str(journal),
               "--workers", "1", "--data-root", str(mnist_like_root), "--no-progress"]
    run = execution.execute

    def crash(*args, **kwargs):
        raise AttributeError("'ER' object has no attribute 'gms_rule'")

    monkeypatch.setattr(execution, "execute", crash)  # the worker is forked: it inherits
    assert cli.main(command) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("replaymask: error: search: a trial run")
    assert "crashed: AttributeError" in errors[0] and "nothing was recorded" in errors[0]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    monkeypatch.setattr(execution, "execute", run)
    assert cli.main(command) == 0
    (outcome,) = run_search(read_search(path), db, journal, workers=1, progress=False,
                            data_root=str(mnist_like_root), test=False)
    assert len(outcome.trials) == 3 and all(value is not None for _, value in outcome.trials)


@pytest.mark.parametrize("error, starts_again", [
    ("AttributeError: 'ERACE' object has no attribute 'gms_rule' (er_ace.py:50)", True),
    ("DivergenceError: training diverged (loss nan) in task 2 near step 100", False)])
def test_a_trial_failed_by_a_crash_before_the_rule_makes_its_cell_search_again(
        tmp_path, mnist_like_root, error, starts_again):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from replaymask.experiments.search import (
        SEARCH_TRIAL_FAILURE,
        _trial_settings,
        cell_seed,
    )
    from replaymask.experiments.store import ResultsStore

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("gms: [false, true]", "gms: false"))
    search = read_search(path)
    cell, db, journal = search.cells[0], tmp_path / "runs.db", tmp_path / "search.journal"
    # an older search's first trial: its seed-0 run failed, and the trial with it
    study = optuna.create_study(
        study_name=cell_key(cell), direction="maximize",
        storage=JournalStorage(JournalFileBackend(str(journal))),
        sampler=optuna.samplers.TPESampler(seed=cell_seed(cell), multivariate=True,
                                           n_startup_trials=search.startup_trials))
    trial = study.ask({d.name: d.distribution() for d in search.dimensions(cell)})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    config = _trial_settings(search.source, search, cell, trial.params, 0)
    store = ResultsStore(db)
    store.record(config.hash, config.to_dict(), error=error + SEARCH_TRIAL_FAILURE)
    store.close()
    (outcome,) = run_search(search, db, journal, workers=1, progress=False,
                            data_root=str(mnist_like_root), test=False)
    values = [value for _, value in outcome.trials]
    row = sqlite3.connect(db).execute("SELECT status, attempts FROM runs WHERE config_hash = ?",
                                      (config.hash,)).fetchone()
    if starts_again:  # a fresh study with the same seed: its first trial is the same run
        assert len(values) == 3 and None not in values
        assert row == ("done", 2)
    else:  # a diverged trial is a failed trial, as the plan says
        assert len(values) == 3 and values[0] is None
        assert row == ("failed", 1)


def test_the_report_names_the_plan_its_commit_and_the_searchs_first_run(tmp_path,
                                                                        mnist_like_root):
    import subprocess

    from replaymask import cli

    path = tmp_path / "search.yaml"
    path.write_text(SEARCH.replace("gms: [false, true]", "gms: false"))
    plan = tmp_path / "plan.md"
    plan.write_text("# the plan\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "add", "plan.md"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "plan"], check=True)
    commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()
    db, journal = tmp_path / "runs.db", tmp_path / "search.journal"
    run_search(read_search(path), db, journal, workers=1, progress=False,
               data_root=str(mnist_like_root), test=False)
    first = min(row[0] for row in sqlite3.connect(db).execute("SELECT finished_at FROM runs"))
    path.write_text(SEARCH)  # both sides now: the pair's test runs follow
    run_search(read_search(path), db, journal, workers=1, progress=False,
               data_root=str(mnist_like_root))
    out = tmp_path / "report"
    assert cli.main(["report", "--db", str(db), "--out", str(out), "--no-plots",
                     "--search", str(path), "--journal", str(journal)]) == 0
    text = (out / "tuned.md").read_text()
    assert f"The plan: {plan}, first committed in {commit} at " in text
    assert f"the search's first trial run finished at {first}." in text
    assert "| seq-mnist | ER | 10 |" in text  # the pair, in F1
    report = (out / "report.md").read_text()  # and its 6 test runs nowhere else
    assert "(and 6 test runs of a search's selections, reported in the tuned" in report
    runs = report.split("## The runs")[1].split("## Effect of GMS")[0]
    assert "lr=" not in runs and "0 finished runs" in report
