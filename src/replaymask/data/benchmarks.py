"""Class-incremental benchmarks: a dataset split into tasks of consecutive classes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .augment import EvalTransform, TrainTransform
from .mnist import load_image_data
from .protocols import BENCHMARKS


@dataclass(frozen=True)
class Benchmark:
    """Tensors of a class-incremental benchmark, labels renumbered in class order.

    After renumbering, task k holds labels ``k*C .. (k+1)*C - 1`` (C classes per task),
    so the logit of label j is output j and the seen classes are always a prefix.
    ``class_order[j]`` is the original class of label j.
    """

    name: str
    n_tasks: int
    classes_per_task: int
    train_images: torch.Tensor  # uint8, raw: never augmented, what the buffer stores
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_order: tuple[int, ...]
    source: str
    backbone: str = "mlp"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_padding: int | None = None

    @property
    def num_classes(self) -> int:
        return self.n_tasks * self.classes_per_task

    @property
    def class_to_task(self) -> torch.Tensor:
        return torch.arange(self.num_classes) // self.classes_per_task

    def task_indices(self, split: str, task: int) -> torch.Tensor:
        labels = self.train_labels if split == "train" else self.test_labels
        first = task * self.classes_per_task
        return ((labels >= first) & (labels < first + self.classes_per_task)).nonzero().squeeze(1)

    def prepare(self, raw_images: torch.Tensor) -> torch.Tensor:
        """Raw uint8 images -> network input, as at test time (normalised, not augmented)."""
        return self._test_transform(raw_images)

    @cached_property
    def _test_transform(self) -> EvalTransform:
        return EvalTransform(self.mean, self.std)

    def train_transform(self, generator: torch.Generator | None = None,
                        channels_last: bool = False) -> EvalTransform:
        """The training transform, batched on the images' device: random crop + flip +
        normalise where the protocol augments, else the test transform."""
        if self.crop_padding is None:
            return EvalTransform(self.mean, self.std, channels_last)
        return TrainTransform(self.mean, self.std, self.crop_padding, generator, channels_last)

    def to(self, device: torch.device | str) -> Benchmark:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("train_images", "train_labels", "test_images", "test_labels"):
            fields[key] = fields[key].to(device)
        return Benchmark(**fields)


def load_benchmark(
    name: str,
    data_root=None,
    class_order_seed: int | None = None,
    download: bool = True,
    cache_dir=None,
    n_tasks: int | None = None,
    validation_fraction: float = 0.0,
) -> Benchmark:
    """Load benchmark ``name``; ``class_order_seed`` draws a seeded class permutation,
    ``n_tasks`` splits the classes into that many tasks instead of the protocol's, and
    ``validation_fraction`` > 0 puts that fraction of every class's training images in
    the place of the test set (:func:`hold_out_validation`)."""
    spec = BENCHMARKS[name]
    loader = load_image_data
    if spec.dataset in ("cifar10", "cifar100", "tinyimagenet"):
        from .vision import load_vision_data as loader
    data = loader(spec.dataset, data_root=data_root, download=download, cache_dir=cache_dir)
    num_classes = spec.n_tasks * spec.classes_per_task
    n_tasks = n_tasks or spec.n_tasks
    if num_classes % n_tasks:
        raise ValueError(f"{n_tasks} tasks do not split {num_classes} classes evenly")
    if class_order_seed is None:
        class_order = list(range(num_classes))
    else:
        generator = torch.Generator().manual_seed(class_order_seed)
        class_order = torch.randperm(num_classes, generator=generator).tolist()
    relabel = torch.empty(num_classes, dtype=torch.long)
    relabel[torch.tensor(class_order)] = torch.arange(num_classes)
    train_images, train_labels = data.train_images, relabel[data.train_labels]
    test_images, test_labels, source = data.test_images, relabel[data.test_labels], data.source
    if validation_fraction:
        kept, held_out = hold_out_validation(train_labels, validation_fraction)
        test_images, test_labels = train_images[held_out], train_labels[held_out]
        train_images, train_labels = train_images[kept], train_labels[kept]
        source += (f"; evaluated on a validation split: {validation_fraction:.0%} of every "
                   f"class's training images held out ({len(held_out)}), not the test set")
    return Benchmark(
        name=name,
        n_tasks=n_tasks,
        classes_per_task=num_classes // n_tasks,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_order=tuple(class_order),
        source=source,
        backbone=spec.backbone,
        mean=spec.mean,
        std=spec.std,
        crop_padding=spec.crop_padding,
    )


# The validation split is one fixed draw, the same for every run, seed and class order.
VALIDATION_SPLIT_SEED = 0


def hold_out_validation(labels: torch.Tensor, fraction: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out): indices into ``labels``, each in their original order. Of every
    class, ``round(fraction * count)`` images, drawn by one fixed permutation
    (``VALIDATION_SPLIT_SEED``), are held out; the rest are kept for training."""
    generator = torch.Generator().manual_seed(VALIDATION_SPLIT_SEED)
    order = torch.randperm(len(labels), generator=generator)
    held = torch.zeros(len(labels), dtype=torch.bool)
    shuffled = labels.cpu()[order]
    for label in shuffled.unique().tolist():
        members = order[shuffled == label]
        held[members[:round(fraction * len(members))]] = True
    return (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
