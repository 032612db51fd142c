"""Small CIFAR-10, CIFAR-100 and TinyImageNet data sets written in the exact on-disk formats.

The CIFAR pickles are written as the originals were, by Python 2's cPickle (protocol 2,
text as 8-bit strings, ``numpy.core.multiarray._reconstruct``), so that reading them
with ``encoding="bytes"`` gives the same bytes keys as the real files.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_SIDE = 32
TINY_SIDE = 64


def class_templates(n_classes: int, side: int, seed: int = 1234) -> np.ndarray:
    """A fixed random (3, side, side) template per class."""
    return np.random.default_rng(seed).integers(0, 256, size=(n_classes, 3, side, side))


def separable_colour_images(labels: np.ndarray, templates: np.ndarray,
                            rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 3, H, W): the class template plus noise; easy to learn, as in conftest."""
    noise = rng.integers(0, 256, size=(len(labels), *templates.shape[1:]))
    return (0.6 * templates[labels] + 0.4 * noise).astype(np.uint8)


def make_cifar_arrays(n_classes: int, per_class_train: int, per_class_test: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays the CIFAR writers store: images uint8 (N, 3, 32, 32), labels int64."""
    rng = np.random.default_rng(seed)
    templates = class_templates(n_classes, CIFAR_SIDE)
    train_labels = np.repeat(np.arange(n_classes), per_class_train)
    test_labels = np.repeat(np.arange(n_classes), per_class_test)
    rng.shuffle(train_labels)
    rng.shuffle(test_labels)
    return {
        "train_images": separable_colour_images(train_labels, templates, rng),
        "train_labels": train_labels,
        "test_images": separable_colour_images(test_labels, templates, rng),
        "test_labels": test_labels,
    }


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did: protocol 2, str and bytes as 8-bit BINSTRINGs,
    numpy's reconstructor under its old module name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        legacy = {np.ndarray: "numpy\nndarray\n", np.dtype: "numpy\ndtype\n",
                  _RECONSTRUCT: "numpy.core.multiarray\n_reconstruct\n"}.get(obj)
        if legacy is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + legacy.encode())
        self.memoize(obj)


_RECONSTRUCT = np.zeros(1).__reduce__()[0]


def py2_pickle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer).dump(obj)
    return buffer.getvalue()


def write_cifar_batch(path: Path, data, labels, label_key: str = "labels",
                      extra: dict | None = None) -> Path:
    """One batch file: {"data": uint8 (N, 3072), label_key: [int], ...} as Python 2 wrote it.
    ``data`` and ``labels`` are written as given, so tests can write bad ones."""
    batch = {"batch_label": f"batch {path.name}", "data": data, label_key: labels}
    if isinstance(labels, np.ndarray):
        batch[label_key] = labels.tolist()
    batch.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle_bytes(batch))
    return path


def _flat(images: np.ndarray) -> np.ndarray:
    """(N, 3, 32, 32) -> (N, 3072): 1024 R, 1024 G, 1024 B values, each plane row-major."""
    return np.ascontiguousarray(images.reshape(len(images), -1))


def write_cifar10_like(root: Path, per_class_train=20, per_class_test=5, seed=0) -> Path:
    """ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; see
    ``make_cifar_arrays(10, per_class_train, per_class_test, seed)`` for the content."""
    folder = Path(root) / "cifar-10-batches-py"
    arrays = make_cifar_arrays(10, per_class_train, per_class_test, seed)
    images, labels = _flat(arrays["train_images"]), arrays["train_labels"]
    for i, (part_x, part_y) in enumerate(zip(np.array_split(images, 5),
                                             np.array_split(labels, 5), strict=True)):
        write_cifar_batch(folder / f"data_batch_{i + 1}", part_x, part_y,
                          extra={"filenames": [f"img_{i}_{j}.png" for j in range(len(part_y))]})
    write_cifar_batch(folder / "test_batch", _flat(arrays["test_images"]),
                      arrays["test_labels"])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    (folder / "batches.meta").write_bytes(py2_pickle_bytes(
        {"num_cases_per_batch": len(labels) // 5, "label_names": names, "num_vis": 3072}))
    return folder


def write_cifar100_like(root: Path, per_class_train=3, per_class_test=1, seed=0) -> Path:
    """ROOT/cifar-100-python/{train,test,meta} with fine (and coarse) labels; see
    ``make_cifar_arrays(100, per_class_train, per_class_test, seed)``."""
    folder = Path(root) / "cifar-100-python"
    arrays = make_cifar_arrays(100, per_class_train, per_class_test, seed)
    for split in ("train", "test"):
        fine = arrays[f"{split}_labels"]
        write_cifar_batch(folder / split, _flat(arrays[f"{split}_images"]), fine,
                          label_key="fine_labels",
                          extra={"coarse_labels": (fine // 5).tolist()})
    (folder / "meta").write_bytes(py2_pickle_bytes(
        {"fine_label_names": [f"fine{i}" for i in range(100)],
         "coarse_label_names": [f"coarse{i}" for i in range(20)]}))
    return folder


def tiny_wnids(seed: int = 0) -> list[str]:
    """200 distinct wnids like "n01443537", in the (unsorted) order wnids.txt lists them."""
    numbers = np.random.default_rng(seed).choice(10**7, size=200, replace=False)
    return [f"n0{n:07d}" for n in numbers]


def _save_jpeg(path: Path, image_chw: np.ndarray, grayscale: bool) -> None:
    image = Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0)), "RGB")
    if grayscale:  # like the few grayscale images of the real set
        image = image.convert("L")
    image.save(path, "JPEG", quality=90)


def write_tinyimagenet_like(root: Path, per_class_train=2, per_class_test=1, seed=0) -> Path:
    """ROOT/tiny-imagenet-200/ with 200 classes: wnids.txt, words.txt,
    train/<wnid>/images/<wnid>_<i>.JPEG (+ <wnid>_boxes.txt), val/images/val_<i>.JPEG with
    val/val_annotations.txt (tab-separated), and a few unlabelled test/images; 64x64 JPEGs,
    every seventh one grayscale."""
    folder = Path(root) / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    wnids = tiny_wnids(seed)
    templates = class_templates(len(wnids), TINY_SIDE, seed=4321)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    count = 0
    for c, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        pixels = separable_colour_images(np.full(per_class_train, c), templates, rng)
        boxes = []
        for i in range(per_class_train):
            _save_jpeg(images / f"{wnid}_{i}.JPEG", pixels[i], grayscale=count % 7 == 3)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
            count += 1
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    val_labels = np.repeat(np.arange(len(wnids)), per_class_test)
    rng.shuffle(val_labels)
    (folder / "val" / "images").mkdir(parents=True)
    pixels = separable_colour_images(val_labels, templates, rng)
    lines = []
    for i, c in enumerate(val_labels):
        _save_jpeg(folder / "val" / "images" / f"val_{i}.JPEG", pixels[i], grayscale=i % 7 == 3)
        lines.append(f"val_{i}.JPEG\t{wnids[c]}\t{i % 10}\t{i % 9}\t{40 + i % 20}\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    (folder / "test" / "images").mkdir(parents=True)
    for i in range(2):
        _save_jpeg(folder / "test" / "images" / f"test_{i}.JPEG", pixels[i], grayscale=False)
    return folder
