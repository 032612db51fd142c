"""Separated-softmax replay (SS-IL's cross-entropy): new rows over the current task's
classes, old rows over the past tasks' classes, and what --gms changes."""

import json

import pytest
import torch
import torch.nn.functional as F

from replaymask import cli
from replaymask.config import resolve
from replaymask.core.gms import gms_cross_entropy
from replaymask.core.methods import declaration, method_class
from replaymask.core.methods.base import TaskData
from replaymask.core.networks import default_network


def make(tiny, **settings):
    config = resolve(model="ss_replay", buffer_size=settings.pop("buffer_size", 50),
                     **settings)
    torch.manual_seed(0)
    return method_class("ss_replay")(default_network(tiny), tiny.prepare, tiny.class_to_task,
                                     config)


def batch(tiny, task, size=10, start=0):
    index = tiny.task_indices("train", task)[start:start + size]
    return tiny.train_inputs[index], tiny.train_labels[index]


def after_task0(tiny, **settings):
    """A method that has trained on task 0 (its buffer holds task-0 items only) and begun
    task 1."""
    method = make(tiny, **settings)
    method.begin_task(0)
    for start in range(0, 60, 10):
        method.observe(*batch(tiny, 0, start=start))
    method.end_task(0, TaskData(*batch(tiny, 0, size=60)))
    method.begin_task(1)
    return method


def test_it_is_declared_in_its_file_and_uses_ers_best_arguments():
    method = declaration("ss_replay")
    assert (method.label, method.uses_buffer, method.settings) == ("SS replay", True, ())
    config = resolve(model="ss_replay", buffer_size=200)
    er = resolve(model="er", buffer_size=200)
    assert (config.lr, config.minibatch_size) == (er.lr, er.minibatch_size)
    assert "er, buffer 200" in config.provenance.best_args
    assert "ER's, used for ss_replay" in config.provenance.best_args


def test_the_loss_is_new_rows_over_new_classes_and_old_rows_over_old_classes(tiny):
    method = after_task0(tiny)
    images, labels = batch(tiny, 1)
    loss = method.observe(images, labels)
    twin = after_task0(tiny)  # the same step by hand: same network, same replay draw
    replay = twin.buffer.sample(twin.config.minibatch_size)
    assert (replay.labels < 2).all()  # task 0's classes
    logits = twin.net(torch.cat([twin.prepare(images), twin.prepare(replay.examples)]))
    stream = len(labels)
    new = F.cross_entropy(logits[:stream, 2:4], labels - 2, reduction="sum")
    old = F.cross_entropy(logits[stream:, :2], replay.labels, reduction="sum")
    assert torch.allclose(loss, (new + old) / len(logits))


def test_new_rows_send_no_gradient_to_other_tasks_and_old_rows_none_to_new_ones(tiny):
    method = after_task0(tiny)
    images, labels = batch(tiny, 1)
    replay = method.buffer.sample(10)
    logits = method.net(torch.cat([method.prepare(images), method.prepare(replay.examples)]))
    logits.retain_grad()
    targets = torch.cat([labels, replay.labels])
    gms_cross_entropy(logits, targets, method.separated(targets, len(labels))).backward()
    stream_grad, replay_grad = logits.grad[:len(labels)], logits.grad[len(labels):]
    assert stream_grad[:, :2].abs().sum() == 0 and stream_grad[:, 4:].abs().sum() == 0
    assert stream_grad[:, 2:4].abs().sum() > 0
    assert replay_grad[:, 2:].abs().sum() == 0 and replay_grad[:, :2].abs().sum() > 0


def test_a_replayed_row_of_the_current_task_counts_as_new(tiny):
    method = after_task0(tiny)
    labels = torch.tensor([2, 3, 0, 3])  # two stream rows, then a replayed old and new one
    live = method.separated(labels, stream=2)
    expected_new = [False, False, True, True, False, False, False, False, False, False]
    expected_old = [True, True] + [False] * 8
    assert live[0].tolist() == live[1].tolist() == live[3].tolist() == expected_new
    assert live[2].tolist() == expected_old


def test_gms_with_hard_masking_is_the_same_run_and_a_finite_m_is_not(tiny):
    plain = after_task0(tiny)
    hard = after_task0(tiny, gms=True)
    finite = after_task0(tiny, gms=True, gms_mask_value=0.0)
    images, labels = batch(tiny, 1)
    losses = [m.observe(images, labels) for m in (plain, hard, finite)]
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


def test_gms_on_buffer_separates_each_replayed_row_by_its_own_task(tiny):
    method = after_task0(tiny, gms=True, gms_on_buffer=True)
    method.begin_task(2)
    live = method.separated(torch.tensor([4, 0, 3]), stream=1)
    assert live[1].nonzero().squeeze(1).tolist() == [0, 1]  # task 0 only, not tasks 0..1
    assert live[2].nonzero().squeeze(1).tolist() == [2, 3]


def test_it_runs_end_to_end_from_the_command_line(mnist_like_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", "--model", "ss_replay", "--buffer-size", "20", "--gms",
                     "--gms-mask-value", "0", "--data-root", str(mnist_like_root),
                     "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["model"] == "ss_replay" and result["config"]["lr"] == 0.01
    assert len(result["accuracy_matrix"]["class_il"]) == 5


@pytest.mark.parametrize("gms", [False, True])
def test_a_whole_run_is_deterministic(tiny, gms):
    from replaymask.core.training import train

    config = resolve(model="ss_replay", buffer_size=20, n_epochs=2, gms=gms,
                     gms_mask_value=0.0)
    first, again = (train(config, tiny, progress=False) for _ in range(2))
    assert first.accuracy_matrix == again.accuracy_matrix
