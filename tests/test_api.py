"""replaymask from Python: a run returns its result, a sweep fills a database, the database
reads back as records and as a table."""

import json
import warnings

import pytest
import torch

import replaymask
from replaymask.errors import ConfigError


def test_a_run_returns_its_result_and_writes_nothing_unless_asked(mnist_like_root, tmp_path,
                                                                  monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = replaymask.run(model="er", buffer_size=20, gms=True, data_root=mnist_like_root,
                            progress=False)
    assert isinstance(result, replaymask.RunResult)
    assert [len(row) for row in result.accuracy_matrix["class_il"]] == [1, 2, 3, 4, 5]
    assert result.class_il == result.metrics["class_il"]["average_accuracy"]
    assert result.config.lr == 0.01 and result.config.gms is True
    assert result.config.provenance.user_set == ("model", "buffer_size", "gms")
    assert result.config.provenance.origin == "Python"
    assert not any(work.iterdir())  # nothing written
    out = tmp_path / "out"
    again = replaymask.run(model="er", buffer_size=20, gms=True, data_root=mnist_like_root,
                           progress=False, out=out)
    assert again.accuracy_matrix == result.accuracy_matrix  # the same numbers
    stored = json.loads((out / "result.json").read_text())
    assert stored["provenance"]["set"] == ["model", "buffer_size", "gms"]
    assert stored["hyperparameter_source"] == result.config.provenance.summary()


def test_the_api_and_the_command_line_give_the_same_numbers(mnist_like_root, tmp_path):
    from replaymask import cli

    assert cli.main(["run", "--model", "derpp", "--buffer-size", "20", "--seed", "1",
                     "--data-root", str(mnist_like_root), "--out", str(tmp_path / "cli"),
                     "--no-progress"]) == 0
    from_cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    result = replaymask.run(model="derpp", buffer_size=20, seed=1, data_root=mnist_like_root,
                            progress=False)
    assert from_cli["accuracy_matrix"] == result.accuracy_matrix
    assert from_cli["config"] == result.config.to_dict()


def test_a_setting_that_cannot_matter_is_a_warning_and_a_mistake_an_error(mnist_like_root):
    with pytest.warns(UserWarning, match="gms_mask_value ignored: needs gms"):
        replaymask.run(model="sgd", gms_mask_value=0.0, data_root=mnist_like_root,
                       progress=False, n_epochs=1)
    with pytest.raises(ConfigError, match="--lr must be a finite number > 0"):
        replaymask.run(model="er", lr=-1.0)
    with pytest.raises(ConfigError, match="unknown setting 'buffer'"):
        replaymask.run(model="er", buffer=200)


def test_a_run_leaves_torchs_thread_count_as_it_was(mnist_like_root):
    before = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        replaymask.run(model="sgd", data_root=mnist_like_root, progress=False, threads=1)
    assert torch.get_num_threads() == before


def test_a_sweep_from_a_grid_fills_the_database_and_reads_back(mnist_like_root, tmp_path):
    db = tmp_path / "runs.db"
    grid = {"model": "er", "buffer_size": 20, "seed": [0, 1], "gms": [False, True],
            "gms_mask_value": [-float("inf"), 0.0]}
    plan = replaymask.plan_sweep(grid)
    assert (plan.combinations, len(plan.configs)) == (8, 6)  # no GMS: one mask value
    summary = replaymask.sweep(grid, db=db, workers=2, data_root=mnist_like_root,
                               progress=False)
    assert (summary.total, summary.ran, summary.failed) == (6, 6, 0)
    records = replaymask.load_runs(db)
    assert len(records) == 6 and {r.status for r in records} == {"done"}
    assert {r.hash for r in records} == {c.hash for c in plan.configs}
    assert all(r.result["provenance"]["origin"] == "Python" for r in records)
    row = records[0].row()
    assert row["model"] == "er" and 0 <= row["class_il_average_accuracy"] <= 100
    assert replaymask.sweep(grid, db=db, progress=False).already_done == 6  # resumable


def test_the_database_reads_into_a_dataframe(mnist_like_root, tmp_path):
    pandas = pytest.importorskip("pandas")
    db = tmp_path / "runs.db"
    replaymask.sweep({"model": "sgd", "seed": [0, 1]}, db=db, workers=1,
                     data_root=mnist_like_root, progress=False)
    table = replaymask.runs_dataframe(db)
    assert isinstance(table, pandas.DataFrame) and len(table) == 2
    assert {"model", "seed", "class_il_average_accuracy", "task_il_forgetting"} <= set(table)
    with pytest.raises(ConfigError, match="status must be"):
        replaymask.load_runs(db, status="finished")


def test_methods_lists_every_declared_method():
    methods = replaymask.methods()
    assert {"sgd", "joint", "er", "der", "derpp", "er_ace", "ss_replay", "xder"} <= set(methods)
    assert methods["derpp"].label == "DER++" and methods["derpp"].stores_logits
