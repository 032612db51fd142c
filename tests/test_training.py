"""The training loop end to end on a tiny benchmark: shape, protocol, determinism."""

import json

import pytest
import torch

from replaymask.config import resolve
from replaymask.core.methods.base import TaskData
from replaymask.core.networks import default_network
from replaymask.core.results import matrix_csv, write_result
from replaymask.core.training import DivergenceError, train


def run(tiny, **settings):
    return train(resolve(settings), tiny, progress=False)


def test_accuracy_matrices_are_lower_triangular_percentages(tiny):
    result = run(tiny, model="er", buffer_size=20)
    for setting in ("class_il", "task_il"):
        matrix = result.accuracy_matrix[setting]
        assert [len(row) for row in matrix] == [1, 2, 3, 4, 5]
        assert all(0 <= v <= 100 for row in matrix for v in row)
    assert result.metrics["class_il"]["average_accuracy"] == pytest.approx(
        sum(result.accuracy_matrix["class_il"][-1]) / 5)


def test_task_il_is_never_below_class_il(tiny):
    result = run(tiny, model="sgd", n_epochs=2)
    for class_row, task_row in zip(result.accuracy_matrix["class_il"],
                                   result.accuracy_matrix["task_il"], strict=True):
        assert all(t >= c for c, t in zip(class_row, task_row, strict=True))


def test_fine_tuning_forgets_and_joint_does_not(tiny):
    sgd = run(tiny, model="sgd", n_epochs=5, lr=0.1)
    joint = run(tiny, model="joint", n_epochs=5, lr=0.1)
    assert sgd.accuracy_matrix["class_il"][-1][0] < 10  # old task overwritten
    assert sgd.accuracy_matrix["class_il"][-1][-1] > 90
    assert joint.metrics["class_il"]["average_accuracy"] > 80


def test_same_config_and_seed_give_identical_results(tiny):
    first = run(tiny, model="derpp", buffer_size=20, seed=3, gms=True)
    second = run(tiny, model="derpp", buffer_size=20, seed=3, gms=True)
    assert first.accuracy_matrix == second.accuracy_matrix
    assert first.metrics == second.metrics
    other = run(tiny, model="derpp", buffer_size=20, seed=4, gms=True)
    assert other.accuracy_matrix != first.accuracy_matrix


def test_random_init_and_before_task_accuracies_feed_forward_transfer(tiny):
    result = run(tiny, model="er", buffer_size=20)
    random_init = result.random_init_accuracy["task_il"]
    before = result.before_task_accuracy["task_il"]
    assert len(random_init) == 5 and before[0] is None and len(before) == 5
    expected = sum(before[i] - random_init[i] for i in range(1, 5)) / 4
    assert result.metrics["task_il"]["fwt"] == pytest.approx(expected)


def test_a_diverging_run_stops_with_a_clear_error(tiny):
    with pytest.raises(DivergenceError, match="diverged"):
        run(tiny, model="sgd", lr=1e30)


def test_result_files_hold_config_matrices_and_metrics(tiny, tmp_path):
    result = run(tiny, model="er", buffer_size=10, gms=True)
    path = write_result(tmp_path / "out", result)
    data = json.loads(path.read_text())
    assert data["config"]["model"] == "er" and data["config"]["gms_mask_value"] == "-inf"
    assert data["config"]["lr"] == 0.01  # fully resolved
    for setting in ("class_il", "task_il"):
        assert len(data["accuracy_matrix"][setting]) == 5
        assert set(data["metrics"][setting]) >= {"average_accuracy", "forgetting", "bwt", "fwt"}
    assert data["wall_time_s"] > 0
    # where it ran: float results of CPU kernels differ between CPUs and instruction sets
    assert data["versions"]["cpu"]
    assert data["versions"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    csv_lines = (tmp_path / "out" / "accuracy_matrix.csv").read_text().splitlines()
    assert csv_lines[0] == "setting,after_task,task_1,task_2,task_3,task_4,task_5"
    assert len(csv_lines) == 11
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "accuracy_matrix.csv", "result.json"]  # no temporary files left behind


def test_matrix_csv_leaves_unseen_tasks_blank():
    text = matrix_csv({"class_il": [[50.0], [40.0, 90.0]]})
    assert text.splitlines()[1] == "class_il,1,50.00,"


def test_class_order_permutation_relabels_consistently(tiny):
    from replaymask.data.benchmarks import Benchmark
    order = (3, 7, 0, 1, 2, 4, 5, 6, 8, 9)
    relabel = torch.empty(10, dtype=torch.long)
    relabel[torch.tensor(order)] = torch.arange(10)
    fields = {k: getattr(tiny, k) for k in Benchmark.__dataclass_fields__}
    fields.update(train_labels=relabel[tiny.train_labels], test_labels=relabel[tiny.test_labels],
                  class_order=order)
    permuted = Benchmark(**fields)
    first_task = permuted.task_indices("train", 0)
    assert set(tiny.train_labels[first_task].tolist()) == {3, 7}


@pytest.mark.parametrize("model", ["derpp", "xder"])
def test_a_vision_run_with_augmentation_is_deterministic_for_a_seed(tiny_vision, model):
    settings = dict(model=model, dataset="seq-cifar10", buffer_size=10, n_epochs=1,
                    batch_size=8, minibatch_size=8)
    if model == "xder":
        settings["simclr_batch_size"] = 4
    first, second = run(tiny_vision, **settings), run(tiny_vision, **settings)
    assert first.accuracy_matrix == second.accuracy_matrix
    other_seed = run(tiny_vision, **settings, seed=1)
    assert other_seed.accuracy_matrix != first.accuracy_matrix


def test_bf16_autocast_and_channels_last_train_and_store_float32_logits(tiny_vision):
    config = resolve(model="derpp", dataset="seq-cifar10", buffer_size=10, n_epochs=1,
                     batch_size=8, minibatch_size=8, precision="bf16", channels_last=True)
    result = train(config, tiny_vision, progress=False)
    assert all(0 <= v <= 100 for row in result.accuracy_matrix["class_il"] for v in row)
    assert result.config.to_dict()["precision"] == "bf16"


def test_the_learning_rate_drops_tenfold_at_each_milestone_within_a_task():
    from replaymask.core.training import learning_rate

    config = resolve(model="er", dataset="seq-cifar100", buffer_size=500)
    assert config.lr_milestones == (35, 45)
    rates = [learning_rate(config, epoch) for epoch in (0, 34, 35, 44, 45, 49)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    plain = resolve(model="er", dataset="seq-cifar10")
    assert plain.lr_milestones == () and learning_rate(plain, 49) == plain.lr


def test_the_scheduled_rate_is_what_the_optimizer_uses(tiny, monkeypatch):
    seen = []
    from replaymask.core.methods.base import PlainSGD

    original = PlainSGD.step
    def spy(self):
        seen.append(self.lr)
        return original(self)
    monkeypatch.setattr(PlainSGD, "step", spy)
    run(tiny, model="sgd", n_epochs=3, lr=0.5, lr_milestones=(1, 2), batch_size=300)
    assert sorted(set(seen), reverse=True) == pytest.approx([0.5, 0.05, 0.005])


def test_compile_option_compiles_the_backbone_used_for_training_and_evaluation(tiny,
                                                                              monkeypatch):
    compiled = []

    def fake_compile(module, **kwargs):  # the real one needs a C++ toolchain and minutes
        compiled.append(module)
        return module
    monkeypatch.setattr(torch, "compile", fake_compile)
    result = run(tiny, model="er", buffer_size=20, compile=True)
    assert len(compiled) == 1 and result.config.compile is True
    assert result.config.to_dict()["compile"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["er", "der", "derpp", "er_ace", "xder"])
def test_training_steps_never_wait_for_the_gpu(tiny_vision, model):
    from replaymask.core.methods import method_class

    settings = {"simclr_batch_size": 4} if model == "xder" else {}
    config = resolve(model=model, dataset="seq-cifar10", buffer_size=20, batch_size=8,
                     minibatch_size=8, device="cuda", gms=True, **settings)
    data = tiny_vision.to("cuda")
    transform = data.train_transform(torch.Generator(device="cuda").manual_seed(0))
    method = method_class(model)(default_network(data).cuda(), transform,
                                   data.class_to_task.cuda(), config)
    index = data.task_indices("train", 1)
    images, labels = data.train_inputs[index], data.train_labels[index]
    method.begin_task(0)
    method.end_task(0, TaskData(data.train_inputs[data.task_indices("train", 0)],
                                data.train_labels[data.task_indices("train", 0)]))
    method.begin_task(1)
    method.observe(images[:8], labels[:8])  # warm-up: lazy allocations may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for first in range(0, 16, 8):
            method.observe(images[first:first + 8], labels[first:first + 8])
    finally:
        torch.cuda.set_sync_debug_mode("default")
