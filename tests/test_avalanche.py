"""GMSCriterion inside the real avalanche-lib, on class-incremental benchmarks that Avalanche
builds from offline tensors (conftest's MNIST-like data, classes in a shuffled order that
only the benchmark knows)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import avalanche.benchmarks.classic
import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks import benchmark_from_datasets, dataset_benchmark, nc_benchmark
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import supervised as strategies
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin, SupervisedPlugin
from torch.utils.data import Dataset

from replaymask.core.backbones import MLP
from replaymask.core.gms import gms_cross_entropy
from replaymask.integrations.avalanche import GMSCriterion, StrategyIgnoresCriterion

from .conftest import tiny_benchmark

CLASS_ORDER = [3, 7, 0, 9, 1, 2, 8, 4, 6, 5]
TASKS = [CLASS_ORDER[i:i + 2] for i in range(0, 10, 2)]  # the truth the tests check against
# Avalanche warns that the evaluator has no loggers: the tests read its metrics directly.
pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


class Images(Dataset):
    """Tensors as a dataset with ``targets``, as Avalanche's generators expect."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.float().div(255).flatten(1), labels
        self.targets = labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


@pytest.fixture(scope="module")
def data() -> tuple[Images, Images]:
    tiny = tiny_benchmark(per_class_train=20, per_class_test=10)
    return Images(tiny.train_inputs, tiny.train_labels), Images(tiny.test_inputs, tiny.test_labels)


@pytest.fixture(scope="module")
def benchmark(data):
    train, test = data
    return nc_benchmark(train, test, n_experiences=5, task_labels=False,
                        fixed_class_order=CLASS_ORDER)


@dataclass
class Step:
    experience: int
    logits: torch.Tensor
    targets: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor  # d loss / d logits


class Recorder(SupervisedPlugin):
    """Keeps every training step's logits, targets, loss and the loss's gradient into the
    logits; and every evaluation minibatch's loss beside plain cross-entropy."""

    def __init__(self):
        super().__init__()
        self.steps: list[Step] = []
        self.eval_losses: list[tuple[torch.Tensor, torch.Tensor]] = []

    def before_backward(self, strategy, **kwargs):
        strategy.mb_output.retain_grad()

    def after_backward(self, strategy, **kwargs):
        self.steps.append(Step(strategy.experience.current_experience,
                               strategy.mb_output.detach().clone(), strategy.mb_y.clone(),
                               strategy.loss.detach().clone(), strategy.mb_output.grad.clone()))

    def after_eval_iteration(self, strategy, **kwargs):
        self.eval_losses.append((strategy.loss, F.cross_entropy(strategy.mb_output,
                                                                strategy.mb_y)))


def train(benchmark, criterion, replay: int | None = 20, strategy=strategies.Naive,
          experiences=None, **options) -> Recorder:
    torch.manual_seed(0)
    recorder = Recorder()
    plugins = [recorder] + ([ReplayPlugin(mem_size=replay)] if replay else [])
    model = MLP()
    options.setdefault("evaluator", EvaluationPlugin(loggers=[]))
    learner = strategy(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       criterion=criterion, plugins=plugins, train_mb_size=10,
                       eval_mb_size=50, **options)
    for experience in experiences or benchmark.train_stream:
        learner.train(experience)
    recorder.learner = learner
    return recorder


def task_of(label: int) -> int:
    return next(t for t, classes in enumerate(TASKS) if label in classes)


def own_task_mask(targets: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[task_of(int(y)) == task_of(c) for c in range(10)] for y in targets])


def test_stream_only_batches_send_exactly_zero_gradient_into_other_experiences_logits(
        benchmark):
    recorder = train(benchmark, GMSCriterion(), replay=None)
    assert len({step.experience for step in recorder.steps}) == 5
    for step in recorder.steps:
        others = ~own_task_mask(step.targets)
        assert torch.equal(step.grad[others], torch.zeros_like(step.grad[others]))
        assert step.grad[~others].abs().min() > 0  # the own experience's logits do learn


def test_the_mask_follows_each_experience_learned_from_the_experiences(benchmark):
    criterion = GMSCriterion()
    recorder = train(benchmark, criterion)
    assert criterion.class_layout == [sorted(classes) for classes in TASKS]
    for step in recorder.steps:
        stream = torch.tensor([y in TASKS[step.experience] for y in step.targets.tolist()])
        assert stream.any()
        touched = step.grad[stream] != 0
        own = torch.zeros(10, dtype=torch.bool)
        own[TASKS[step.experience]] = True
        assert torch.equal(touched, own.expand_as(touched))  # exactly the current classes


@pytest.mark.parametrize("mask_value", [float("-inf"), 0.0, -3.5, "detach"])
@pytest.mark.parametrize("gms_on_buffer", [False, True])
def test_the_loss_equals_gms_cross_entropy_on_the_same_rows(benchmark, mask_value,
                                                            gms_on_buffer):
    recorder = train(benchmark, GMSCriterion(mask_value, gms_on_buffer=gms_on_buffer))
    replayed_rows = 0
    for step in recorder.steps:
        live = own_task_mask(step.targets)
        replayed = torch.tensor([y not in TASKS[step.experience] for y in step.targets.tolist()])
        replayed_rows += int(replayed.sum())
        if not gms_on_buffer:
            live[replayed] = True
        expected = gms_cross_entropy(step.logits, step.targets, live, mask_value)
        assert torch.equal(step.loss.reshape(()), expected)
    assert replayed_rows > 0


def test_replayed_rows_are_unmasked_by_default(benchmark):
    recorder = train(benchmark, GMSCriterion())
    mixed = [step for step in recorder.steps if step.experience > 0]
    for step in mixed:
        stream = torch.tensor([y in TASKS[step.experience] for y in step.targets.tolist()])
        assert (~stream).sum() == 10  # ReplayPlugin: a buffer minibatch of the stream's size
        assert (step.grad[~stream] != 0).all()  # every logit of a replayed row learns
        others = ~own_task_mask(step.targets[stream])
        assert (step.grad[stream][others] == 0).all()


def test_gms_on_buffer_masks_replayed_rows_to_their_own_experience(benchmark):
    recorder = train(benchmark, GMSCriterion(gms_on_buffer=True))
    for step in (step for step in recorder.steps if step.experience > 0):
        others = ~own_task_mask(step.targets)
        assert torch.equal(step.grad[others], torch.zeros_like(step.grad[others]))
        assert (step.grad[~others] != 0).all()


def test_a_finite_mask_value_is_the_value_the_masked_logits_take(benchmark):
    hard = train(benchmark, GMSCriterion(float("-inf")), replay=None).steps[0]
    finite = train(benchmark, GMSCriterion(2.0), replay=None).steps[0]
    assert torch.equal(hard.logits, finite.logits)  # same start, same first batch
    live = own_task_mask(hard.targets)
    assert finite.loss > hard.loss  # the masked classes keep mass exp(2) in the softmax
    masked = torch.where(live, finite.logits, torch.tensor(2.0))
    assert torch.equal(finite.loss.reshape(()), F.cross_entropy(masked, finite.targets))


def test_training_again_on_an_experience_keeps_its_classes_together(benchmark):
    criterion = GMSCriterion()
    stream = list(benchmark.train_stream)
    recorder = train(benchmark, criterion, replay=None, experiences=stream[:2] + stream[:1])
    assert criterion.class_layout == [sorted(TASKS[0]), sorted(TASKS[1])]
    last = [step for step in recorder.steps if step.experience == 0][-1]
    others = ~own_task_mask(last.targets)
    assert (last.grad[others] == 0).all() and (last.grad[~others] != 0).all()


def test_the_layout_comes_from_the_data_when_an_experience_does_not_list_its_classes(data):
    from avalanche.benchmarks.utils.classification_dataset import (
        _make_taskaware_classification_dataset,
    )

    train_data, test_data = data

    def split(images: Images, classes):
        chosen = [i for i, y in enumerate(images.targets) if y in classes]
        subset = torch.utils.data.Subset(images, chosen)
        subset.targets = [images.targets[i] for i in chosen]
        return _make_taskaware_classification_dataset(subset)

    plain = benchmark_from_datasets(train=[split(train_data, t) for t in TASKS],
                                    test=[split(test_data, t) for t in TASKS])
    assert not hasattr(plain.train_stream[0], "classes_in_this_experience")
    criterion = GMSCriterion()
    recorder = train(plain, criterion, replay=None)
    assert criterion.class_layout == [sorted(classes) for classes in TASKS]
    for step in recorder.steps:
        assert (step.grad[~own_task_mask(step.targets)] == 0).all()


def test_an_experience_mixing_old_and_new_classes_is_refused_in_one_line(data):
    train_data, test_data = data
    old, mixed = [0, 1], [1, 2]

    def subset(images, classes):
        chosen = [i for i, y in enumerate(images.targets) if y in classes]
        return Images(images.images[chosen].mul(255), images.labels[chosen])

    overlapping = dataset_benchmark([subset(train_data, old), subset(train_data, mixed)],
                                    [subset(test_data, old), subset(test_data, mixed)])
    with pytest.raises(ValueError, match=r"^GMSCriterion: experience 1 has classes \[1, 2\], "
                                         r"which mix new classes with earlier ones") as error:
        train(overlapping, GMSCriterion(), replay=None)
    assert "\n" not in str(error.value)


def test_naive_with_replay_trains_end_to_end_and_evaluates_with_plain_cross_entropy(
        benchmark, data):
    evaluator = EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
    recorder = train(benchmark, GMSCriterion(), evaluator=evaluator)
    results = recorder.learner.eval(benchmark.test_stream)
    assert recorder.eval_losses
    for loss, plain in recorder.eval_losses:
        assert torch.equal(loss, plain)
    test = data[1]
    with torch.no_grad():
        logits = recorder.learner.model.eval()(test.images)
    class_il = (logits.argmax(1) == test.labels).float().mean().item()
    assert results["Top1_Acc_Stream/eval_phase/test_stream/Task000"] == pytest.approx(class_il)
    within_task = logits.masked_fill(~own_task_mask(test.labels), float("-inf"))
    task_il = (within_task.argmax(1) == test.labels).float().mean().item()
    assert task_il > 0.7  # chance within a task of 2 classes: 0.5


@pytest.mark.parametrize("strategy, options", [
    (strategies.Replay, {"mem_size": 20}), (strategies.Cumulative, {}),
    (strategies.GDumb, {"mem_size": 20}),
    (strategies.EWC, {"ewc_lambda": 1.0}), (strategies.GEM, {"patterns_per_exp": 10}),
    (strategies.AGEM, {"patterns_per_exp": 10, "sample_size": 10}),
])
def test_strategies_that_call_their_criterion_train_with_gms(benchmark, strategy, options):
    criterion = GMSCriterion()
    recorder = train(benchmark, criterion, replay=None, strategy=strategy, **options)
    assert criterion.class_layout == [sorted(classes) for classes in TASKS]
    stream_rows = 0
    for step in recorder.steps:
        stream = torch.tensor([y in TASKS[step.experience] for y in step.targets.tolist()],
                              dtype=torch.bool)
        stream_rows += int(stream.sum())
        others = ~own_task_mask(step.targets[stream]) if stream.any() else None
        assert others is None or (step.grad[stream][others] == 0).all()
    assert stream_rows > 0


def test_joint_training_is_refused_in_one_line(benchmark):
    with pytest.raises(ValueError, match=r"^GMSCriterion: JointTraining trains on every "
                                         r"experience at once") as error:
        train(benchmark, GMSCriterion(), replay=None, strategy=strategies.JointTraining,
              experiences=[benchmark.train_stream])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("strategy, options", [
    (strategies.DER, {"mem_size": 20, "batch_size_mem": 10}),
    (strategies.ER_ACE, {"mem_size": 20, "batch_size_mem": 10}),
    (strategies.ER_AML, {"mem_size": 20, "batch_size_mem": 10, "feature_extractor": None}),
])
def test_a_strategy_that_ignores_its_criterion_is_refused_before_training(benchmark, strategy,
                                                                          options):
    if "feature_extractor" in options:
        options = {**options, "feature_extractor": torch.nn.Identity()}
    with pytest.raises(StrategyIgnoresCriterion) as error:
        train(benchmark, GMSCriterion(), replay=None, strategy=strategy, **options)
    message = str(error.value)
    assert message.startswith(f"GMSCriterion: {strategy.__name__} computes its replay loss "
                              "without its criterion") and "\n" not in message


class PlainLossNaive(strategies.Naive):
    """A strategy whose training loss does not go through its criterion."""

    def criterion(self):
        return F.cross_entropy(self.mb_output, self.mb_y)


def test_any_strategy_that_skips_the_criterion_is_stopped_before_its_first_update(benchmark):
    torch.manual_seed(0)
    model = MLP()
    before = [p.detach().clone() for p in model.parameters()]
    learner = PlainLossNaive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                             criterion=GMSCriterion(), train_mb_size=10,
                             evaluator=EvaluationPlugin(loggers=[]))
    with pytest.raises(StrategyIgnoresCriterion,
                       match=r"^GMSCriterion: PlainLossNaive computed a training loss without "
                             r"calling its criterion \(experience 0\)") as error:
        learner.train(benchmark.train_stream[0])
    assert "\n" not in str(error.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_criterion_that_was_never_attached_refuses_to_train():
    logits = torch.zeros(4, 10, requires_grad=True)
    with pytest.raises(StrategyIgnoresCriterion, match="before any experience started"):
        GMSCriterion()(logits, torch.tensor([0, 1, 2, 3]))
    with torch.no_grad():  # evaluation: plain cross-entropy
        assert torch.equal(GMSCriterion()(logits, torch.tensor([0, 1, 2, 3])),
                           F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])))


@pytest.mark.parametrize("options, message", [
    ({"mask_value": float("nan")}, "mask_value must be a number, -inf or 'detach'"),
    ({"mask_value": float("inf")}, "mask_value must be a number, -inf or 'detach'"),
    ({"mask_value": "soft"}, "got 'soft'"),
    ({"mask_value": True}, "got True"),
    ({"gms_on_buffer": "yes"}, "gms_on_buffer must be True or False, got 'yes'"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=r"^GMSCriterion: ") as error:
        GMSCriterion(**options)
    assert message in str(error.value) and "\n" not in str(error.value)


HIDE_AVALANCHE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "avalanche":
            {action}
sys.meta_path.insert(0, Hide())
import replaymask.integrations.avalanche
"""


@pytest.mark.parametrize("action, last_line", [
    ("raise ModuleNotFoundError(f'No module named {name!r}', name=name)",
     "ModuleNotFoundError: replaymask.integrations.avalanche needs avalanche-lib: "
     "pip install 'replaymask[avalanche]'"),
    ("raise RuntimeError('operator torchvision::nms does not exist')",
     "ImportError: avalanche-lib is installed but does not import (operator torchvision::nms "
     "does not exist); install the torchvision build that matches your torch"),
])
def test_without_a_working_avalanche_the_import_fails_in_one_line(action, last_line):
    done = subprocess.run([sys.executable, "-c", HIDE_AVALANCHE.format(action=action)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == last_line


def test_the_docs_example_runs_as_written(data, monkeypatch, capsys):
    """docs/avalanche.md's example, on the small benchmark in place of SplitMNIST (which
    downloads MNIST), split as the example asks."""
    def small_split_mnist(n_experiences, fixed_class_order):
        return nc_benchmark(*data, n_experiences=n_experiences, task_labels=False,
                            fixed_class_order=fixed_class_order)

    monkeypatch.setattr(avalanche.benchmarks.classic, "SplitMNIST", small_split_mnist)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "avalanche.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", docs, flags=re.S)
    namespace = {}
    exec(compile(example, "docs/avalanche.md", "exec"), namespace)
    assert namespace["strategy"]._criterion.class_layout == [[0, 1], [2, 3], [4, 5], [6, 7],
                                                             [8, 9]]
    assert "[[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]" in capsys.readouterr().out
