"""Each method's step: what it trains on, what GMS masks, what the buffer keeps."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from replaymask.config import resolve
from replaymask.core.gms import gms_cross_entropy, live_classes, same_task_table
from replaymask.core.methods import declaration, method_class, method_names
from replaymask.core.methods.base import TaskData
from replaymask.core.networks import default_network
from replaymask.errors import ConfigError


def make(model, tiny, **settings):
    config = resolve(model=model, buffer_size=settings.pop("buffer_size", 50), **settings)
    torch.manual_seed(0)
    net = default_network(tiny)
    return method_class(model)(net, tiny.prepare, tiny.class_to_task, config)


def task_batch(tiny, task, size=10):
    index = tiny.task_indices("train", task)[:size]
    return tiny.train_inputs[index], tiny.train_labels[index]


def classifier_rows(method):
    return method.net.classifier.weight.detach().clone()


@pytest.mark.parametrize("model", method_names())
@pytest.mark.parametrize("gms", [False, True])
def test_every_method_takes_steps_and_returns_a_finite_detached_loss(model, tiny, gms):
    if gms and not declaration(model).gms.applies:
        with pytest.raises(ConfigError, match=f"--gms does not apply to {model}"):
            make(model, tiny, gms=gms)
        return
    method = make(model, tiny, gms=gms)
    for task in range(2):
        method.begin_task(task)
        for _ in range(3):
            loss = method.observe(*task_batch(tiny, task))
            assert loss.dim() == 0 and torch.isfinite(loss) and not loss.requires_grad
        method.end_task(task, TaskData(*task_batch(tiny, task)))


@pytest.mark.parametrize("mask_value", [float("-inf"), 0.0, "detach"])
def test_gms_fine_tuning_never_moves_other_tasks_class_weights(tiny, mask_value):
    method = make("sgd", tiny, gms=True, gms_mask_value=mask_value)
    before = classifier_rows(method)
    method.begin_task(1)
    method.observe(*task_batch(tiny, 1))
    changed = (classifier_rows(method) != before).any(1)
    assert changed.tolist() == [False, False, True, True] + [False] * 6


def test_plain_fine_tuning_pushes_down_old_class_logits(tiny):
    method = make("sgd", tiny)
    before = classifier_rows(method)
    method.begin_task(1)
    method.observe(*task_batch(tiny, 1))
    assert (classifier_rows(method) != before).any(1).all()


def fill_with_task0(method, tiny):
    method.begin_task(0)
    for _ in range(5):
        method.observe(*task_batch(tiny, 0))
    method.begin_task(1)


@pytest.mark.parametrize("model", ["er", "derpp", "er_ace"])
def test_replayed_samples_are_unmasked_by_default(model, tiny):
    method = make(model, tiny, gms=True)
    fill_with_task0(method, tiny)
    before = classifier_rows(method)
    method.observe(*task_batch(tiny, 1))
    changed = (classifier_rows(method) != before).any(1)
    # buffer holds task-0 samples: their plain CE moves every class's row
    assert changed.all()


def test_gms_on_buffer_masks_replayed_samples_to_their_own_task(tiny):
    method = make("er", tiny, gms=True, gms_on_buffer=True)
    fill_with_task0(method, tiny)
    before = classifier_rows(method)
    method.observe(*task_batch(tiny, 1))
    changed = (classifier_rows(method) != before).any(1)
    assert changed.tolist() == [True, True, True, True] + [False] * 6


def test_er_without_gms_is_one_cross_entropy_over_stream_and_replay(tiny):
    plain = make("er", tiny)
    masked_everything_live = make("er", tiny, gms=True)
    one_task = torch.zeros(10, dtype=torch.long)
    masked_everything_live.class_to_task = one_task
    masked_everything_live.live_by_class = same_task_table(one_task)  # every class live
    for method in (plain, masked_everything_live):
        fill_with_task0(method, tiny)
    losses = [m.observe(*task_batch(tiny, 1)) for m in (plain, masked_everything_live)]
    assert torch.allclose(losses[0], losses[1], atol=1e-6)


@pytest.mark.parametrize("mask_value", [float("-inf"), -2.0, 0.0, 5.0, "detach"])
@pytest.mark.parametrize("on_buffer", [False, True])
def test_er_with_gms_averages_the_masked_stream_and_the_replay_cross_entropies(
        tiny, mask_value, on_buffer):
    # one mask and one softmax over the concatenated batch: to the last bit, the mean of the
    # per-row losses of gms_cross_entropy on the stream rows and of the replay rows (masked
    # to their own task only with --gms-on-buffer)
    method = make("er", tiny, gms=True, gms_mask_value=mask_value, gms_on_buffer=on_buffer)
    torch.manual_seed(1)
    logits = torch.randn(20, 10, requires_grad=True)
    labels = torch.cat([task_batch(tiny, 2)[1], task_batch(tiny, 0)[1]])
    combined = method.stream_and_replay_loss(logits, labels, stream=10)
    stream = gms_cross_entropy(logits[:10], labels[:10],
                               live_classes(labels[:10], tiny.class_to_task), mask_value,
                               reduction="none")
    replay = (gms_cross_entropy(logits[10:], labels[10:],
                                live_classes(labels[10:], tiny.class_to_task), mask_value,
                                reduction="none")
              if on_buffer else F.cross_entropy(logits[10:], labels[10:], reduction="none"))
    reference = torch.cat([stream, replay]).mean()
    assert torch.equal(combined, reference)
    assert torch.equal(torch.autograd.grad(combined, logits)[0],
                       torch.autograd.grad(reference, logits)[0])


def test_the_mlp_forward_is_its_layers_applied_in_order(tiny):
    net = default_network(tiny)
    images = tiny.prepare(tiny.train_inputs[:7])
    assert torch.equal(net(images), net.classifier(net.features(images)))


def test_der_stores_the_raw_pre_step_stream_logits(tiny):
    method = make("der", tiny, gms=True, buffer_size=100)
    method.begin_task(0)
    images, labels = task_batch(tiny, 0)
    with torch.no_grad():
        expected = method.net(tiny.prepare(images))
    method.observe(images, labels)
    assert torch.allclose(method.buffer.logits[:10], expected, atol=1e-6)
    assert torch.isfinite(method.buffer.logits).all()  # never the masked (-inf) logits


def test_der_post_step_option_stores_logits_after_the_update(tiny):
    method = make("der", tiny, der_logits="post-step", buffer_size=100)
    method.begin_task(0)
    images, labels = task_batch(tiny, 0)
    method.observe(images, labels)
    with torch.no_grad():
        expected = method.net(tiny.prepare(images))
    assert torch.allclose(method.buffer.logits[:10], expected, atol=1e-6)


def test_derpp_uses_both_replay_terms(tiny):
    base = make("derpp", tiny, alpha=0.0, beta=0.0)
    weighted = make("derpp", tiny, alpha=1.0, beta=1.0)
    for method in (base, weighted):
        fill_with_task0(method, tiny)
    assert weighted.observe(*task_batch(tiny, 1)) > base.observe(*task_batch(tiny, 1))


def test_er_ace_masks_seen_classes_absent_from_the_stream_batch(tiny):
    method = make("er_ace", tiny, buffer_size=0)
    fill_with_task0(method, tiny)
    before = classifier_rows(method)
    method.observe(*task_batch(tiny, 1))
    changed = (classifier_rows(method) != before).any(1)
    assert changed[:2].tolist() == [False, False]  # task-0 classes are not pushed down
    assert changed[2:4].all()


def test_methods_without_a_buffer_never_store(tiny):
    for model in ("sgd", "joint"):
        method = make(model, tiny, buffer_size=200)
        fill_with_task0(method, tiny)
        assert method.buffer.is_empty()


def test_joint_restarts_from_a_fresh_network_at_each_task(tiny):
    method = make("joint", tiny)
    method.begin_task(0)
    method.observe(*task_batch(tiny, 0))
    assert method.net.classifier.bias.abs().sum() > 0  # trained
    method.begin_task(1)
    biases = [m.bias for m in method.net.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.all(b == 0) for b in biases)  # re-initialised: zero biases


def test_resolved_config_drives_the_method(tiny):
    config = resolve(model="derpp", buffer_size=200)
    assert (config.lr, config.minibatch_size) == (0.03, 128)
    assert dict(config.method_settings) == {"alpha": 0.2, "beta": 1.0, "der_logits": "stream"}
    method = method_class("derpp")(default_network(tiny), tiny.prepare, tiny.class_to_task,
                                   replace(config, minibatch_size=7))
    fill_with_task0(method, tiny)
    assert len(method.buffer.sample(method.config.minibatch_size).labels) == 7


def test_er_with_replay_over_earlier_classes_never_weighs_old_against_new(tiny):
    """The ablation of docs/study/plan.md section 7: a replayed row of an earlier task is
    scored over the earlier tasks' classes only, so its loss sends no gradient into the
    current task's logits; a replayed row of the current task is a stream row."""
    method = make("er", tiny, replay_classes="earlier")
    method.begin_task(2)
    logits = torch.randn(6, 10, requires_grad=True)
    targets = torch.tensor([4, 5, 0, 3, 4, 1])  # 2 stream rows, replayed: 0, 3, 4, 1
    method._earlier_classes_loss(logits, targets, stream=2).backward()
    old_rows = [2, 3, 5]  # replayed rows of tasks 0 and 1
    assert logits.grad[old_rows][:, 4:].abs().sum() == 0  # nothing into tasks 2..
    assert logits.grad[old_rows][:, :4].abs().sum() > 0
    full = F.cross_entropy(logits.detach()[[0, 1, 4]], targets[[0, 1, 4]], reduction="sum")
    old = F.cross_entropy(logits.detach()[old_rows][:, :4], targets[old_rows], reduction="sum")
    assert method._earlier_classes_loss(logits.detach(), targets, 2) == pytest.approx(
        ((full + old) / 6).item())
    assert "replay_classes" not in resolve(model="er").to_dict()  # the stored runs' form
    assert resolve(model="er", replay_classes="earlier").to_dict()["replay_classes"] == "earlier"
