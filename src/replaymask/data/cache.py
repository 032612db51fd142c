"""The array cache: decoded data sets as uint8 ``.npz`` files, so that later runs skip the
decoding (MNIST's IDX files, CIFAR's pickles, TinyImageNet's 110k JPEGs)."""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

SPLIT_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def read_cached_arrays(path: Path, keys: tuple[str, ...] = SPLIT_KEYS,
                       uint8: bool = True) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` cached at ``path`` (by default the four uint8 arrays of a data
    set), or None when missing, corrupt or truncated (then the caller decodes the data
    again)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in keys}
    except (OSError, KeyError, ValueError, zlib.error, EOFError, zipfile.BadZipFile):
        return None
    if uint8 and any(array.dtype != np.uint8 for array in arrays.values()):
        return None
    return arrays


def write_cached_arrays(path: Path, arrays: dict[str, np.ndarray],
                        stale: str | None = None) -> None:
    """Write atomically; then delete the files matching the glob ``stale`` (older caches
    of the same source). A read-only or full cache directory only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.",
                                         suffix=".tmp", delete=False) as handle:
            try:
                np.savez(handle, **arrays)
            except BaseException:
                handle.close()
                Path(handle.name).unlink(missing_ok=True)
                raise
        os.replace(handle.name, path)
        for old in path.parent.glob(stale) if stale else ():
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
