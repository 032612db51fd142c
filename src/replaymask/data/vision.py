"""Colour image data sets as uint8 tensors: CIFAR-10, CIFAR-100, TinyImageNet: where each
is published, how it is found, and its cache.

Each is read from its standard distribution: the "python version" pickles of CIFAR-10/100
and the JPEG folders of ``tiny-imagenet-200``. Sources are tried in order: the extracted
folder under the data root (or the data root itself when it is that folder), the same
under the default data root, the published archive lying in either root (MD5-checked,
then extracted safely), and finally a checksummed download. Decoded arrays are cached
as uint8 ``.npz`` files so that later runs skip the pickles and the 110k JPEGs.

Images come back as uint8 tensors of shape (N, 3, H, W), labels as int64 in 0..K-1.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .archives import download_archive, extract_folder, md5_of
from .cache import read_cached_arrays, write_cached_arrays
from .cifar import read_cifar
from .sources import DataError, ImageData, default_cache_dir, default_data_root, one_line
from .tinyimagenet import TinyListing

CACHE_FORMAT = "v1"  # bump when decoding changes, to invalidate old caches


@dataclass(frozen=True)
class VisionSpec:
    name: str
    folder: str  # what the archive extracts to
    archive: str  # the published archive's file name
    mirrors: tuple[str, ...]  # full URLs of the archive, tried in order
    md5: str  # of the archive
    layout: str  # the expected folder layout, for error messages
    required: tuple[str, ...]  # paths under ``folder`` that a complete copy has
    train_files: tuple[str, ...] = ()  # CIFAR pickles
    test_files: tuple[str, ...] = ()
    label_key: str = "labels"
    n_classes: int = 0


VISION_SPECS: dict[str, VisionSpec] = {
    "cifar10": VisionSpec(
        name="CIFAR-10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        mirrors=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        md5="c58f30108f718f92721af3b95e74349a",
        layout="cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch} "
               "(the 'python version' pickles)",
        required=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        n_classes=10,
    ),
    "cifar100": VisionSpec(
        name="CIFAR-100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        mirrors=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        layout="cifar-100-python/{train,test} (the 'python version' pickles)",
        required=("train", "test"),
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        n_classes=100,
    ),
    "tinyimagenet": VisionSpec(
        name="TinyImageNet",
        folder="tiny-imagenet-200",
        archive="tiny-imagenet-200.zip",
        mirrors=("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
        md5="90528d7ca1a48142e341f4ef8d21d0de",
        layout="tiny-imagenet-200/{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,"
               "val/val_annotations.txt}",
        required=("wnids.txt", "train", "val/images", "val/val_annotations.txt"),
    ),
}

VISION_DATASETS = frozenset(VISION_SPECS)


def load_vision_data(
    dataset: str,
    data_root: str | Path | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> ImageData:
    """Load ``dataset`` ("cifar10", "cifar100" or "tinyimagenet") as uint8 (N, 3, H, W).

    CIFAR: train is data_batch_1..5 in order (CIFAR-100: ``train``, fine labels), test is
    ``test_batch`` (``test``). TinyImageNet: the labelled ``val`` split is the test split;
    the class index of a wnid is its position in the SORTED list of wnids (torchvision
    ImageFolder's convention), train images are ordered by class then file name, test
    images in the order of ``val_annotations.txt``; grayscale JPEGs are converted to RGB.
    """
    if dataset not in VISION_SPECS:
        raise DataError(f"unknown vision dataset {dataset!r}; "
                        f"choose one of {', '.join(sorted(VISION_SPECS))}")
    spec = VISION_SPECS[dataset]
    root = None
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
            raise DataError(f"data root {str(root)!r} is not a readable directory")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = _locate(spec, root, download)
    return _load_cached(dataset, spec, folder, cache)


# ----------------------------------------------------------------------------- locating


def _is_complete(spec: VisionSpec, folder: Path) -> bool:
    return folder.is_dir() and all((folder / name).exists() for name in spec.required)


def _locate(spec: VisionSpec, root: Path | None, download: bool) -> Path:
    default = default_data_root()
    candidates = [root / spec.folder, root] if root is not None else []
    if default / spec.folder not in candidates:
        candidates.append(default / spec.folder)
    for folder in candidates:
        if _is_complete(spec, folder):
            return folder

    roots = [root] if root is not None else []
    if not roots or default.resolve() != root.resolve():
        roots.append(default)
    problems = []
    for base in roots:
        archive = base / spec.archive
        if not archive.is_file():
            continue
        if md5_of(archive) != spec.md5:
            problems.append(f"{archive}: checksum mismatch (expected md5 {spec.md5})")
            continue
        extract_folder(archive, base, spec.folder)
        if _is_complete(spec, base / spec.folder):
            return base / spec.folder
        problems.append(f"{archive}: extracted {spec.folder} is incomplete")

    if download:
        target = root if root is not None else default
        archive, error = download_archive(spec.mirrors, target / spec.archive, spec.md5)
        if archive is not None:
            extract_folder(archive, target, spec.folder)
            if _is_complete(spec, target / spec.folder):
                return target / spec.folder
            error = f"{archive}: extracted {spec.folder} is incomplete"
        problems.append(f"download failed: {error}")
    else:
        problems.append("download disabled")

    looked = ", ".join(str(c) for c in candidates)
    archives = " or ".join(str(base / spec.archive) for base in roots)
    raise DataError(one_line(
        f"no {spec.name} data found: looked for {looked} and {archives}; expected the layout "
        f"DATA_ROOT/{spec.layout} (pass --data-root DATA_ROOT) or the archive "
        f"{spec.archive} from {spec.mirrors[0] if spec.mirrors else '(no mirror)'} "
        f"(md5 {spec.md5}) in DATA_ROOT; " + "; ".join(problems)))


# ----------------------------------------------------------------------------- caching


def _load_cached(dataset: str, spec: VisionSpec, folder: Path, cache_dir: Path) -> ImageData:
    if spec.train_files:
        files = [folder / name for name in spec.train_files + spec.test_files]
        stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        build = lambda: read_cifar(folder, spec.train_files, spec.test_files,  # noqa: E731
                                   spec.label_key, spec.n_classes)
    else:
        listing = TinyListing(folder)
        stamp = listing.stamp()
        build = listing.decode
    where = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    key = hashlib.sha1(f"{CACHE_FORMAT}|{stamp}".encode()).hexdigest()[:16]
    cache_file = cache_dir / f"{dataset}-{where}-{key}.npz"
    arrays = _read_cached_arrays(cache_file)
    if arrays is None:
        arrays = build()
        write_cached_arrays(cache_file, arrays, stale=f"{dataset}-{where}-*.npz")
    return ImageData.from_arrays(arrays, source=f"{spec.name} from {folder}")


def _read_cached_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when missing, corrupt or of the wrong shape."""
    arrays = read_cached_arrays(path)
    if arrays is None:
        return None
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 4 or images.shape[1] != 3 or labels.shape != images.shape[:1]:
            return None
    return arrays
