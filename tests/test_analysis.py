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


def test_analyze_command_writes_json_and_a_figure(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "analysis"
    code = cli.main(["analyze", "--model", "er", "--buffer-size", "10", "--mask-values",
                     "none,-inf,0", "--data-root", str(mnist_like_root), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "analysis.json").read_text())
    assert set(data["records"]) == {"plain softmax", "GMS m=-inf", "GMS m=0"}
    assert (out / "analysis.png").read_bytes()[:4] == b"\x89PNG"
    assert "plain softmax" in capsys.readouterr().out


@pytest.mark.parametrize("values", ["none,nan", "banana"])
def test_analyze_rejects_bad_mask_values(values, tmp_path, capsys):
    assert cli.main(["analyze", "--mask-values", values, "--out", str(tmp_path / "a")]) == 2
    assert "--gms-mask-value must be" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
