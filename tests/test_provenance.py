"""Stored provenance is recomputed from each stored configuration; hashes never change."""

import json
import sqlite3

import pytest

from replaymask.config import resolve
from replaymask.experiments.provenance import minimal_request, recompute_provenance
from replaymask.experiments.store import ResultsStore

WRONG = "DER paper best args for seq-mnist, er, buffer 200; overridden: lr, minibatch_size, " \
        "n_epochs, batch_size"  # what every run of the first study said


def record_legacy_runs(db, configs):
    """Runs as a worker that resolved its configuration twice recorded them."""
    store = ResultsStore(db)
    for config in configs:
        metrics = {s: {"average_accuracy": 50.0} for s in ("class_il", "task_il")}
        store.record(config.hash, config.to_dict(), result={
            "config": config.to_dict(), "hyperparameter_source": WRONG, "metrics": metrics,
            "accuracy_matrix": {"class_il": [[50.0]], "task_il": [[50.0]]},
            "wall_time_s": 1.0})
    store.close()


def stored(db):
    connection = sqlite3.connect(db)
    rows = connection.execute("SELECT config_hash, config, result FROM runs").fetchall()
    connection.close()
    return {h: (json.loads(c), json.loads(r)) for h, c, r in rows}


SWEEP = "model: [er, derpp]\nbuffer_size: [20, 500]\ngms: [false, true]\nseed: 3\n"


def test_runs_made_by_a_sweep_file_get_what_the_file_set(tmp_path):
    sweep_file = tmp_path / "study.yaml"
    sweep_file.write_text(SWEEP)
    configs = [resolve(model=m, buffer_size=b, gms=g, seed=3) for m in ("er", "derpp")
               for b in (20, 500) for g in (False, True)]
    db = tmp_path / "r.db"
    record_legacy_runs(db, configs)
    before = stored(db)
    fix = recompute_provenance(db, [sweep_file])
    assert (fix.from_sweep, fix.inferred, fix.unchanged) == (8, 0, 0)
    after = stored(db)
    assert set(after) == set(before)  # the same hashes
    for key, (config, result) in after.items():
        assert config == before[key][0]
        assert result["provenance"]["set"] == ["model", "buffer_size", "gms", "seed"]
        assert result["provenance"]["origin"] == "sweep file study.yaml"
        assert "overridden" not in result["hyperparameter_source"]
        assert result["metrics"] == before[key][1]["metrics"]
    assert recompute_provenance(db, [sweep_file]).unchanged == 8  # idempotent


def test_without_the_sweep_file_what_was_set_is_inferred_from_the_configuration(tmp_path):
    configs = [resolve(model="er", buffer_size=20, lr=0.05, seed=2),
               resolve(model="sgd", dataset="seq-fmnist", gms=True, gms_mask_value=0.0)]
    db = tmp_path / "r.db"
    record_legacy_runs(db, configs)
    fix = recompute_provenance(db)
    assert (fix.from_sweep, fix.inferred) == (0, 2)
    results = {config["model"]: result for config, result in stored(db).values()}
    assert set(results["er"]["provenance"]["set"]) == {"model", "dataset", "buffer_size",
                                                       "lr", "seed"}
    assert results["er"]["hyperparameter_source"].endswith("; overridden: lr")
    assert set(results["sgd"]["provenance"]["set"]) == {"model", "dataset", "gms",
                                                        "gms_mask_value"}


@pytest.mark.parametrize("settings", [
    {"model": "derpp", "alpha": 0.5}, {"model": "xder", "gamma": 0.5, "dataset": "seq-cifar10"},
    {"model": "er", "dataset": "seq-cifar100", "lr_milestones": ()},
    {"model": "ss_replay", "buffer_size": 10, "class_order_seed": 7},
])
def test_the_minimal_request_resolves_to_the_stored_configuration(settings):
    config = resolve(settings)
    again = minimal_request(config.to_dict())
    assert again == config and again.hash == config.hash
    assert set(again.provenance.user_set) == set(settings) - {"dataset"} | {"model", "dataset"}
