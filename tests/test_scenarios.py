"""Scenarios beyond the protocol's split: other task counts (``--n-tasks``) and a
validation split of the training data (``--validation-fraction``) for selecting
hyper-parameters without looking at the test set."""

import torch

from replaymask import api
from replaymask.config import resolve
from replaymask.core.gms import gms_cross_entropy
from replaymask.data.benchmarks import hold_out_validation, load_benchmark


def test_the_protocol_split_keeps_every_earlier_hash():
    """Runs stored before these settings existed keep their keys in the database."""
    plain = resolve(model="er", buffer_size=200)
    assert resolve(model="er", buffer_size=200, n_tasks=5, validation_fraction=0).hash \
        == plain.hash
    assert "n_tasks" not in plain.to_dict() and "validation_fraction" not in plain.to_dict()
    other = resolve(model="er", buffer_size=200, n_tasks=10)
    assert other.hash != plain.hash and other.to_dict()["n_tasks"] == 10
    assert resolve(other.to_dict()) == other


def test_n_tasks_splits_the_classes_into_that_many_tasks_of_consecutive_labels(
        mnist_like_root):
    for n_tasks, per_task in ((10, 1), (2, 5)):
        benchmark = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False,
                                   n_tasks=n_tasks)
        assert (benchmark.n_tasks, benchmark.classes_per_task) == (n_tasks, per_task)
        assert benchmark.class_to_task.tolist() == [c // per_task for c in range(10)]
        seen = [set(benchmark.train_labels[benchmark.task_indices("train", t)].tolist())
                for t in range(n_tasks)]
        assert seen == [set(range(t * per_task, (t + 1) * per_task)) for t in range(n_tasks)]


def test_a_ten_task_run_has_a_ten_by_ten_accuracy_matrix(mnist_like_root):
    config = resolve(model="er", buffer_size=20, n_tasks=10, gms=True, gms_mask_value=0.0)
    result = api.run_config(config, data_root=mnist_like_root, download=False,
                            progress=False)
    class_il = result.accuracy_matrix["class_il"]
    assert len(class_il) == 10 and all(len(row) == i + 1 for i, row in enumerate(class_il))
    # one class per task: within its own task every sample is right
    assert result.accuracy_matrix["task_il"][-1] == [100.0] * 10


def test_with_one_live_class_hard_masking_gives_the_stream_no_gradient_and_a_finite_m_does():
    """The case of 10 tasks of 1 class: m = -inf leaves a single live logit, whose softmax
    probability is 1, so the stream loss and its gradient vanish; a finite m keeps the
    masked classes' mass in the denominator and the live logit is still pulled up."""
    logits = torch.randn(4, 10, requires_grad=True)
    targets = torch.tensor([3, 3, 3, 3])
    live = torch.nn.functional.one_hot(targets, 10).bool()
    hard = gms_cross_entropy(logits, targets, live, float("-inf"))
    (gradient,) = torch.autograd.grad(hard, logits)
    assert hard.item() == 0 and not gradient.any()
    finite = gms_cross_entropy(logits, targets, live, 0.0)
    (gradient,) = torch.autograd.grad(finite, logits)
    assert finite.item() > 0 and (gradient[:, 3] < 0).all()
    assert not gradient[:, [c for c in range(10) if c != 3]].any()  # masked: no gradient


def test_the_validation_split_is_stratified_disjoint_and_the_same_for_every_run():
    labels = torch.arange(10).repeat_interleave(50)[torch.randperm(500)]
    kept, held = hold_out_validation(labels, 0.1)
    assert torch.cat([kept, held]).sort().values.tolist() == list(range(500))
    assert torch.bincount(labels[held], minlength=10).tolist() == [5] * 10
    again_kept, again_held = hold_out_validation(labels, 0.1)
    assert torch.equal(held, again_held) and torch.equal(kept, again_kept)
    assert kept.tolist() == sorted(kept.tolist())  # original order: the seed shuffles


def test_a_validation_run_is_evaluated_on_held_out_training_images_not_the_test_set(
        mnist_like_root):
    full = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False)
    split = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False,
                           validation_fraction=0.2)
    assert len(split.train_labels) == 240 and len(split.test_labels) == 60  # 30 a class
    train_rows = {bytes(image.numpy()) for image in full.train_inputs}
    test_rows = {bytes(image.numpy()) for image in full.test_inputs}
    held_out = {bytes(image.numpy()) for image in split.test_inputs}
    assert held_out <= train_rows and not held_out & test_rows
    assert not held_out & {bytes(image.numpy()) for image in split.train_inputs}
    assert "validation split" in split.source
    # the same images whatever the class order: only their labels are renumbered
    reordered = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False,
                               validation_fraction=0.2, class_order_seed=3)
    assert {bytes(image.numpy()) for image in reordered.test_inputs} == held_out

    config = resolve(model="er", buffer_size=20, validation_fraction=0.2)
    result = api.run_config(config, data_root=mnist_like_root, download=False,
                            progress=False)
    assert result.to_dict()["config"]["validation_fraction"] == 0.2
    assert "validation split" in result.to_dict()["benchmark"]["source"]
