"""Class-incremental benchmarks: a dataset split into tasks of consecutive classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import MLP
from .datasets import load_image_data
from .gms import class_to_task_layout


@dataclass(frozen=True)
class BenchmarkSpec:
    dataset: str
    n_tasks: int
    classes_per_task: int
    n_epochs: int
    batch_size: int


BENCHMARKS = {
    "seq-mnist": BenchmarkSpec("mnist", n_tasks=5, classes_per_task=2, n_epochs=1, batch_size=10),
    "seq-fmnist": BenchmarkSpec("fashion-mnist", n_tasks=5, classes_per_task=2, n_epochs=1,
                                batch_size=10),
}


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

    @property
    def num_classes(self) -> int:
        return self.n_tasks * self.classes_per_task

    @property
    def class_to_task(self) -> torch.Tensor:
        c = self.classes_per_task
        return class_to_task_layout([list(range(k * c, (k + 1) * c)) for k in range(self.n_tasks)])

    def task_indices(self, split: str, task: int) -> torch.Tensor:
        labels = self.train_labels if split == "train" else self.test_labels
        first = task * self.classes_per_task
        return ((labels >= first) & (labels < first + self.classes_per_task)).nonzero().squeeze(1)

    def prepare(self, raw_images: torch.Tensor) -> torch.Tensor:
        """Raw uint8 images -> network input (pixels in [0, 1]; no augmentation here)."""
        return torch.div(raw_images, 255.0)  # uint8 / float -> float32, one op

    def make_backbone(self) -> nn.Module:
        height, width = self.train_images.shape[1:]
        return MLP(input_size=height * width, num_classes=self.num_classes)

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
) -> Benchmark:
    """Load benchmark ``name``; ``class_order_seed`` draws a seeded class permutation."""
    spec = BENCHMARKS[name]
    data = load_image_data(spec.dataset, data_root=data_root, download=download,
                           cache_dir=cache_dir)
    num_classes = spec.n_tasks * spec.classes_per_task
    if class_order_seed is None:
        class_order = list(range(num_classes))
    else:
        generator = torch.Generator().manual_seed(class_order_seed)
        class_order = torch.randperm(num_classes, generator=generator).tolist()
    relabel = torch.empty(num_classes, dtype=torch.long)
    relabel[torch.tensor(class_order)] = torch.arange(num_classes)
    return Benchmark(
        name=name,
        n_tasks=spec.n_tasks,
        classes_per_task=spec.classes_per_task,
        train_images=data.train_images,
        train_labels=relabel[data.train_labels],
        test_images=data.test_images,
        test_labels=relabel[data.test_labels],
        class_order=tuple(class_order),
        source=data.source,
    )
