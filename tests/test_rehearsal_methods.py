"""The rehearsal family on the method hooks: A-GEM, GEM, GDumb, iCaRL and LODE, each
checked against its definition, and the hooks the training loop calls."""

import copy
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from replaymask.config import resolve
from replaymask.core import training
from replaymask.core.buffer import ClassBalancedBuffer, herding
from replaymask.core.methods import declaration, method_class
from replaymask.core.methods.base import TaskData
from replaymask.core.methods.gdumb import fitting_rate
from replaymask.core.methods.gem import project_to_cone
from replaymask.core.methods.gradients import backward_into, flat_gradient, gradient_views
from replaymask.core.methods.sgd import SGD
from replaymask.core.networks import default_network
from replaymask.errors import ConfigError


def make(model, tiny, **settings):
    config = resolve(model=model, buffer_size=settings.pop("buffer_size", 20), **settings)
    torch.manual_seed(0)
    return method_class(model)(default_network(tiny), tiny.prepare, tiny.class_to_task, config)


def task_data(tiny, task, size=None):
    index = tiny.task_indices("train", task)[:size]
    return TaskData(tiny.train_inputs[index], tiny.train_labels[index])


def train_task(method, tiny, task, steps=3):
    method.begin_task(task)
    data = task_data(tiny, task)
    for step in range(steps):
        method.observe(data.inputs[10 * step:10 * step + 10], data.labels[10 * step:10 * step + 10])
    method.end_task(task, data)


def gradient_of(method, loss_of_net):
    """The flat gradient of loss_of_net(net) at the method's current weights (on a copy)."""
    net = copy.deepcopy(method.net)
    loss_of_net(net).backward()
    return flat_gradient([p for p in net.parameters() if p.requires_grad])


def weights(method):
    return torch.cat([p.detach().reshape(-1).clone() for p in method.optimizer.params])


# A-GEM

def test_agem_projects_a_conflicting_gradient_so_the_update_never_raises_the_replay_loss(tiny):
    method = make("agem", tiny, lr=0.1, minibatch_size=20, agem_memory="balanced")
    train_task(method, tiny, 0)
    method.begin_task(1)
    count = len(method.buffer)  # the whole memory is one replay batch: its order is moot
    assert count == 20
    memory = (method.buffer.examples[:count], method.buffer.labels[:count])
    conflicts = 0
    for inputs, labels in zip(*(t.split(10) for t in task_data(tiny, 1, 60).__dict__.values()),
                              strict=True):
        reference = gradient_of(method, lambda net: F.cross_entropy(
            net(tiny.prepare(memory[0])), memory[1]))
        stream = gradient_of(method, lambda net, x=inputs, y=labels: F.cross_entropy(
            net(tiny.prepare(x)), y))
        before = weights(method)
        method.observe(inputs, labels)
        applied = (before - weights(method)) / 0.1
        assert applied @ reference >= -1e-4 * reference.norm() * applied.norm()
        if stream @ reference < 0:
            conflicts += 1
            expected = stream - (stream @ reference) / (reference @ reference) * reference
            assert torch.allclose(applied, expected, atol=1e-5)
        else:
            assert torch.allclose(applied, stream, atol=1e-5)
    assert conflicts > 0  # the test saw a projection


def test_backward_into_a_row_gives_the_flat_gradient_to_the_last_bit():
    """GEM and A-GEM write each gradient into a row of their matrix through the parameters'
    .grad (views of the row, the backward pass adding onto zeros) instead of
    concatenating fresh gradients: the same numbers, zeros for a parameter the loss does
    not reach, whatever the row held before, and the .grad left as views of the row."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    unused = torch.nn.Parameter(torch.randn(4))
    params = [*net.parameters(), unused]
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    expected = flat_gradient(params, torch.autograd.grad(
        F.cross_entropy(net(x), y), params, allow_unused=True))
    row = torch.full((sum(p.numel() for p in params),), float("nan"))
    views = gradient_views(params, row)
    for _ in range(2):  # a second pass onto the gradients the first left
        backward_into(F.cross_entropy(net(x), y), params, row, views)
        assert torch.equal(row, expected)
    assert not row[-4:].any()  # the parameter the loss does not reach
    assert all(p.grad.data_ptr() == view.data_ptr() for p, view in zip(params, views, strict=True))


def test_agem_chooses_on_the_device_as_in_python_to_the_last_bit(tiny, monkeypatch):
    from replaymask.core.methods import agem

    trained, projected, project = [], [], agem.projection
    monkeypatch.setattr(agem, "projection",
                        lambda *a, **k: projected.append(1) or project(*a, **k))
    for on_device in (False, True):  # an accelerator's path, taken here on the CPU
        monkeypatch.setattr(agem, "select_on_device", lambda tensor, chosen=on_device: chosen)
        method = make("agem", tiny, lr=0.1, minibatch_size=20, agem_memory="balanced")
        for task in range(3):
            train_task(method, tiny, task, steps=6)
        trained.append(weights(method))
        if not on_device:
            assert projected  # the Python path projected at least once
    assert torch.equal(*trained)


def test_agem_memories_balanced_by_class_a_share_per_task_or_one_batch_per_task(tiny):
    balanced = make("agem", tiny, buffer_size=20, agem_memory="balanced")
    per_task = make("agem", tiny, buffer_size=20, agem_memory="per_task")
    batch = make("agem", tiny, buffer_size=20, agem_memory="batch", batch_size=4)
    assert resolve(model="agem", buffer_size=200).method_settings.agem_memory == "per_task"
    for task in range(2):
        for method in (balanced, per_task, batch):
            train_task(method, tiny, task)
    labels = balanced.buffer.labels[:len(balanced.buffer)]
    assert torch.bincount(labels, minlength=4)[:4].tolist() == [5, 5, 5, 5]
    # the DER paper's: buffer_size // tasks = 4 distinct random items of each task
    assert len(per_task.buffer) == 8
    assert torch.bincount(per_task.buffer.task_ids[:8]).tolist() == [4, 4]
    for task in range(2):
        stored = per_task.buffer.examples[:8][per_task.buffer.task_ids[:8] == task]
        data = task_data(tiny, task).inputs
        assert len({row.numpy().tobytes() for row in stored}) == 4
        assert all((data == row).flatten(1).all(1).any() for row in stored)
    assert len(batch.buffer) == 8  # batch_size items of each task, whatever the capacity
    assert sorted(set(batch.buffer.task_ids[:8].tolist())) == [0, 1]


# GEM

def test_gem_projection_is_the_nearest_gradient_meeting_every_memory_constraint():
    from scipy.optimize import nnls

    rng = np.random.default_rng(0)
    memories = rng.normal(size=(3, 40))
    gradient = -memories.sum(0) + 0.1 * rng.normal(size=40)  # violates all three
    as_tensor = partial(torch.tensor, dtype=torch.float32)
    given = as_tensor(gradient)
    projected = project_to_cone(given, as_tensor(memories), margin=0.0)
    assert projected is given and projected.dtype == torch.float32  # in place, float32
    projected = projected.double().numpy()
    # the exact projection onto {x: memories @ x >= 0}: its dual is a non-negative least
    # squares problem; GEM's 1e-3 on the Gram matrix's diagonal leaves it ~1e-3 away
    dual, _ = nnls(memories.T, -gradient)
    exact = memories.T @ dual + gradient
    assert np.abs(projected - exact).max() < 1e-2
    assert (memories @ projected > -1e-2).all() and (memories @ gradient < -20).all()
    # the margin pushes the update further into the cone
    pushed = project_to_cone(as_tensor(gradient), as_tensor(memories), margin=5.0)
    assert (memories @ pushed.double().numpy() > memories @ projected).all()


def test_gem_updates_never_raise_any_earlier_tasks_memory_loss_to_first_order(tiny):
    method = make("gem", tiny, lr=0.05, gamma=0.0, buffer_size=30)
    train_task(method, tiny, 0)
    train_task(method, tiny, 1)
    method.begin_task(2)
    buffer = method.buffer
    per_task = []
    for task in (0, 1):
        rows = (buffer.task_ids[:len(buffer)] == task).nonzero().squeeze(1)
        per_task.append((buffer.examples[rows], buffer.labels[rows]))
    assert [len(rows[1]) for rows in per_task] == [14, 14]  # 30 // 4 seen classes = 7 each
    inputs, labels = task_data(tiny, 2, 10).inputs, task_data(tiny, 2, 10).labels
    memory_gradients = [gradient_of(method, lambda net, x=x, y=y: F.cross_entropy(
        net(tiny.prepare(x)), y)) for x, y in per_task]
    before = weights(method)
    method.observe(inputs, labels)
    applied = (before - weights(method)) / 0.05
    for gradient in memory_gradients:
        assert applied @ gradient >= -1e-3 * gradient.norm() * applied.norm()


# GDumb

def test_the_greedy_class_balanced_memory_evens_out_an_imbalanced_stream():
    buffer = ClassBalancedBuffer(12, seed=0, task_of_class=torch.tensor([0, 0, 1, 1]))
    stream = torch.tensor([0] * 30 + [1] * 3 + [2] * 20 + [3] * 10)
    for batch in stream.split(10):
        buffer.add(batch.float().unsqueeze(1), batch)
    counts = torch.bincount(buffer.labels[:len(buffer)], minlength=4).tolist()
    assert len(buffer) == 12 and counts == [3, 3, 3, 3]


def test_gdumb_learns_only_from_its_memory_after_the_task_with_the_papers_schedule(tiny):
    assert [round(fitting_rate(e, 0.05, 0.0), 6) for e in range(5)] == \
        [0.005, 0.05, 0.05, 0.025, 0.05]  # warm-up, then restarts after 1 and 2 epochs
    method = make("gdumb", tiny, buffer_size=40, fitting_epochs=30, cutmix_alpha=0.0)
    method.begin_task(0)
    before = weights(method)
    data = task_data(tiny, 0)
    for step in range(6):
        method.observe(data.inputs[10 * step:10 * step + 10], data.labels[10 * step:10 * step + 10])
    assert torch.equal(weights(method), before)  # the stream only fills the memory
    method.end_task(0, data)
    count = len(method.buffer)
    memory = method.buffer.examples[:count], method.buffer.labels[:count]
    predicted = method.predict(tiny.prepare(memory[0])).argmax(1)
    assert (predicted == memory[1]).float().mean() > 0.95


def test_gdumb_fitted_after_the_last_task_only_leaves_the_earlier_tasks_untrained(tiny):
    method = make("gdumb", tiny, buffer_size=40, fitting_epochs=3, cutmix_alpha=0.0,
                  fit_after="last_task")
    before = weights(method)
    for task in range(tiny.n_tasks - 1):
        train_task(method, tiny, task)
        assert torch.equal(weights(method), before)  # no fit, no re-initialisation
    train_task(method, tiny, tiny.n_tasks - 1)
    assert not torch.equal(weights(method), before)
    assert "fit_after" not in resolve(model="gdumb").to_dict()  # the default keeps hashes


def test_methods_gms_does_not_apply_to_refuse_it_in_one_line():
    for model in ("gdumb", "icarl"):
        with pytest.raises(ConfigError, match=f"--gms does not apply to {model}: "):
            resolve(model=model, gms=True)
        assert not declaration(model).gms.applies


# iCaRL

def test_herding_picks_the_rows_whose_running_mean_tracks_the_mean():
    features = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [5.0, 5.0]])
    # the mean is (1.25, 1.25): first the closest row (1, 1); then (0, 0), whose mean with it
    # is (0.5, 0.5); then (5, 5), making it (2, 2) rather than (0, 0); then the last row
    assert herding(features, 4).tolist() == [1, 0, 3, 2]
    assert herding(features, 9).tolist() == [1, 0, 3, 2]  # no more rows than there are


def test_icarl_distils_the_old_classes_and_classifies_by_the_nearest_mean(tiny):
    method = make("icarl", tiny, buffer_size=20, opt_wd=0.0)
    train_task(method, tiny, 0)
    assert torch.bincount(method.buffer.labels[:20], minlength=2)[:2].tolist() == [10, 10]
    stream = method.training_data(1, task_data(tiny, 1))
    assert len(stream.labels) == 60 + 20 and (stream.labels[60:] < 2).all()
    method.begin_task(1)
    inputs, labels = task_data(tiny, 1, 10).inputs, task_data(tiny, 1, 10).labels
    old = copy.deepcopy(method.old_net)
    net = copy.deepcopy(method.net)
    targets = F.one_hot(labels, 10).float()
    targets[:, :2] = torch.sigmoid(old(tiny.prepare(inputs)))[:, :2].detach()
    expected = F.binary_cross_entropy_with_logits(net(tiny.prepare(inputs)), targets)
    assert torch.allclose(method.observe(inputs, labels), expected, atol=1e-6)
    # nearest class mean: the scores are minus the squared distances to the class means
    test = tiny.test_inputs[:7]
    with torch.no_grad():
        scores = method.predict(tiny.prepare(test))
        features = F.normalize(method.net.features(tiny.prepare(test)), dim=1)
        means = []
        for label in (0, 1):
            rows = method.buffer.labels[:20] == label
            memory = tiny.prepare(method.buffer.examples[:20][rows])
            own = F.normalize(method.net.features(memory), dim=1)
            means.append(F.normalize(own.mean(0), dim=0))
        expected = -torch.cdist(features, torch.stack(means)).pow(2)
    assert torch.allclose(scores[:, :2], expected, atol=1e-5)
    assert torch.isinf(scores[:, 2:]).all()  # classes without a mean yet


def test_icarl_mirrors_the_memory_for_its_class_means_only_where_the_augmentation_mirrors(
        tiny, tiny_vision):
    """The paper's class mean is the plain mean; the authors' CIFAR code also averages in the
    mirrored exemplars, mirroring being its augmentation. A mirrored digit is another shape:
    on a benchmark whose augmentation does not mirror (MNIST's), no mirroring."""
    method = make("icarl", tiny, buffer_size=20, opt_wd=0.0)
    train_task(method, tiny, 0)
    assert method.flips is False  # the tiny benchmark does not augment
    assert tiny_vision.train_transform().flips is True  # CIFAR's crop and flip
    examples, labels = method.buffer.examples[:20], method.buffer.labels[:20]
    with torch.no_grad():
        plain = F.normalize(method.net.features(tiny.prepare(examples)), dim=1)
        mirrored = F.normalize(method.net.features(tiny.prepare(examples.flip(-1))), dim=1)
        assert torch.allclose(method._class_means()[0],
                              F.normalize(plain[labels == 0].mean(0), dim=0), atol=1e-6)
        method.flips = True  # as under CIFAR's crop-and-flip augmentation
        both = (plain[labels == 0].mean(0) + mirrored[labels == 0].mean(0)) / 2
        assert torch.allclose(method._class_means()[0], F.normalize(both, dim=0), atol=1e-6)


def test_gdumb_cutmix_mixes_boxes_of_single_channel_images_and_skips_flat_vectors():
    from replaymask.core.methods.gdumb import cutmix
    images = torch.arange(2 * 6 * 6, dtype=torch.float32).view(2, 6, 6)
    targets = torch.tensor([0, 1])
    for seed in range(20):  # applied with probability 0.5
        mixed = cutmix(images, targets, 1.0, np.random.default_rng(seed))
        if mixed is not None:
            break
    inputs, other, share = mixed
    changed = (inputs != images)
    kept = 1 - changed[0].float().mean().item() if other[0] != targets[0] else 1.0
    assert inputs.shape == images.shape and 0 <= share <= 1
    assert other[0] == targets[0] or abs(kept - share) < 1e-6  # the share is what is kept
    assert cutmix(images.view(2, 36), targets, 1.0, np.random.default_rng(0)) is None
    assert cutmix(images, targets, 0.0, np.random.default_rng(0)) is None
    assert declaration("gdumb").best_args["seq-mnist"][1][None]["cutmix_alpha"] == 0.0


# LODE

def test_lode_is_the_within_task_term_plus_the_weighted_old_against_new_term_plus_replay(tiny):
    method = make("lode", tiny, buffer_size=10, minibatch_size=10, lode_c=0.7, lode_rho=0.3)
    train_task(method, tiny, 0, steps=1)
    method.begin_task(1)
    inputs, labels = task_data(tiny, 1, 10).inputs, task_data(tiny, 1, 10).labels
    memory = method.buffer.examples[:10], method.buffer.labels[:10]
    net = copy.deepcopy(method.net)
    logits = net(tiny.prepare(inputs))
    within = F.cross_entropy(logits[:, 2:4], labels - 2)
    pooled = torch.stack([logits[:, :2].logsumexp(1), logits[:, 2:4].logsumexp(1)], 1)
    old_new = F.cross_entropy(pooled, torch.ones_like(labels))
    replay = F.cross_entropy(net(tiny.prepare(memory[0]))[:, :4], memory[1])
    expected = 0.7 * within + 0.3 * (2 / 2) * old_new + replay
    assert torch.allclose(method.observe(inputs, labels), expected, atol=1e-5)


def test_lode_with_gms_at_minus_infinity_is_lode(tiny):
    losses = []
    for gms in (False, True):
        method = make("lode", tiny, buffer_size=10, gms=gms)
        train_task(method, tiny, 0)
        method.begin_task(1)
        losses.append(method.observe(*task_data(tiny, 1, 10).__dict__.values()))
    assert torch.equal(losses[0], losses[1])


# the hooks, as the training loop calls them

class Hooked(SGD):
    """Fine-tuning that trains each task on task 0's data too, joins four more samples
    to the stream, and predicts class 0 for everything."""

    seen_stream = []

    def training_tasks(self, task):
        return sorted({0, task})

    def training_data(self, task, data):
        return TaskData(torch.cat([data.inputs, self.extra_inputs]),
                        torch.cat([data.labels, self.extra_labels]))

    def observe(self, raw_inputs, labels):
        Hooked.seen_stream.append(labels.clone())
        return super().observe(raw_inputs, labels)

    def predict(self, inputs):
        scores = torch.zeros(len(inputs), self.layout.num_classes)
        scores[:, 0] = 1.0
        return scores


def test_the_training_loop_asks_the_methods_hooks(tiny, monkeypatch):
    monkeypatch.setattr(training, "method_class", lambda name: Hooked)
    Hooked.extra_inputs = tiny.train_inputs[:4]
    Hooked.extra_labels = torch.full((4,), 9)  # class 9: only task 4's own 30 samples have it
    Hooked.seen_stream = []
    config = resolve(model="sgd", dataset="seq-mnist", n_tasks=5, n_epochs=1)
    result = training.train(config, tiny, progress=False)
    seen = torch.cat(Hooked.seen_stream)
    per_task = 2 * 30 + 4  # task 0's own data and the four extra samples
    assert len(seen) == per_task + 4 * (2 * per_task - 4)
    assert (seen == 9).sum() == 4 * 5 + 30
    # evaluation used predict: class 0 always, so task 0 is half right, the others wrong
    assert result.accuracy_matrix["class_il"][-1] == [50.0, 0.0, 0.0, 0.0, 0.0]


# FDR

def test_fdr_takes_a_cross_entropy_step_then_a_function_distance_step(tiny):
    method = make("fdr", tiny, buffer_size=10, minibatch_size=10, lr=0.1, alpha=0.5)
    train_task(method, tiny, 0, steps=1)
    method.begin_task(1)
    stored = method.buffer.examples[:10], method.buffer.logits[:10].clone()
    inputs, labels = task_data(tiny, 1, 10).inputs, task_data(tiny, 1, 10).labels
    net = copy.deepcopy(method.net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    F.cross_entropy(net(tiny.prepare(inputs)), labels).backward()
    optimizer.step()
    optimizer.zero_grad()
    distance = (F.softmax(net(tiny.prepare(stored[0])), 1) - F.softmax(stored[1], 1)).norm(dim=1)
    (0.5 * distance.mean()).backward()
    optimizer.step()
    method.observe(inputs, labels)
    expected = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert torch.allclose(weights(method), expected, atol=1e-6)


def test_fdr_keeps_an_equal_share_of_items_per_task_with_their_outputs(tiny):
    method = make("fdr", tiny, buffer_size=20, alpha=1.0)
    train_task(method, tiny, 0)
    first_items = method.buffer.examples[:10].clone()
    train_task(method, tiny, 1)
    count = len(method.buffer)
    assert count == 20 and method.buffer.task_ids[:count].tolist() == [0] * 10 + [1] * 10
    assert torch.equal(method.buffer.examples[:10], first_items)  # the first items kept
    with torch.no_grad():  # the new items' outputs are the network's at the task's end
        outputs = method.net(tiny.prepare(method.buffer.examples[10:20]))
    assert torch.allclose(method.buffer.logits[10:20], outputs, atol=1e-6)


# MER

def mer_on_one_sample(tiny, **settings):
    """MER (lr 0.1, one inner step) observing one sample with an empty memory: the method,
    the sample's gradient at the start, and the weights before and after."""
    method = make("mer", tiny, lr=0.1, batch_num=1, **settings)
    method.begin_task(0)
    inputs, labels = task_data(tiny, 0, 1).inputs, task_data(tiny, 0, 1).labels
    gradient = gradient_of(method, lambda net: F.cross_entropy(net(tiny.prepare(inputs)), labels))
    before = weights(method)
    method.observe(inputs, labels)
    return method, gradient, before, weights(method)


def test_mer_interpolates_within_and_across_each_samples_steps(tiny):
    method, gradient, before, after = mer_on_one_sample(tiny, beta=0.5, gamma=0.4)
    assert torch.allclose(after - before, -0.1 * 0.5 * 0.4 * gradient, atol=1e-7)
    assert len(method.buffer) == 1  # the sample joined the memory after its steps


def test_mer_with_two_inner_steps_interpolates_each_from_where_it_began(tiny):
    method = make("mer", tiny, lr=0.1, beta=0.5, gamma=1.0, batch_num=2)
    method.begin_task(0)
    inputs, labels = task_data(tiny, 0, 1).inputs, task_data(tiny, 0, 1).labels
    loss = lambda net: F.cross_entropy(net(tiny.prepare(inputs)), labels)  # noqa: E731
    first = gradient_of(method, loss)
    start = weights(method)
    expected = start - 0.1 * 0.5 * first  # the first step, halved (beta)
    model = copy.deepcopy(method.net)
    torch.nn.utils.vector_to_parameters(expected, model.parameters())
    model.zero_grad()
    loss(model).backward()
    second = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    expected = expected - 0.1 * 0.5 * second  # the second, from where it began
    method.observe(inputs, labels)  # an empty memory: two inner steps on the sample
    assert torch.allclose(weights(method), expected, atol=1e-6)


def test_mer_at_beta_and_gamma_one_is_exactly_one_sgd_step_per_sample(tiny):
    from replaymask.core.methods.mer import weights_before

    method, gradient, before, after = mer_on_one_sample(tiny, beta=1.0, gamma=1.0)
    # the interpolations are the identity: no rounding of theta_before + 1 (theta - ...);
    # the step is the optimiser's p + (-lr) g, as add with alpha computes it
    assert torch.equal(after, before.add(gradient, alpha=-0.1))
    assert weights_before(method.optimizer.params, 1.0) is None  # and no copy is made
    assert len(weights_before(method.optimizer.params, 0.5)) == len(method.optimizer.params)


# GSS

def test_gss_scores_items_by_gradient_similarity_with_per_item_gradients(tiny):
    method = make("gss", tiny, buffer_size=10, gss_minibatch_size=4)
    inputs, labels = task_data(tiny, 0, 4).inputs, task_data(tiny, 0, 4).labels
    vectorised = torch.cat(method.per_item_gradients(inputs, labels), 1)
    for row in range(4):
        one = gradient_of(method, lambda net, r=row: F.cross_entropy(
            net(tiny.prepare(inputs[r:r + 1])), labels[r:r + 1]))
        assert torch.allclose(vectorised[row], one, atol=1e-6)
    batch = torch.cat(method.batch_gradient(inputs, labels), 1)[0]
    assert torch.allclose(batch, vectorised.mean(0), atol=1e-6)


def test_gss_similarities_on_per_parameter_blocks_are_those_of_the_flat_gradients():
    from replaymask.core.methods.gss import cosine_similarities, similarity_score

    generator = torch.Generator().manual_seed(0)
    rows, memory = torch.randn(37, 5000, generator=generator), torch.randn(6, 5000,
                                                                          generator=generator)
    rows[3] = 0  # a zero gradient: the norm clamped at eps, similarity 0
    memory[1] = 3 * rows[5]  # the same direction: similarity 1
    sizes = [3000, 7, 1990, 3]  # blocks, as the parameters split the flat gradient
    blocks = list(rows.split(sizes, 1)), list(memory.split(sizes, 1))
    similarities = cosine_similarities(*blocks)
    flat = F.cosine_similarity(rows.unsqueeze(1), memory.unsqueeze(0), dim=2)
    assert similarities.shape == (37, 6)
    assert torch.allclose(similarities, flat, atol=1e-6)  # another order of summation
    assert (similarities[3] == 0).all() and similarities[5, 1] == pytest.approx(1, abs=1e-6)
    one_row = [block[5:6] for block in blocks[0]]
    assert similarity_score(one_row, blocks[1]) == pytest.approx(2, abs=1e-6)


def test_the_gradient_selection_memory_evicts_redundant_items_and_keeps_novel_batches():
    from replaymask.core.buffer import GradientSelectionBuffer

    buffer = GradientSelectionBuffer(4, seed=0, task_of_class=torch.zeros(10, dtype=torch.long))
    items = torch.arange(4.0).unsqueeze(1)
    buffer.add_scored(items, torch.arange(4), 0.5, lambda row: 0.5)
    buffer.scores[:] = torch.tensor([1.9, 0.01, 0.01, 0.01])  # item 0 is redundant
    before = buffer.examples.clone()
    buffer.add_scored(torch.full((20, 1), 9.0), torch.zeros(20, dtype=torch.long), 1.5,
                      lambda row: 0.0)
    assert torch.equal(buffer.examples, before)  # a batch scoring >= 1 is never stored
    replaced = torch.zeros(4)
    for _ in range(200):
        buffer.examples[:] = before
        buffer.scores[:] = torch.tensor([1.9, 0.01, 0.01, 0.01])
        buffer.add_scored(torch.tensor([[9.0]]), torch.tensor([0]), 0.5, lambda row: 0.05)
        replaced += (buffer.examples[:, 0] == 9.0).float()
    assert replaced[0] > 150 and replaced[1:].sum() < 10  # the redundant item goes


def test_gss_runs_with_and_without_gms_and_fills_its_memory(tiny):
    for gms in (False, True):
        method = make("gss", tiny, buffer_size=10, gss_minibatch_size=4, gms=gms)
        for task in range(2):
            train_task(method, tiny, task, steps=3)
        assert len(method.buffer) == 10 and (method.buffer.scores > 0).all()


# BiC

def test_bic_holds_out_a_balanced_validation_split_and_distils_with_the_papers_lambda(tiny):
    method = make("bic", tiny, buffer_size=20, valset_split=0.5, temp=2.0, bic_epochs=5)
    train_task(method, tiny, 0)
    assert len(method.buffer) == 20 and (method.buffer.labels[:20] < 2).all()
    method.begin_task(1)
    data = task_data(tiny, 1)
    stream = method.training_data(1, data)
    held = len(method.validation.labels)
    new = (method.validation.labels >= 2).sum()
    assert held > 0 and new == (method.validation.labels < 2).sum()  # as many old as new
    assert len(stream.labels) == 60 + 20 - held
    inputs, labels = data.inputs[:10], data.labels[:10]
    net, old = copy.deepcopy(method.net), copy.deepcopy(method.old_net)
    logits = net(tiny.prepare(inputs))
    classes = F.cross_entropy(logits[:, :4], labels)
    with torch.no_grad():
        teacher = F.softmax(old(tiny.prepare(inputs))[:, :2] / 2.0, 1)
    distillation = -(F.log_softmax(logits[:, :2] / 2.0, 1) * teacher).sum(1).mean()
    expected = (1 - 2 / 4) * classes + (2 / 4) * 4.0 * distillation
    assert torch.allclose(method.observe(inputs, labels), expected, atol=1e-5)


@pytest.mark.parametrize(("choice", "weight"), [("paper", 4 / 6), ("mammoth", 1 / 3)])
def test_bic_lambda_is_the_papers_old_class_share_or_mammoths_one_over_tasks(tiny, choice,
                                                                            weight):
    """At the third task (4 earlier classes of 6 seen): the paper's lambda 4/6, Mammoth's
    1/3 (``--bic-lambda mammoth``)."""
    method = make("bic", tiny, buffer_size=20, valset_split=0.5, temp=2.0, bic_epochs=5,
                  bic_lambda=choice)
    for task in range(2):
        method.begin_task(task)
        data = method.training_data(task, task_data(tiny, task))
        method.observe(data.inputs[:10], data.labels[:10])
        method.end_task(task, data)
    method.begin_task(2)
    data = task_data(tiny, 2)
    inputs, labels = data.inputs[:10], data.labels[:10]
    net = copy.deepcopy(method.net)
    logits = net(tiny.prepare(inputs))
    classes = F.cross_entropy(logits[:, :6], labels)
    with torch.no_grad():
        old = method.corrected(method.old_net(tiny.prepare(inputs)), method.old_bias, 1)[:, :4]
    distillation = -(F.log_softmax(logits[:, :4] / 2.0, 1)
                     * F.softmax(old / 2.0, 1)).sum(1).mean()
    expected = (1 - weight) * classes + weight * 4.0 * distillation
    assert torch.allclose(method.observe(inputs, labels), expected, atol=1e-5)


def test_bic_fits_a_bias_layer_on_the_new_tasks_logits_and_predicts_with_it(tiny):
    method = make("bic", tiny, buffer_size=20, valset_split=0.5, bic_epochs=50)
    train_task(method, tiny, 0)
    method.begin_task(1)
    stream = method.training_data(1, task_data(tiny, 1))
    for step in range(0, 30, 10):
        method.observe(stream.inputs[step:step + 10], stream.labels[step:step + 10])
    validation = method.validation
    with torch.no_grad():
        raw = method.net(tiny.prepare(validation.inputs))[:, :4]
    before = F.cross_entropy(raw, validation.labels)
    method.end_task(1, TaskData(stream.inputs, stream.labels))
    a, b = method.bias.tolist()
    assert (a, b) != (1.0, 0.0)
    corrected = raw.clone()
    corrected[:, 2:4] = a * raw[:, 2:4] + b
    assert F.cross_entropy(corrected, validation.labels) < before
    with torch.no_grad():
        scores = method.predict(tiny.prepare(validation.inputs))
    assert torch.allclose(scores[:, :4], corrected, atol=1e-5)
    assert torch.bincount(method.buffer.task_ids[:len(method.buffer)]).tolist() == [10, 10]


# HAL

def test_hal_steps_with_the_anchors_gradient_taken_where_the_step_began(tiny):
    method = make("hal", tiny, buffer_size=10, minibatch_size=10, lr=0.1, hal_lambda=2.0,
                  beta=0.5, gamma=0.1)
    train_task(method, tiny, 0)
    assert method.anchors.shape == (2, *tiny.prepare(tiny.train_inputs[:1]).shape[1:])
    method.begin_task(1)
    inputs, labels = task_data(tiny, 1, 10).inputs, task_data(tiny, 1, 10).labels
    memory = method.buffer.examples[:10], method.buffer.labels[:10]
    net = copy.deepcopy(method.net)
    both = torch.cat([tiny.prepare(inputs), tiny.prepare(memory[0])])
    ce = F.cross_entropy(net(both), torch.cat([labels, memory[1]]))
    first = torch.autograd.grad(ce, list(net.parameters()))
    stepped = copy.deepcopy(net)
    with torch.no_grad():
        for p, g in zip(stepped.parameters(), first, strict=True):
            p -= 0.1 * g
        moved = stepped(method.anchors)
    anchored = 2.0 * (moved - net(method.anchors)).pow(2).mean()
    second = torch.autograd.grad(anchored, list(net.parameters()))
    expected = torch.cat([(p - 0.1 * (g1 + g2)).reshape(-1) for p, g1, g2
                          in zip(net.parameters(), first, second, strict=True)]).detach()
    method.observe(inputs, labels)
    assert torch.allclose(weights(method), expected, atol=1e-6)


def test_hal_anchors_are_recognised_now_and_forgotten_by_the_fine_tuned_network(tiny):
    method = make("hal", tiny, buffer_size=20, lr=0.1, beta=0.5, gamma=0.0)
    train_task(method, tiny, 0, steps=6)
    with torch.no_grad():
        predicted = method.net(method.anchors)[:, :2].argmax(1)
    assert predicted.tolist() == [0, 1]  # each anchor is its class's, for the network now


# from the command line, as every method runs

REHEARSAL = ["agem", "gem", "gdumb", "icarl", "fdr", "mer", "gss", "bic", "hal", "lode"]
QUICK = {"gdumb": ["--fitting-epochs", "2"], "bic": ["--bic-epochs", "2"]}


@pytest.mark.parametrize("model", REHEARSAL)
def test_each_rehearsal_method_runs_from_the_command_line_and_writes_its_result(
        model, mnist_like_root, tmp_path):
    import json

    from replaymask import cli

    out = tmp_path / model
    assert cli.main(["run", "--model", model, "--buffer-size", "20", "--data-root",
                     str(mnist_like_root), "--out", str(out), "--no-progress",
                     *QUICK.get(model, [])]) == 0
    stored = json.loads((out / "result.json").read_text())
    assert stored["config"]["model"] == model
    final = stored["accuracy_matrix"]["class_il"][-1]
    assert len(final) == 5 and all(0 <= value <= 100 for value in final)
