"""End to end on the real benchmarks, where the offline data sources are installed."""

import json
from pathlib import Path

from replaymask import cli


def test_er_on_real_seq_mnist_matches_the_published_range(tmp_path, real_mnist):
    out = tmp_path / "er"
    assert cli.main(["run", "--model", "er", "--buffer-size", "200", "--seed", "0",
                     "--no-download", "--no-progress", "--out", str(out)]) == 0
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    # DER paper: ER, buffer 200: 80.43 Class-IL, 97.86 Task-IL (mean of 10 seeds)
    assert 74 < metrics["class_il"]["average_accuracy"] < 87
    assert metrics["task_il"]["average_accuracy"] > 95


def test_fine_tuning_on_real_seq_fmnist_forgets_and_gms_reduces_it(tmp_path,
                                                                   real_fashion_mnist):
    results = {}
    for name, extra in (("sgd", []), ("sgd-gms", ["--gms"])):
        out = tmp_path / name
        assert cli.main(["run", "--model", "sgd", "--dataset", "seq-fmnist", "--no-download",
                         "--no-progress", "--out", str(out), *extra]) == 0
        results[name] = json.loads(Path(out / "result.json").read_text())["metrics"]["class_il"]
    assert results["sgd"]["average_accuracy"] < 25  # only the last task survives
    assert results["sgd-gms"]["forgetting"] < results["sgd"]["forgetting"]
