"""benchmarks/rerun_stored.py: a stored run must re-run bit for bit only on the CPU that
recorded it; runs recorded elsewhere are compared as information, never as a failure."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rerun_stored.py"
HERE = {"cpu": "Some CPU", "cpu_capability": "AVX512"}


@pytest.fixture(scope="module")
def rerun_stored():
    spec = importlib.util.spec_from_file_location("rerun_stored", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stored(versions: dict) -> dict:
    return {"versions": {"replaymask": "0.1.0", "torch": "2.13.0+cpu", **versions},
            **{name: {"class_il": [[50.0]]} for name in
               ("accuracy_matrix", "random_init_accuracy", "before_task_accuracy", "metrics")}}


def test_where_a_run_was_recorded(rerun_stored):
    assert rerun_stored.recorded_on(stored(HERE), HERE) == "this CPU"
    # recorded before the capability was: the model name decides
    assert rerun_stored.recorded_on(stored({"cpu": "Some CPU"}), HERE) == "this CPU"
    assert rerun_stored.recorded_on(stored({}), HERE) == "CPU not recorded"
    assert rerun_stored.recorded_on(None, HERE) == "CPU not recorded"  # a failed run
    assert rerun_stored.recorded_on(stored({"cpu": "Some CPU", "cpu_capability": "AVX2"}),
                                    HERE) == "another CPU (Some CPU, AVX2)"
    assert rerun_stored.recorded_on(stored({"cpu": "AMD EPYC"}), HERE) == "another CPU (AMD EPYC)"


def test_only_a_difference_on_this_cpu_is_a_failure(rerun_stored):
    result = stored(HERE)
    entry = ("abc", "done", {}, result, None)
    same = {"hash": "abc", "error": None,
            "result": {name: result[name] for name in rerun_stored.COMPARED}}
    changed = {**same, "result": {**same["result"], "accuracy_matrix": {"class_il": [[49.0]]}}}
    assert rerun_stored.verdict(entry, same, None, "this CPU") == "identical"
    assert rerun_stored.verdict(entry, changed, None, "this CPU") == "DIFFERENT: accuracy_matrix"
    elsewhere = rerun_stored.verdict(entry, changed, None, "CPU not recorded")
    assert elsewhere == "differs: accuracy_matrix (recorded on an unrecorded CPU)"
    assert "DIFFERENT" not in elsewhere
    # two versions of the code are compared on this machine wherever the run was recorded
    assert rerun_stored.verdict(entry, changed, changed, "another CPU (X)").startswith(
        "identical to the baseline code; differs from the database: accuracy_matrix")
    assert rerun_stored.verdict(entry, changed, same, "another CPU (X)").startswith(
        "DIFFERENT to the baseline code")
    # a configuration that no longer gives its stored hash fails wherever it was recorded
    assert rerun_stored.verdict(entry, {"hash": "xyz"}, None, "CPU not recorded").startswith(
        "DIFFERENT")
