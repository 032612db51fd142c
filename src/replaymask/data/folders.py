"""Your own benchmark from an image tree: ``root/train/<class>/*`` and ``root/test/<class>/*``.

The images (PNG or JPEG) are decoded once with Pillow into uint8 arrays and cached; the
cache is keyed by the files' names, sizes and modification times, so a changed, added or
removed file decodes the tree again and an unchanged tree loads in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, describe
from .benchmarks import Benchmark
from .cache import read_cached_arrays, write_cached_arrays
from .from_objects import _check_name, benchmark_from_tensors
from .sources import decode_in_threads, default_cache_dir, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_FORMAT = "folder-v2"  # change when decoding changes: older caches are then ignored
SPLITS = ("train", "test")
CACHED_KEYS = ("train_inputs", "train_labels", "test_inputs", "test_labels")


def benchmark_from_folder(name: str, root: str | Path, tasks: int | Sequence, *,
                          image_size: int | tuple[int, int] | None = None,
                          progress: bool = True, cache_dir: str | Path | None = None,
                          **options) -> Benchmark:
    """A benchmark from ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG/JPEG).

    The classes are the folder names, in sorted order (class i is the i-th name);
    ``tasks`` is a number of tasks or the tasks as lists of class names (or indices).
    Grayscale images become ``(H, W)`` uint8 inputs, colour ones ``(3, H, W)`` (a tree
    holding both is read as colour). All images must have one size unless ``image_size``
    (``(H, W)`` or one number) resizes them. The other options are
    :func:`~replaymask.data.from_objects.benchmark_from_tensors`'s.
    """
    _check_name(name)
    root = Path(root)
    size = _image_size(image_size)
    listing = _list_tree(root)
    names = sorted(set(listing["train"]))
    for class_name in listing["test"]:
        if class_name not in listing["train"]:
            raise ConfigError(f"{root}/test/{class_name} has no training folder "
                              f"{root}/train/{class_name}")
    for class_name in names:
        if class_name not in listing["test"]:
            raise ConfigError(f"class {class_name!r} has training images but no test "
                              f"images (no {root}/test/{class_name}/ with images)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(listing, size)
    # one cache per benchmark name and root: a new key replaces only that one's older file
    place = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    cache_file = cache / f"folder-{name}-{place}-{key}.npz"
    arrays = _read_cache(cache_file, names)
    if arrays is None:
        arrays = {}
        for split in SPLITS:
            paths, labels = [], []
            for index, class_name in enumerate(names):
                for file_name, _, _ in listing[split].get(class_name, []):
                    paths.append(root / split / class_name / file_name)
                    labels.append(index)
            arrays[f"{split}_inputs"] = decode_images(paths, size, f"{name} {split}", progress)
            arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        _unify_channels(arrays)
        write_cached_arrays(cache_file, {**arrays, "class_names": np.asarray(names)},
                            stale=f"folder-{name}-{place}-*.npz")
    options.setdefault("source", f"folder {root}: {len(arrays['train_labels'])} training and "
                                 f"{len(arrays['test_labels'])} test images, "
                                 f"{len(names)} classes")
    options.setdefault("origin", {"kind": "folder", "root": str(root.absolute())})
    return benchmark_from_tensors(
        name, (arrays["train_inputs"], arrays["train_labels"]),
        (arrays["test_inputs"], arrays["test_labels"]), _task_classes(tasks, names),
        class_names=names, **options)


def _image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, int) else image_size
    if (isinstance(image_size, bool) or not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                       for v in pair)):
        raise ConfigError(f"image_size must be a size in pixels or (height, width), got "
                          f"{describe(image_size)}")
    return int(pair[0]), int(pair[1])


def _list_tree(root: Path) -> dict[str, dict[str, list[tuple[str, int, int]]]]:
    """split -> class -> [(file name, size, mtime ns)], sorted; classes with no image left
    out."""
    if not root.is_dir():
        raise ConfigError(f"image folder {str(root)!r} is not a readable directory")
    listing = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise ConfigError(f"{root} has no {split}/ folder: the layout is "
                              f"{root}/train/<class>/*.png and {root}/test/<class>/*.png")
        classes = {}
        try:
            class_dirs = [entry for entry in os.scandir(folder) if entry.is_dir()]
            for entry in class_dirs:
                files = sorted((f.name, *_size_and_time(f)) for f in os.scandir(entry.path)
                               if f.name.lower().endswith(IMAGE_SUFFIXES) and f.is_file())
                if files:
                    classes[entry.name] = files
        except OSError as error:
            raise ConfigError(f"cannot read {folder}: {error.strerror or error}") from None
        if not classes:
            raise ConfigError(f"{folder} holds no class folders with PNG or JPEG images")
        listing[split] = classes
    return listing


def _size_and_time(entry: os.DirEntry) -> tuple[int, int]:
    stat = entry.stat()
    return stat.st_size, stat.st_mtime_ns


def _cache_key(listing, size) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{size}".encode())
    for split in SPLITS:
        for class_name in sorted(listing[split]):
            digest.update(f"|{split}/{class_name}".encode())
            for file_name, file_size, mtime in listing[split][class_name]:
                digest.update(f"|{file_name}:{file_size}:{mtime}".encode())
    return digest.hexdigest()[:16]


def decode_images(paths: list[Path], size: tuple[int, int] | None, what: str,
                  progress: bool = True) -> np.ndarray:
    """The images at ``paths`` as one uint8 array: (N, H, W) if all are grayscale, else
    (N, 3, H, W); decoded on a few threads."""
    from PIL import Image

    decoded: list[np.ndarray | None] = [None] * len(paths)

    def decode(i: int) -> None:
        path = paths[i]
        try:
            with Image.open(path) as image:
                if image.mode.startswith("I;16"):  # 16-bit grayscale: its top 8 bits
                    image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8), "L")
                elif image.mode in ("I", "F"):
                    raise ConfigError(f"{path}: a {image.mode!r} image (32-bit integer or "
                                      "float pixels): convert the images to 8 or 16 bits")
                image = image.convert("L" if image.mode in ("1", "L") else "RGB")
                if size is not None and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
                array = np.asarray(image)
        except ConfigError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) \
                as error:
            raise ConfigError(one_line(f"{path}: unreadable or corrupt image ({error})")) \
                from None
        decoded[i] = array.transpose(2, 0, 1) if array.ndim == 3 else array

    decode_in_threads(decode, len(paths), f"decoding {what} images", progress)
    shapes = {array.shape[-2:] for array in decoded}
    if len(shapes) > 1:
        first = decoded[0].shape[-2:]
        other = next(i for i, a in enumerate(decoded) if a.shape[-2:] != first)
        raise ConfigError(f"images have different sizes: {paths[0]} is {first[1]}x{first[0]}, "
                          f"{paths[other]} {decoded[other].shape[-1]}x"
                          f"{decoded[other].shape[-2]}: pass image_size to resize them")
    if any(array.ndim == 3 for array in decoded):
        decoded = [np.repeat(a[None], 3, 0) if a.ndim == 2 else a for a in decoded]
    return np.stack(decoded)


def _unify_channels(arrays: dict[str, np.ndarray]) -> None:
    """Both splits grayscale, or both colour (a grayscale split is repeated to 3 channels)."""
    train, test = arrays["train_inputs"], arrays["test_inputs"]
    if train.ndim != test.ndim:
        key = "train_inputs" if train.ndim == 3 else "test_inputs"
        arrays[key] = np.repeat(arrays[key][:, None], 3, 1)
    if arrays["train_inputs"].shape[1:] != arrays["test_inputs"].shape[1:]:
        raise ConfigError(f"train and test images have different sizes "
                          f"({arrays['train_inputs'].shape[-1]}x"
                          f"{arrays['train_inputs'].shape[-2]} and "
                          f"{arrays['test_inputs'].shape[-1]}x"
                          f"{arrays['test_inputs'].shape[-2]}): pass image_size")


def _task_classes(tasks, names: list[str]):
    """Tasks given by class name (or index) -> by class index."""
    if isinstance(tasks, int) or not isinstance(tasks, (list, tuple)):
        return tasks

    def index_of(entry):
        if isinstance(entry, str):
            if entry not in names:
                raise ConfigError(f"unknown class {entry!r} in tasks (the classes are the "
                                  f"folder names: {', '.join(names)})")
            return names.index(entry)
        return entry
    return [[index_of(entry) for entry in task] if isinstance(task, (list, tuple)) else task
            for task in tasks]


def _read_cache(path: Path, names: list[str]) -> dict[str, np.ndarray] | None:
    arrays = read_cached_arrays(path, (*CACHED_KEYS, "class_names"), uint8=False)
    if arrays is None or arrays.pop("class_names").tolist() != names:
        return None
    return arrays
