"""How a benchmark is run (its protocol), and the built-in benchmarks' protocols: the DER
paper's, as Mammoth runs them.

Plain data, without torch: the command line checks and lists them before anything loads,
and a run's configuration carries its benchmark's description (:class:`BenchmarkInfo`) so
that nothing downstream looks a benchmark up by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Protocol:
    """What a run on a benchmark takes from the benchmark unless it is set: epochs per task,
    the stream batch size, the epochs where the lr drops x0.1, the input normalisation and
    augmentation, whose published best arguments serve it, and whether runs evaluate on a
    validation split of the training data instead of the test set."""

    n_epochs: int = 1
    batch_size: int = 10
    lr_milestones: tuple[int, ...] = ()  # epochs (within each task) where the lr drops x0.1
    mean: tuple[float, ...] | None = None  # per channel; None: uint8 / 255, floats as given
    std: tuple[float, ...] | None = None
    crop_padding: int | None = None  # training augmentation: random crop + flip; None: none
    best_args_from: str | None = None  # the built-in benchmark whose best arguments serve it
    validation_fraction: float = 0.0  # > 0: runs evaluate on held-out training inputs

    def to_dict(self) -> dict:
        return {"n_epochs": self.n_epochs, "batch_size": self.batch_size,
                "lr_milestones": list(self.lr_milestones),
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "crop_padding": self.crop_padding, "best_args_from": self.best_args_from,
                "validation_fraction": self.validation_fraction}


class TaskLayout:
    """What follows from ``task_sizes`` (the classes of each task, in order): shared by a
    benchmark and its description."""

    task_sizes: tuple[int, ...]

    @property
    def n_tasks(self) -> int:
        return len(self.task_sizes)

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)

    @property
    def equal_tasks(self) -> bool:
        return len(set(self.task_sizes)) == 1

    @property
    def task_offsets(self) -> tuple[int, ...]:
        """``offsets[k]``: the first label of task k; ``offsets[-1]``: the class count."""
        offsets = [0]
        for size in self.task_sizes:
            offsets.append(offsets[-1] + size)
        return tuple(offsets)


@dataclass(frozen=True)
class TaskSplit(TaskLayout):
    """A task split alone: what a method knows of the benchmark's tasks."""

    task_sizes: tuple[int, ...]


@dataclass(frozen=True)
class BenchmarkInfo(TaskLayout):
    """A benchmark described without its tensors: what resolving a run needs of it.

    ``fingerprint`` is the SHA-256 of a user benchmark's tensors, task split and protocol
    (its identity in config hashes); None for a built-in benchmark, whose name is its
    identity. ``origin`` says where it came from (``{"kind": "built-in" | "tensors" |
    "datasets" | "folder", ...}``, plus ``registered`` and ``module`` for a name made
    with :func:`~replaymask.data.registry.register_benchmark`); ``options`` are the
    keyword options a registered benchmark was built with.
    """

    name: str
    task_sizes: tuple[int, ...]
    input_shape: tuple[int, ...]  # of one sample
    protocol: Protocol
    fingerprint: str | None = None
    origin: dict = field(default_factory=dict, compare=False, hash=False)
    options: tuple[tuple[str, object], ...] = ()

    @property
    def builtin(self) -> bool:
        return self.fingerprint is None

    @property
    def default_backbone(self) -> str | None:
        """The built-in network its inputs suit: the MLP for flat vectors and one-channel
        28x28 images, the ResNet-18 for 3-channel images; None: the user must give one."""
        return default_backbone_for(self.input_shape)

    @property
    def label(self) -> str:
        """Its name, and for a user benchmark the first 8 hex digits of its fingerprint:
        'seq-mnist', 'my-fmnist@1a2b3c4d' (how reports and ``runs`` tell them apart)."""
        return self.name if self.fingerprint is None else f"{self.name}@{self.fingerprint[:8]}"


def default_backbone_for(input_shape: tuple[int, ...]) -> str | None:
    if len(input_shape) == 1 or tuple(input_shape) in ((28, 28), (1, 28, 28)):
        return "mlp"
    if len(input_shape) == 3 and input_shape[0] == 3:
        return "resnet18"
    return None


@dataclass(frozen=True)
class BuiltinSpec:
    """A built-in benchmark: which data set, its task split and sample shape, its protocol."""

    dataset: str  # the reader's name: "mnist", "cifar10", ...
    n_tasks: int
    classes_per_task: int
    input_shape: tuple[int, ...]
    protocol: Protocol

    def info(self, name: str) -> BenchmarkInfo:
        return BenchmarkInfo(name=name, task_sizes=(self.classes_per_task,) * self.n_tasks,
                             input_shape=self.input_shape, protocol=self.protocol,
                             origin={"kind": "built-in", "dataset": self.dataset})


_CIFAR_AUGMENTATION = {"crop_padding": 4}
BENCHMARKS = {
    "seq-mnist": BuiltinSpec("mnist", 5, 2, (28, 28), Protocol(n_epochs=1, batch_size=10)),
    # no best arguments were published for Seq-FMNIST: Seq-MNIST's serve it
    "seq-fmnist": BuiltinSpec("fashion-mnist", 5, 2, (28, 28), Protocol(
        n_epochs=1, batch_size=10, best_args_from="seq-mnist")),
    "seq-cifar10": BuiltinSpec("cifar10", 5, 2, (3, 32, 32), Protocol(
        n_epochs=50, batch_size=32, mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2615), **_CIFAR_AUGMENTATION)),
    "seq-cifar100": BuiltinSpec("cifar100", 10, 10, (3, 32, 32), Protocol(
        n_epochs=50, batch_size=32, mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761), lr_milestones=(35, 45), **_CIFAR_AUGMENTATION)),
    "seq-tinyimg": BuiltinSpec("tinyimagenet", 10, 20, (3, 64, 64), Protocol(
        n_epochs=100, batch_size=32, mean=(0.4802, 0.4480, 0.3975),
        std=(0.2770, 0.2691, 0.2821), **_CIFAR_AUGMENTATION)),
}
