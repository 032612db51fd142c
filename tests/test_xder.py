"""X-DER: its losses, its logit transplant, its class-balanced memory, and the GMS switch."""

import math

import pytest
import torch
import torch.nn.functional as F

from replaymask.config import resolve
from replaymask.core.backbones import ResNet18, frozen_batchnorm_stats
from replaymask.core.contrastive import supervised_contrastive_loss
from replaymask.core.methods import method_class
from replaymask.core.methods.base import TaskData
from replaymask.core.methods.xder import transplant_logits
from replaymask.core.networks import default_network


def make_xder(benchmark, **settings):
    config = resolve(model="xder", dataset="seq-cifar10",
                     buffer_size=settings.pop("buffer_size", 20), batch_size=8,
                     minibatch_size=8, simclr_batch_size=4, **settings)
    torch.manual_seed(0)
    transform = benchmark.train_transform(torch.Generator().manual_seed(1))
    return method_class("xder")(default_network(benchmark), transform,
                                benchmark.class_to_task, config)


def task_data(benchmark, task):
    index = benchmark.task_indices("train", task)
    return benchmark.train_inputs[index], benchmark.train_labels[index]


def supcon_by_definition(features, labels, temperature):
    """One anchor at a time: -mean over positives of log softmax over all other views."""
    n, views, _ = features.shape
    flat = [(features[i, v], labels[i]) for v in range(views) for i in range(n)]
    losses = torch.zeros(views, n)
    for a, (anchor, label) in enumerate(flat):
        others = [b for b in range(len(flat)) if b != a]
        denominator = torch.logsumexp(torch.stack([anchor @ flat[b][0] / temperature
                                                   for b in others]), 0)
        positives = [b for b in others if flat[b][1] == label]
        losses[a // n, a % n] = -torch.stack([anchor @ flat[p][0] / temperature - denominator
                                              for p in positives]).mean()
    return losses.mean(0)


def test_supervised_contrastive_loss_matches_its_definition_and_batches_over_heads():
    features = F.normalize(torch.randn(3, 5, 2, 4), dim=-1)  # 3 heads, 5 samples, 2 views
    labels = torch.tensor([0, 1, 0, 2, 1])
    batched = supervised_contrastive_loss(features, labels, temperature=0.5)
    assert batched.shape == (3, 5)
    for head in range(3):
        torch.testing.assert_close(batched[head],
                                   supcon_by_definition(features[head], labels, 0.5))


def test_transplant_replaces_the_chosen_heads_and_caps_them_below_gamma_times_the_truth():
    stored = torch.tensor([[4.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                           [4.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    outputs = torch.tensor([[9.0, 9.0, 1.0, 8.0, 2.0, 3.0],
                            [9.0, 9.0, 1.0, 2.0, 2.0, 3.0]])
    result = transplant_logits(stored, outputs, torch.tensor([0, 0]), first_head=1, n_heads=2,
                               per_task=2, gamma=0.85)
    assert torch.equal(result[:, :2], stored[:, :2])  # head 0 untouched
    torch.testing.assert_close(result[0, 2:].max(), torch.tensor(0.85 * 4.0))  # 8 > 4: scaled
    torch.testing.assert_close(result[0, 2:], outputs[0, 2:] * 0.85 * 4.0 / 8.0)
    assert torch.equal(result[1, 2:], outputs[1, 2:])  # max 3 < 4: taken as is
    assert torch.equal(stored[0], torch.tensor([4.0, 1.0, 0.0, 0.0, 0.0, 0.0]))  # not in place


def test_stream_loss_is_cross_entropy_over_the_current_head_and_equals_gms_minus_inf(
        tiny_vision):
    plain = make_xder(tiny_vision)
    masked = make_xder(tiny_vision, gms=True)
    for method in (plain, masked):
        method.begin_task(2)
    logits = torch.randn(6, 10, requires_grad=True)
    labels = torch.tensor([4, 5, 4, 5, 5, 4])
    expected = F.cross_entropy(logits[:, 4:6], labels - 4)
    torch.testing.assert_close(plain.stream_loss(logits, labels), expected)
    torch.testing.assert_close(masked.stream_loss(logits, labels), expected)
    finite = make_xder(tiny_vision, gms=True, gms_mask_value=0.0)
    finite.begin_task(2)
    assert not torch.allclose(finite.stream_loss(logits, labels), expected)


def test_replay_cross_entropy_covers_the_past_heads_only(tiny_vision):
    method = make_xder(tiny_vision)
    method.begin_task(2)
    logits = torch.randn(4, 10)
    labels = torch.tensor([0, 3, 1, 2])
    torch.testing.assert_close(method.replay_loss(logits, labels),
                               F.cross_entropy(logits[:, :4], labels))


def test_the_memory_is_filled_class_balanced_at_the_end_of_each_task(tiny_vision):
    method = make_xder(tiny_vision, buffer_size=12)
    method.begin_task(0)
    method.end_task(0, TaskData(*task_data(tiny_vision, 0)))
    assert torch.bincount(method.buffer.labels[:len(method.buffer)]).tolist() == [6, 6]
    method.begin_task(1)
    method.end_task(1, TaskData(*task_data(tiny_vision, 1)))
    labels = method.buffer.labels[:len(method.buffer)]
    assert torch.bincount(labels, minlength=4).tolist() == [3, 3, 3, 3]  # 12 // 4 each
    method.begin_task(2)
    method.end_task(2, TaskData(*task_data(tiny_vision, 2)))
    counts = torch.bincount(method.buffer.labels[:len(method.buffer)], minlength=6).tolist()
    assert counts[:4] == [2, 2, 2, 2] and sorted(counts[4:]) == [2, 2]


def test_end_task_refreshes_the_future_heads_of_past_items_and_keeps_their_past_heads(
        tiny_vision):
    method = make_xder(tiny_vision, buffer_size=8)
    method.begin_task(0)
    method.end_task(0, TaskData(*task_data(tiny_vision, 0)))
    count = len(method.buffer)
    order = torch.sort(method.buffer.labels[:count], stable=True).indices
    # the reduction keeps each class's first items (2 of 4 per class now), in class order
    kept = torch.cat([order[:2], order[4:6]])
    old_rows = method.buffer.logits[kept].clone()
    with torch.no_grad():  # change the network so that fresh logits differ
        method.net.classifier.bias.add_(1.0)
    method.begin_task(1)
    method.end_task(1, TaskData(*task_data(tiny_vision, 1)))
    count = len(method.buffer)
    past = method.buffer.labels[:count] < 2
    assert past.sum() == 4 and (method.buffer.task_ids[:count][past] == 1).all()
    after = method.buffer.logits[:count][past]
    assert torch.equal(after[:, :2], old_rows[:, :2])
    assert not torch.allclose(after[:, 2:], old_rows[:, 2:])


def test_a_slot_drawn_twice_in_one_step_is_counted_once(tiny_vision):
    method = make_xder(tiny_vision, buffer_size=4)
    method.begin_task(0)
    method.end_task(0, TaskData(*task_data(tiny_vision, 0)))
    method.begin_task(1)
    images, labels = task_data(tiny_vision, 1)
    method.observe(images[:8], labels[:8])  # two draws of 4 from 4 items: every slot twice
    assert torch.equal(method.update_counter, torch.ones(4))


def test_training_steps_are_finite_in_every_task_and_with_every_option(tiny_vision):
    for settings in ({}, {"gms": True, "gms_mask_value": 0.0, "gms_on_buffer": True},
                     {"past_constraint": True}):
        method = make_xder(tiny_vision, **settings)
        for task in range(5):
            method.begin_task(task)
            images, labels = task_data(tiny_vision, task)
            for first in range(0, 16, 8):
                loss = method.observe(images[first:first + 8], labels[first:first + 8])
                assert math.isfinite(loss.item())
            method.end_task(task, TaskData(images, labels))


def test_frozen_batchnorm_stats_leave_running_statistics_untouched():
    net = ResNet18(num_classes=4, base_filters=8)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    with frozen_batchnorm_stats(net):
        net(torch.randn(4, 3, 8, 8) * 5 + 3)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    net(torch.randn(4, 3, 8, 8) * 5 + 3)
    assert not torch.equal(before["stem.1.running_mean"], net.state_dict()["stem.1.running_mean"])


def test_resnet18_has_the_reference_size_and_works_at_32_and_64_pixels():
    net = ResNet18(num_classes=10)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("dataset,buffer,expected", [
    ("seq-cifar100", 500, dict(lr=0.03, alpha=0.3, beta=0.8, constr_eta=0.001,
                               constr_margin=0.7)),
    ("seq-cifar100", 2000, dict(alpha=0.6, beta=0.9, constr_eta=0.01, constr_margin=0.2)),
    ("seq-cifar10", 200, dict(lr=0.03, alpha=0.3, gamma=0.85, lambd=0.05, simclr_num_aug=2)),
])
def test_xder_defaults_come_from_mammoths_seq_cifar100_table(dataset, buffer, expected):
    config = resolve(model="xder", dataset=dataset, buffer_size=buffer)
    values = {"lr": config.lr, **config.method_settings}
    assert {k: values[k] for k in expected} == expected
    assert "seq-cifar100" in config.provenance.summary()
    assert "gamma" not in resolve(model="derpp", dataset=dataset).method_settings
