"""Class-incremental benchmarks: tensors split into tasks of classes, with their protocol.

A :class:`Benchmark` is the one form every benchmark takes, built-in or the user's own
(:mod:`replaymask.data.from_objects`, :mod:`replaymask.data.folders`): its tensors with
labels renumbered in class order, its task split, and the protocol runs on it follow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from ..errors import ConfigError
from .augment import EvalTransform, TrainTransform
from .mnist import load_image_data
from .protocols import BENCHMARKS, BenchmarkInfo, Protocol, TaskLayout


@dataclass(frozen=True, eq=False)
class Benchmark(TaskLayout):
    """The tensors of a class-incremental benchmark, labels renumbered in class order.

    After renumbering, task k holds the labels ``offsets[k] .. offsets[k+1] - 1`` (its
    ``task_sizes[k]`` classes), so the logit of label j is output j and the classes seen
    so far are always a prefix; ``class_order[j]`` is the original class of label j (and
    ``class_names[class_order[j]]`` its name, where the classes have names).

    Inputs are raw: uint8 images (scaled by 1/255, then normalised, when a network sees
    them) or float32 values (used as they are, then normalised where the protocol has a
    mean and std); the buffer stores them raw and the training transform augments them.
    """

    name: str
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    task_sizes: tuple[int, ...]
    class_order: tuple[int, ...]
    protocol: Protocol = field(default_factory=Protocol)
    source: str = ""  # in words: where the data came from
    origin: dict = field(default_factory=dict)  # how it was made (see BenchmarkInfo)
    fingerprint: str | None = None  # None: built-in (its name is its identity)
    class_names: tuple[str, ...] | None = None  # of the original classes, where named
    options: tuple[tuple[str, object], ...] = ()  # a registered benchmark's keyword options
    # a run's scenario applied by with_scenario: (setting, value) pairs; () for the
    # benchmark itself (only that is what a fingerprint names and a run is resolved on)
    scenario: tuple[tuple[str, object], ...] = ()

    @property
    def classes_per_task(self) -> int:
        """The classes of every task, where all tasks have as many (else a ValueError)."""
        if len(set(self.task_sizes)) != 1:
            raise ValueError(f"{self.name}'s tasks have different sizes {self.task_sizes}")
        return self.task_sizes[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_inputs.shape[1:])

    @property
    def class_to_task(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(self.n_tasks),
                                       torch.tensor(self.task_sizes))

    @property
    def info(self) -> BenchmarkInfo:
        """The benchmark without its tensors: what resolving a run on it needs."""
        return BenchmarkInfo(name=self.name, task_sizes=self.task_sizes,
                             input_shape=self.input_shape, protocol=self.protocol,
                             fingerprint=self.fingerprint, origin=dict(self.origin),
                             options=self.options)

    def task_indices(self, split: str, task: int) -> torch.Tensor:
        labels = self.train_labels if split == "train" else self.test_labels
        first, end = self.task_offsets[task], self.task_offsets[task + 1]
        return ((labels >= first) & (labels < end)).nonzero().squeeze(1)

    def prepare(self, raw_inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> network input, as at test time (normalised, not augmented)."""
        return self.test_transform(raw_inputs)

    @cached_property
    def test_transform(self) -> EvalTransform:
        """:meth:`prepare` as an object (its ``mean`` and ``std``: the normalisation)."""
        return EvalTransform(self.protocol.mean, self.protocol.std)

    def train_transform(self, generator: torch.Generator | None = None,
                        channels_last: bool = False) -> EvalTransform:
        """The training transform, batched on the inputs' device: random crop + flip +
        normalise where the protocol augments, else the test transform."""
        protocol = self.protocol
        if protocol.crop_padding is None:
            return EvalTransform(protocol.mean, protocol.std, channels_last)
        return TrainTransform(protocol.mean, protocol.std, protocol.crop_padding, generator,
                              channels_last)

    def to(self, device: torch.device | str) -> Benchmark:
        return replace(self, **{key: getattr(self, key).to(device) for key in
                                ("train_inputs", "train_labels", "test_inputs", "test_labels")})

    def with_scenario(self, class_order_seed: int | None = None, n_tasks: int | None = None,
                      validation_fraction: float = 0.0) -> Benchmark:
        """This benchmark under a run's scenario: its classes in a seeded order (the same
        task sizes, unless ``n_tasks`` re-splits them into that many equal tasks), and
        with ``validation_fraction`` > 0 that fraction of every class's training inputs
        held out and evaluated in place of the test set (:func:`hold_out_validation`)."""
        benchmark = self
        if n_tasks is not None and (self.n_tasks, len(set(self.task_sizes))) != (n_tasks, 1):
            if self.num_classes % n_tasks:
                raise ConfigError(f"{n_tasks} tasks do not split {self.name}'s "
                                  f"{self.num_classes} classes evenly")
            benchmark = replace(benchmark, task_sizes=(self.num_classes // n_tasks,) * n_tasks,
                                scenario=(*benchmark.scenario, ("n_tasks", n_tasks)))
        if class_order_seed is not None:
            generator = torch.Generator().manual_seed(class_order_seed)
            permutation = torch.randperm(self.num_classes, generator=generator)
            relabel = torch.empty(self.num_classes, dtype=torch.long)
            relabel[permutation] = torch.arange(self.num_classes)
            benchmark = replace(
                benchmark, train_labels=relabel.to(self.train_labels.device)[self.train_labels],
                test_labels=relabel.to(self.test_labels.device)[self.test_labels],
                class_order=tuple(self.class_order[i] for i in permutation.tolist()),
                scenario=(*benchmark.scenario, ("class_order_seed", class_order_seed)))
        if validation_fraction:
            kept, held_out = hold_out_validation(benchmark.train_labels, validation_fraction)
            inputs, labels = benchmark.train_inputs, benchmark.train_labels
            counts = torch.bincount(labels[held_out].cpu(), minlength=self.num_classes)
            if not bool((counts > 0).all()):
                empty = int((counts == 0).nonzero()[0, 0])
                raise ConfigError(
                    f"--validation-fraction {validation_fraction:g} holds out no training "
                    f"sample of {self.name}'s class {benchmark.class_order[empty]} (it has "
                    f"{int((labels == empty).sum())}): choose a larger fraction")
            what = "images" if inputs.dtype == torch.uint8 else "samples"
            benchmark = replace(
                benchmark, train_inputs=inputs[kept], train_labels=labels[kept],
                test_inputs=inputs[held_out], test_labels=labels[held_out],
                source=benchmark.source + (
                    f"; evaluated on a validation split: {validation_fraction:.0%} of every "
                    f"class's training {what} held out ({len(held_out)}), not the test set"),
                scenario=(*benchmark.scenario, ("validation_fraction", validation_fraction)))
        return benchmark


def load_benchmark(
    name: str,
    data_root=None,
    class_order_seed: int | None = None,
    download: bool = True,
    cache_dir=None,
    n_tasks: int | None = None,
    validation_fraction: float = 0.0,
) -> Benchmark:
    """Load built-in benchmark ``name``; ``class_order_seed``, ``n_tasks`` and
    ``validation_fraction`` set its scenario (:meth:`Benchmark.with_scenario`)."""
    spec = BENCHMARKS[name]
    loader = load_image_data
    if spec.dataset in ("cifar10", "cifar100", "tinyimagenet"):
        from .vision import load_vision_data as loader
    data = loader(spec.dataset, data_root=data_root, download=download, cache_dir=cache_dir)
    info = spec.info(name)
    benchmark = Benchmark(
        name=name, train_inputs=data.train_images, train_labels=data.train_labels,
        test_inputs=data.test_images, test_labels=data.test_labels,
        task_sizes=info.task_sizes, class_order=tuple(range(info.num_classes)),
        protocol=spec.protocol, source=data.source, origin=info.origin)
    return benchmark.with_scenario(class_order_seed, n_tasks, validation_fraction)


# The validation split is one fixed draw, the same for every run, seed and class order.
VALIDATION_SPLIT_SEED = 0


def hold_out_validation(labels: torch.Tensor, fraction: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out): indices into ``labels``, each in their original order. Of every
    class, ``round(fraction * count)`` inputs, drawn by one fixed permutation
    (``VALIDATION_SPLIT_SEED``), are held out; the rest are kept for training."""
    generator = torch.Generator().manual_seed(VALIDATION_SPLIT_SEED)
    order = torch.randperm(len(labels), generator=generator)
    held = torch.zeros(len(labels), dtype=torch.bool)
    shuffled = labels.cpu()[order]
    for label in shuffled.unique().tolist():
        members = order[shuffled == label]
        held[members[:round(fraction * len(members))]] = True
    return (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)


def content_fingerprint(benchmark: Benchmark) -> str:
    """SHA-256 of a benchmark's tensors (dtype, shape and bytes), labels, task split,
    class order and protocol: two benchmarks share it only if runs on them are equal."""
    digest = hashlib.sha256()
    described = {"task_sizes": list(benchmark.task_sizes),
                 "class_order": list(benchmark.class_order),
                 "protocol": benchmark.protocol.to_dict()}
    digest.update(json.dumps(described, sort_keys=True).encode())
    for key in ("train_inputs", "train_labels", "test_inputs", "test_labels"):
        tensor = getattr(benchmark, key).detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(memoryview(tensor.view(torch.uint8).numpy()) if tensor.numel() else b"")
    return digest.hexdigest()
