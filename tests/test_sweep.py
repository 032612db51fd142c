"""Sweeps: grid expansion, resumption, failures, and the sweep file's bad inputs."""

import json

import pytest

from replaymask import cli
from replaymask.config import resolve
from replaymask.experiments import sweep
from replaymask.experiments.store import ResultsStore
from replaymask.experiments.sweep import SweepError, load_sweep, run_sweep


def write(tmp_path, text, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lists_expand_to_every_combination(tmp_path):
    configs = load_sweep(write(tmp_path, """
model: [er, derpp]
buffer-size: [20, 50]
seed: [0, 1, 2]
gms: true
gms_mask_value: [-inf, 0, detach]
"""))
    assert len(configs) == 2 * 2 * 3 * 3
    assert {c.gms_mask_value for c in configs} == {float("-inf"), 0.0, "detach"}
    assert all(c.lr is not None for c in configs)  # resolved


def test_grids_unite_and_equal_runs_count_once(tmp_path):
    configs = load_sweep(write(tmp_path, """
grids:
  - {model: sgd, buffer_size: [0, 200], seed: [0, 1]}   # sgd ignores the buffer
  - {model: er, buffer_size: 200, seed: [0, 1], gms: false, gms_mask_value: [-inf, 0]}
"""))
    assert [(c.model, c.buffer_size, c.seed) for c in configs] == [
        ("sgd", 0, 0), ("sgd", 0, 1), ("er", 200, 0), ("er", 200, 1)]


def test_config_hash_is_stable_and_distinguishes_runs(tmp_path):
    first = load_sweep(write(tmp_path, "model: er\nseed: [0, 1]\n"))
    again = load_sweep(write(tmp_path, "seed: [0, 1]\nmodel: er\n", "other.yaml"))
    assert [c.hash for c in first] == [c.hash for c in again]
    assert first[0].hash != first[1].hash


@pytest.mark.parametrize("text, message", [
    ("model: [er\n", "not valid YAML"),
    ("modle: er\n", "unknown key 'modle'"),
    ("model: er\nseed: []\n", "empty list"),
    ("", "non-empty mapping"),
    ("- 1\n- 2\n", "non-empty mapping"),
    ("grids: []\n", "non-empty list"),
    ("model: er\nbuffer_size: -3\n", "--buffer-size must be an integer >= 0"),
    ("model: er\nlr: {a: 1}\n", "must hold a value"),
    ("model: er\ngms: true\ngms_mask_value: nan\n", "--gms-mask-value must be"),
    ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
])
def test_bad_sweep_files_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(SweepError, match=message):
        load_sweep(write(tmp_path, text))


def test_cli_bad_sweep_is_exit_2_and_the_database_untouched(tmp_path, capsys):
    db = tmp_path / "r.db"
    code = cli.main(["sweep", str(write(tmp_path, "modle: er\n")), "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown key" in err
    assert not db.exists()


def test_cli_refuses_a_database_that_is_not_ours(tmp_path, capsys):
    db = tmp_path / "r.db"
    db.write_text("not a database")
    code = cli.main(["sweep", str(write(tmp_path, "model: er\n")), "--db", str(db)])
    assert code == 2 and "not a usable replaymask results database" in capsys.readouterr().err
    assert db.read_text() == "not a database"


SMALL = """
dataset: seq-mnist
model: [sgd, er]
buffer_size: 10
seed: [0, 1]
n_epochs: 1
"""


def test_sweep_runs_resumes_and_records_each_run_once(tmp_path, mnist_like_root, capsys):
    sweep_file, db = write(tmp_path, SMALL), tmp_path / "r.db"
    args = ["sweep", str(sweep_file), "--db", str(db), "--workers", "2", "--data-root",
            str(mnist_like_root), "--no-progress"]
    assert cli.main(args) == 0
    assert "4 run now (0 failed)" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert "4 already done, 0 run now" in capsys.readouterr().out
    rows = ResultsStore(db).runs()
    assert len(rows) == 4 and all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
    assert {json.dumps(r["config"], sort_keys=True) for r in rows} == {
        json.dumps(c.to_dict(), sort_keys=True) for c in load_sweep(sweep_file)}


def test_failed_runs_are_recorded_and_rerun_only_on_request(tmp_path, mnist_like_root,
                                                            monkeypatch):
    configs = load_sweep(write(tmp_path, "model: sgd\nseed: [0, 1]\nlr: 1.0e+30\n"))
    store = ResultsStore(tmp_path / "r.db")
    summary = run_sweep(configs, store, workers=1, data_root=str(mnist_like_root),
                        progress=False)
    assert summary.failed == 2
    assert all("DivergenceError" in r["error"] for r in store.runs("failed"))
    again = run_sweep(configs, store, workers=1, data_root=str(mnist_like_root), progress=False)
    assert again.ran == 0 and again.skipped_failed == 2
    retried = run_sweep(configs, store, workers=1, retry_failed=True,
                        data_root=str(mnist_like_root), progress=False)
    assert retried.ran == 2
    assert all(r["attempts"] == 2 for r in store.runs())


def test_runs_and_report_commands(tmp_path, mnist_like_root, capsys):
    db = tmp_path / "r.db"
    store = ResultsStore(db)
    configs = load_sweep(write(tmp_path, SMALL + "gms: [false, true]\n"))
    run_sweep(configs, store, workers=2, data_root=str(mnist_like_root), progress=False)
    capsys.readouterr()
    assert cli.main(["runs", "--db", str(db), "--model", "er"]) == 0
    listing = capsys.readouterr().out
    assert listing.strip().endswith("4 runs") and "seq-mnist" in listing
    out = tmp_path / "report"
    assert cli.main(["report", "--db", str(db), "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
    assert "| SGD + GMS (m=-inf) |" in table and "(n=2)" in table
    assert "GMS (m=-inf) minus no GMS, class-il points (mean over pairs" in table
    assert "## Paired differences to the same method without GMS" in table
    assert (out / "report.csv").read_text().startswith("method,dataset,buffer_size,seeds")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["seq-mnist_accuracy_matrices.png", "seq-mnist_accuracy_per_task.png",
                    "seq-mnist_accuracy_vs_buffer.png", "seq-mnist_stability_plasticity.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_report_on_a_missing_database_is_exit_2(tmp_path, capsys):
    assert cli.main(["report", "--db", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_worker_errors_name_the_exception(mnist_like_root):
    resolved = resolve(model="sgd", lr=1e30)
    result, error = sweep.execute_run(resolved, str(mnist_like_root))
    assert result is None and error.startswith("DivergenceError: training diverged")


def test_lr_milestones_take_a_list_as_one_value_and_a_list_of_lists_as_an_axis(tmp_path):
    one = load_sweep(write(tmp_path, "model: er\ndataset: seq-cifar100\nlr_milestones: [20, 30]\n"))
    assert [c.lr_milestones for c in one] == [(20, 30)]
    axis = load_sweep(write(tmp_path, "model: er\ndataset: seq-cifar100\n"
                                      "lr_milestones: [[], [35, 45], [10]]\n", name="b.yaml"))
    assert sorted(c.lr_milestones for c in axis) == [(), (10,), (35, 45)]
    with pytest.raises(SweepError, match="integer epochs"):
        load_sweep(write(tmp_path, "lr_milestones: [a, 3]\n", name="c.yaml"))
