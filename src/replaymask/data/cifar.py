"""CIFAR-10 and CIFAR-100 from their "python version" pickles.

The pickles are read by an unpickler that builds plain containers and numpy arrays only
and calls nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np

from .sources import DataError, one_line


def _numpy_core(module: str):
    for name in (f"numpy._core.{module}", f"numpy.core.{module}"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"numpy has no core.{module}")


def _safe_globals() -> dict[tuple[str, str], object]:
    reconstruct = _numpy_core("multiarray")._reconstruct
    frombuffer = _numpy_core("numeric")._frombuffer
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): __import__("_codecs").encode}  # Py3 protocol-2 bytes
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{prefix}.numeric", "_frombuffer")] = frombuffer
    for builtins in ("builtins", "__builtin__"):
        for container in (list, dict, tuple, set, frozenset):
            allowed[(builtins, container.__name__)] = container
    return allowed


class _Refused(Exception):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: never calls anything else."""

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str):
        if _SafeUnpickler._allowed is None:
            _SafeUnpickler._allowed = _safe_globals()
        try:
            return _SafeUnpickler._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb", buffering=1 << 20) as handle:
            return _SafeUnpickler(handle, encoding="bytes").load()
    except _Refused as refused:
        raise DataError(f"{path}: refusing to unpickle {refused} (not allowed in a CIFAR "
                        "file; it may be malicious)") from None
    except Exception as error:  # any failure of a corrupt pickle is bad data, not a bug
        raise DataError(one_line(f"{path}: corrupt or truncated pickle "
                                  f"({type(error).__name__}: {error})")) from None


def _read_batch(path: Path, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict, found {type(batch).__name__}")

    def get(key: str):
        for candidate in (key.encode(), key):
            if candidate in batch:
                return batch[candidate]
        raise DataError(f"{path}: missing key {key!r} (found {sorted(map(str, batch))})")

    data, labels = get("data"), get(label_key)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) \
            else type(data).__name__
        raise DataError(f"{path}: 'data' should be a uint8 array of shape (N, 3072), "
                        f"found {found}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) \
            or len(labels) != len(data):
        raise DataError(f"{path}: {label_key!r} should be {len(data)} integers, found "
                        f"{labels.dtype} of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(f"{path}: label {bad} is outside 0..{n_classes - 1}")
    return data, labels.astype(np.uint8)


def read_cifar(folder: Path, train_files: tuple[str, ...], test_files: tuple[str, ...],
               label_key: str, n_classes: int) -> dict[str, np.ndarray]:
    """The four uint8 arrays of a CIFAR folder: images (N, 3, 32, 32), labels (N,)."""
    arrays = {}
    for split, names in (("train", train_files), ("test", test_files)):
        parts = [_read_batch(folder / name, label_key, n_classes) for name in names]
        # rows are 1024 R, 1024 G, 1024 B values, each plane row-major: (N, 3, 32, 32)
        images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        del parts
        arrays[f"{split}_images"] = np.ascontiguousarray(images.reshape(-1, 3, 32, 32))
        arrays[f"{split}_labels"] = labels
    return arrays
