"""The results database: one row per run, safe with concurrent writers, refuses others' files."""

import multiprocessing
import sqlite3

import pytest

from replaymask.experiments.store import ResultsStore, StoreError


def fake_result(score: float) -> dict:
    metrics = {s: {"average_accuracy": score} for s in ("class_il", "task_il")}
    return {"metrics": metrics, "accuracy_matrix": {"class_il": [[score]], "task_il": [[score]]},
            "wall_time_s": 1.5, "config": {"model": "er"}}


def test_records_done_and_failed_runs_with_provenance(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    store.record("aaa", {"model": "er"}, result=fake_result(80.0))
    store.record("bbb", {"model": "der"}, error="DivergenceError: loss nan")
    assert store.statuses() == {"aaa": "done", "bbb": "failed"}
    done, = store.runs("done")
    assert done["metrics"]["class_il"]["average_accuracy"] == 80.0
    assert done["host"] and done["version"] and done["attempts"] == 1
    failed, = store.runs("failed")
    assert failed["error"].startswith("DivergenceError") and failed["metrics"] is None


def test_recording_a_run_again_replaces_it_and_counts_the_attempt(tmp_path):
    store = ResultsStore(tmp_path / "r.db")
    store.record("aaa", {"model": "er"}, error="boom")
    store.record("aaa", {"model": "er"}, result=fake_result(70.0))
    row, = store.runs()
    assert row["status"] == "done" and row["error"] is None and row["attempts"] == 2


def _writer(path, worker, count):
    store = ResultsStore(path)
    for i in range(count):
        store.record(f"w{worker}-{i}", {"worker": worker, "i": i}, result=fake_result(float(i)))
        store.record("shared", {"worker": worker}, result=fake_result(float(worker)))


def test_parallel_writer_processes_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "r.db"
    ResultsStore(path).close()
    processes = [multiprocessing.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    rows = ResultsStore(path).runs()
    hashes = [r["config_hash"] for r in rows]
    assert len(hashes) == len(set(hashes)) == 4 * 40 + 1
    shared, = (r for r in rows if r["config_hash"] == "shared")
    assert shared["attempts"] == 4 * 40


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my precious notes")
    with pytest.raises(StoreError, match="not a usable replaymask results database"):
        ResultsStore(path)
    assert path.read_text() == "my precious notes"


def test_another_programs_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a replaymask one"):
        ResultsStore(path)
    assert path.read_bytes() == before


def test_opening_a_missing_database_for_reading_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
