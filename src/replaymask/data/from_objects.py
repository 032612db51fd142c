"""Your own benchmark from objects: tensors or NumPy arrays, or torch Datasets.

    >>> import numpy as np, replaymask
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((600, 20), dtype=np.float32), np.repeat(np.arange(6), 100)
    >>> bench = replaymask.benchmark_from_tensors(
    ...     "toy", train=(x[::2], y[::2]), test=(x[1::2], y[1::2]),
    ...     tasks=[[3, 0, 5], [1], [2, 4]], n_epochs=2, batch_size=16)
    >>> bench.task_sizes, bench.class_order, bench.input_shape
    ((3, 1, 2), (3, 0, 5, 1, 2, 4), (20,))

Every check of the user's data is here, before anything trains: each problem is one
:class:`~replaymask.errors.ConfigError` naming it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError, describe
from ..plugins import check_new_name
from .benchmarks import Benchmark, content_fingerprint
from .protocols import BENCHMARKS, Protocol

AUGMENTATIONS = (None, "none", "crop+flip")


def benchmark_from_tensors(
    name: str,
    train: tuple,
    test: tuple,
    tasks: int | Sequence[Sequence[int]],
    *,
    class_order: Sequence[int] | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    augmentation: str | None = None,
    crop_padding: int = 4,
    n_epochs: int = 1,
    batch_size: int = 10,
    lr_milestones: Sequence[int] = (),
    best_args_from: str | None = None,
    validation_fraction: float = 0.0,
    class_names: Sequence[str] | None = None,
    source: str = "",
    origin: dict | None = None,
) -> Benchmark:
    """A class-incremental benchmark from ``train = (x, y)`` and ``test = (x, y)``.

    ``x``: a tensor or NumPy array, one row per sample, of any per-sample shape (images
    ``(C, H, W)`` or ``(H, W)``, flat features, sequences): uint8 inputs are images,
    scaled by 1/255 as the built-in benchmarks are; floating-point inputs are used as
    they are (as float32). ``y``: integer class labels (any non-negative integers).

    ``tasks``: an int, that many tasks of consecutive classes in ``class_order`` (default:
    the labels in increasing order), or the tasks as lists of classes, in order; sizes may
    differ (``[[3, 7, 1], [9, 0], [5, 2, 8], [4, 6]]``). Every class of the training data
    is in exactly one task and has test samples.

    ``mean``/``std``: normalisation, a number or one per channel (per feature for flat
    inputs). ``augmentation``: None, or ``"crop+flip"`` (random crop with zero padding
    ``crop_padding``, then a horizontal flip, as the built-in vision protocols; images
    ``(C, H, W)`` only). ``n_epochs``, ``batch_size`` and ``lr_milestones`` are the
    protocol's defaults for runs on it; ``best_args_from`` names a built-in benchmark
    whose published best arguments serve its runs (else a run sets ``lr``);
    ``validation_fraction`` (at most 0.5) makes runs evaluate, by default, on that
    fraction of every class's training samples, held out, instead of the test set (as
    ``--validation-fraction``).

    The benchmark shares the memory of ``x`` (uint8 inputs are not copied): do not change
    them in place afterwards.
    """
    _check_name(name)
    train_x, train_y = _split(train, "train")
    test_x, test_y = _split(test, "test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ConfigError(f"train and test samples have different shapes: "
                          f"{tuple(train_x.shape[1:])} and {tuple(test_x.shape[1:])}")
    if train_x.dtype != test_x.dtype:
        raise ConfigError(f"train and test inputs have different types: {train_x.dtype} "
                          f"and {test_x.dtype}")
    classes = sorted(set(train_y.unique().tolist()))
    test_classes = set(test_y.unique().tolist())
    task_lists = _task_lists(tasks, class_order, classes, test_classes)
    order = [c for task in task_lists for c in task]
    protocol = Protocol(
        n_epochs=_count("n_epochs", n_epochs), batch_size=_count("batch_size", batch_size),
        lr_milestones=_milestones(lr_milestones), mean=_statistic("mean", mean, train_x),
        std=_statistic("std", std, train_x, positive=True),
        crop_padding=_augmentation(augmentation, crop_padding, train_x),
        best_args_from=_best_args_from(best_args_from),
        validation_fraction=_fraction(validation_fraction))
    if (protocol.mean is None) != (protocol.std is None):
        raise ConfigError("give mean and std together, or neither")
    # label j for class order[j]; any integers (sparse, huge) through a sorted lookup
    known = torch.tensor(sorted(order), dtype=torch.long)
    position = {c: j for j, c in enumerate(order)}
    new_label = torch.tensor([position[c] for c in known.tolist()], dtype=torch.long)

    def relabel(labels: torch.Tensor) -> torch.Tensor:
        return new_label[torch.searchsorted(known, labels)]
    if class_names is not None:
        class_names = tuple(str(name) for name in class_names)
        if len(class_names) <= max(order):
            raise ConfigError(f"class_names has {len(class_names)} names, but the labels go "
                              f"up to {max(order)}")
    benchmark = Benchmark(
        name=name, train_inputs=train_x, train_labels=relabel(train_y), test_inputs=test_x,
        test_labels=relabel(test_y), task_sizes=tuple(len(task) for task in task_lists),
        class_order=tuple(order), protocol=protocol,
        source=source or f"tensors: {len(train_y)} training and {len(test_y)} test samples "
                         f"of shape {tuple(train_x.shape[1:])}",
        origin=origin or {"kind": "tensors"}, class_names=class_names)
    return _fingerprinted(benchmark)


def benchmark_from_datasets(name: str, train_dataset, test_dataset,
                            tasks: int | Sequence[Sequence[int]], *, progress: bool = True,
                            **options) -> Benchmark:
    """A benchmark from two torch ``Dataset``s of ``(input, label)`` items (tensors, NumPy
    arrays, numbers or PIL images: a colour image becomes ``(3, H, W)`` uint8, a
    grayscale one ``(H, W)``), read once into tensors, with a progress bar. ``tasks`` and
    the other options are :func:`benchmark_from_tensors`'s."""
    _check_name(name)
    train = _materialise(train_dataset, "train", progress)
    test = _materialise(test_dataset, "test", progress)
    kind = type(train_dataset).__module__ + "." + type(train_dataset).__qualname__
    options.setdefault("source", f"datasets: {kind}, {len(train[1])} training and "
                                 f"{len(test[1])} test samples")
    options.setdefault("origin", {"kind": "datasets", "class": kind})
    return benchmark_from_tensors(name, train, test, tasks, **options)


def _fingerprinted(benchmark: Benchmark) -> Benchmark:
    from dataclasses import replace

    return replace(benchmark, fingerprint=content_fingerprint(benchmark))


def _check_name(name) -> None:
    check_new_name("benchmark", name, BENCHMARKS)


def _split(pair, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ConfigError(f"{split} must be a pair (inputs, labels), got {describe(pair)}")
    inputs, labels = (_as_tensor(value, f"{split} {what}")
                      for value, what in zip(pair, ("inputs", "labels"), strict=True))
    if inputs.dim() < 2:
        raise ConfigError(f"{split} inputs must hold one row per sample (at least 2 "
                          f"dimensions), got shape {tuple(inputs.shape)}")
    if labels.dim() != 1 or len(labels) != len(inputs):
        raise ConfigError(f"{split} labels must be one per sample: shape ({len(inputs)},), "
                          f"got {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ConfigError(f"{split} holds no samples")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ConfigError(f"{split} labels must be integers, got {labels.dtype}")
    labels = labels.long()
    if int(labels.min()) < 0:
        raise ConfigError(f"{split} labels must be >= 0, got {int(labels.min())}")
    if inputs.dtype == torch.uint8:
        return inputs, labels
    if not inputs.dtype.is_floating_point:
        raise ConfigError(f"{split} inputs must be uint8 (images) or floating point, got "
                          f"{inputs.dtype}")
    inputs = inputs.float()
    finite = torch.isfinite(inputs).flatten(1).all(1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ConfigError(f"{split} inputs hold NaN or infinite values ({int((~finite).sum())} "
                          f"samples, the first is sample {bad})")
    return inputs, labels


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what} must be a tensor or NumPy array: {error}") from None
    if array.dtype.kind not in "biuf":  # objects, strings, dates, complex numbers
        raise ConfigError(f"{what} must be a tensor or a NumPy array of numbers, got "
                          f"{describe(value)}")
    with warnings.catch_warnings():  # read-only memory is shared: inputs are never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


def _task_lists(tasks, class_order, classes: list[int], test_classes: set[int]
                ) -> list[list[int]]:
    if isinstance(tasks, bool) or not isinstance(tasks, (int, list, tuple)):
        raise ConfigError(f"tasks must be a number of tasks or a list of class lists, got "
                          f"{describe(tasks)}")
    if isinstance(tasks, int):
        order = _class_order(class_order, classes)
        if tasks < 2:
            raise ConfigError(f"tasks must be at least 2, got {tasks}")
        if len(order) % tasks:
            raise ConfigError(f"{tasks} tasks do not split {len(order)} classes evenly: give "
                              "the tasks as lists of classes for tasks of different sizes")
        size = len(order) // tasks
        task_lists = [order[i:i + size] for i in range(0, len(order), size)]
    else:
        task_lists = [_class_list(task, k) for k, task in enumerate(tasks)]
        if len(task_lists) < 2:
            raise ConfigError(f"tasks must list at least 2 tasks, got {len(task_lists)}")
        if class_order is not None and list(class_order) != [c for t in task_lists for c in t]:
            raise ConfigError("class_order and the task lists disagree: give one of them")
    where: dict[int, int] = {}
    for k, task in enumerate(task_lists):
        for c in task:
            if c in where:
                raise ConfigError(f"class {c} is in two tasks: {where[c] + 1} and {k + 1}")
            where[c] = k
    for c in classes:
        if c not in where:
            raise ConfigError(f"class {c} has training samples but is in no task")
    for k, task in enumerate(task_lists):
        missing = [c for c in task if c not in classes]
        if missing and len(missing) == len(task):
            raise ConfigError(f"task {k + 1} has no training samples (classes {missing})")
        if missing:
            raise ConfigError(f"class {missing[0]} of task {k + 1} has no training samples")
    for c in classes:
        if c not in test_classes:
            raise ConfigError(f"class {c} has training samples but no test samples")
    extra = sorted(test_classes - set(classes))
    if extra:
        raise ConfigError(f"class {extra[0]} has test samples but no training samples")
    return task_lists


def _class_order(class_order, classes: list[int]) -> list[int]:
    if class_order is None:
        return list(classes)
    order = _class_list(class_order, None)
    if sorted(order) != classes:
        raise ConfigError(f"class_order must list every class of the training data once "
                          f"({classes}), got {describe(order)}")
    return order


def _class_list(value, task: int | None) -> list[int]:
    what = "class_order" if task is None else f"task {task + 1}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not (
            isinstance(value, (np.ndarray, torch.Tensor))):
        raise ConfigError(f"{what} must be a list of classes, got {describe(value)}")
    found = []
    for c in list(value.tolist() if hasattr(value, "tolist") else value):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
            raise ConfigError(f"{what} must hold class labels (integers >= 0), got "
                              f"{describe(c)}")
        found.append(int(c))
    if not found:
        raise ConfigError(f"{what} is empty")
    return found


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {describe(value)}")
    return value


def _milestones(value) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ConfigError(f"lr_milestones must be epochs (integers >= 1), got {describe(value)}")
    return tuple(value)


def _statistic(name: str, value, inputs: torch.Tensor, positive: bool = False
               ) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else value
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or a list of numbers, got "
                          f"{describe(value)}") from None
    channels = inputs.shape[1]
    if not numbers or len(numbers) not in (1, channels) or not all(
            math.isfinite(v) and (v > 0 or not positive) for v in numbers):
        raise ConfigError(f"{name} must be one finite number{' > 0' if positive else ''} or "
                          f"{channels} (one per channel), got {describe(value)}")
    return numbers


def _augmentation(augmentation, crop_padding, inputs: torch.Tensor) -> int | None:
    if augmentation not in AUGMENTATIONS:
        raise ConfigError(f"augmentation must be None or 'crop+flip', got "
                          f"{describe(augmentation)}")
    if augmentation in (None, "none"):
        return None
    if inputs.dim() != 4:
        raise ConfigError(f"augmentation 'crop+flip' needs images of shape (C, H, W), got "
                          f"samples of shape {tuple(inputs.shape[1:])}")
    return _count("crop_padding", crop_padding)


def _fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= 0.5):
        raise ConfigError(f"validation_fraction must be a number from 0 to 0.5, got "
                          f"{describe(value)}")
    return float(value)


def _best_args_from(name):
    if name is not None and name not in BENCHMARKS:
        raise ConfigError(f"best_args_from must name a built-in benchmark "
                          f"({', '.join(BENCHMARKS)}), got {describe(name)}")
    return name


def _materialise(dataset, split: str, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(input, label)`` item of ``dataset``, stacked into two tensors."""
    try:
        count = len(dataset)
    except TypeError:
        raise ConfigError(f"the {split} dataset must have a length (a map-style torch "
                          f"Dataset), got {type(dataset).__name__}") from None
    if count == 0:
        raise ConfigError(f"the {split} dataset holds no samples")
    inputs, labels = None, torch.empty(count, dtype=torch.long)
    for i in tqdm(range(count), desc=f"reading {split} data", unit="item",
                  disable=not progress, mininterval=0.5):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ConfigError(f"{split} item {i} must be (input, label), got "
                              f"{describe(item)}")
        sample, label = _sample(item[0], split, i), item[1]
        if inputs is None:
            inputs = torch.empty((count, *sample.shape), dtype=sample.dtype)
        elif sample.shape != inputs.shape[1:] or sample.dtype != inputs.dtype:
            raise ConfigError(f"{split} item {i} has shape {tuple(sample.shape)} "
                              f"({sample.dtype}), item 0 {tuple(inputs.shape[1:])} "
                              f"({inputs.dtype}): every input must have one shape")
        inputs[i] = sample
        if isinstance(label, torch.Tensor):
            label = label.item() if label.numel() == 1 else label
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise ConfigError(f"{split} item {i}'s label must be an integer, got "
                              f"{describe(label)}")
        labels[i] = int(label)
    return inputs, labels


def _sample(value, split: str, index: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if hasattr(value, "getbands") and hasattr(value, "size"):  # a PIL image
        array = np.asarray(value.convert("RGB") if value.mode not in ("L", "RGB") else value)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)
                                                     if array.ndim == 3 else array))
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "uif":
        raise ConfigError(f"{split} item {index}'s input must be a tensor, array or image, "
                          f"got {describe(value)}")
    return torch.from_numpy(np.array(array))
