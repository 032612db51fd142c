"""The stability instrumentation measures what GMS is about: no gradient into old logits."""

import json

import pytest

from replaymask import cli
from replaymask.config import resolve
from replaymask.core.training import train


def analysed(tiny, **settings):
    config = resolve(model="er", buffer_size=20, n_epochs=4, batch_size=5, **settings)
    return train(config, tiny, progress=False, analysis=True).analysis


def later_tasks(records, key):
    return [r[key] for r in records if r["task"] > 0]


def test_plain_softmax_pushes_old_logits_and_gms_does_not(tiny):
    plain, masked = analysed(tiny), analysed(tiny, gms=True)
    assert len(plain) > 4 and {r["task"] for r in plain} == set(range(5))
    assert max(later_tasks(plain, "grad_old")) > 0
    assert max(later_tasks(plain, "old_class_mass")) > 0
    assert all(v == 0 for v in later_tasks(masked, "grad_old"))
    assert all(v == 0 for v in later_tasks(masked, "grad_future"))
    assert all(v == 0 for v in later_tasks(masked, "old_class_mass"))  # hard masking


def test_finite_mask_value_leaves_a_fixed_mass_on_old_classes(tiny):
    records = analysed(tiny, gms=True, gms_mask_value=0.0)
    assert all(v == 0 for v in later_tasks(records, "grad_old"))
    assert all(v > 0 for v in later_tasks(records, "old_class_mass"))


def test_drift_is_measured_from_the_second_task_on(tiny):
    records = analysed(tiny)
    assert all(r["old_logit_drift"] is None for r in records if r["task"] == 0)
    assert all(r["old_logit_drift"] >= 0 for r in records if r["task"] > 0)


def test_analysis_does_not_change_the_training(tiny):
    config = resolve(model="derpp", buffer_size=20, n_epochs=2, gms=True)
    with_probe = train(config, tiny, progress=False, analysis=True)
    without = train(config, tiny, progress=False)
    assert with_probe.accuracy_matrix == without.accuracy_matrix
    assert "analysis" in with_probe.to_dict() and "analysis" not in without.to_dict()


def test_analyze_command_writes_json_a_table_and_a_figure(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = cli.main(["analyze", "--model", "er", "--buffer-size", "10", "--mask-values",
                     "none,-inf,0", "--data-root", str(mnist_like_root), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "analysis.json").read_text())
    assert set(data["runs"]) == {"plain softmax", "GMS m=-inf", "GMS m=0"}
    assert (out / "analysis.png").read_bytes()[:4] == b"\x89PNG"
    assert "plain softmax" in capsys.readouterr().out
    assert "| GMS m=-inf | 1 |" in (out / "analysis.md").read_text()


def test_analyze_over_seeds_gives_each_run_and_the_mean_with_its_interval(mnist_like_root,
                                                                          tmp_path, capsys):
    out = tmp_path / "analysis"
    code = cli.main(["analyze", "--model", "der", "--buffer-size", "10", "--seed", "0,1,2",
                     "--mask-values", "none,-inf", "--data-root", str(mnist_like_root),
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "analysis.json").read_text())
    runs = data["runs"]["GMS m=-inf"]
    assert sorted(runs) == ["0", "1", "2"]
    values = [run["class_il"] for run in runs.values()]
    mean, low, high = data["summary"]["GMS m=-inf"]["class_il"]
    assert mean == pytest.approx(sum(values) / 3) and low <= min(values) <= max(values) <= high
    for run in runs.values():
        confusion = run["task_confusion"]
        assert len(confusion) == 5 and all(sum(row) == pytest.approx(100) for row in confusion)
        summary = run["summary"]
        assert summary["into_later_task"] == pytest.approx(
            sum(sum(row[i + 1:]) for i, row in enumerate(confusion)) / 5)
    assert "| plain softmax | 3 |" in (out / "analysis.md").read_text()


def test_analyze_rejects_a_bad_seed_list(tmp_path, capsys):
    assert cli.main(["analyze", "--seed", "0,x", "--out", str(tmp_path / "a")]) == 2
    assert "--seed must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_the_task_confusion_rows_are_percentages_of_each_task_and_its_diagonal_is_right(tiny):
    config = resolve(model="er", buffer_size=20, n_epochs=4, batch_size=5)
    result = train(config, tiny, progress=False, analysis=True)
    confusion = result.task_confusion
    assert len(confusion) == 5 and all(sum(row) == pytest.approx(100) for row in confusion)
    # the last task's samples are mostly taken for their own task (recency)
    assert confusion[-1][-1] == max(confusion[-1])
    assert "task_confusion" in result.to_dict()


@pytest.mark.parametrize("values", ["none,nan", "banana"])
def test_analyze_rejects_bad_mask_values(values, tmp_path, capsys):
    assert cli.main(["analyze", "--mask-values", values, "--out", str(tmp_path / "a")]) == 2
    assert "--gms-mask-value must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_the_task_confusion_is_recorded_over_training(tiny):
    """Of the seen tasks' test samples: the percent taken for a later or an earlier task,
    at every record; nothing can be taken for another task while only one was seen."""
    records = analysed(tiny)
    assert all(r["test_into_later"] == r["test_into_earlier"] == 0
               for r in records if r["task"] == 0)
    for r in records:
        assert 0 <= r["test_into_later"] <= 100 and 0 <= r["test_into_earlier"] <= 100
    assert max(later_tasks(records, "test_into_later")) > 0  # plain ER's recency errors


def test_analyze_takes_other_settings_and_refuses_its_own(tmp_path, mnist_like_root, capsys):
    out = tmp_path / "analysis"
    code = cli.main(["analyze", "--model", "er", "--buffer-size", "20", "--seed", "0",
                     "--mask-values", "none", "--data-root", str(mnist_like_root), "--out",
                     str(out), "--setting", "replay_classes=earlier", "--setting",
                     "minibatch_size=32"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "analysis.json").read_text())["runs"]["plain softmax"]["0"][
        "config"]
    assert (config["replay_classes"], config["minibatch_size"]) == ("earlier", 32)
    assert cli.main(["analyze", "--setting", "seed=3", "--out", str(tmp_path / "x")]) == 2
    assert "analyze sets it itself" in capsys.readouterr().err
