"""What every data reader shares: where data and caches live, the error a reader raises,
and the form a data set comes back in."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm


class DataError(Exception):
    """The data could not be found or read; the message says what to do."""


@dataclass(frozen=True)
class ImageData:
    """A data set's images (uint8: (N, H, W) or (N, 3, H, W)) and labels (int64, 0..K-1)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    @classmethod
    def from_arrays(cls, arrays: dict, source: str) -> ImageData:
        tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
        tensors["train_labels"] = tensors["train_labels"].long()
        tensors["test_labels"] = tensors["test_labels"].long()
        return cls(source=source, **tensors)


def default_data_root() -> Path:
    return Path(os.environ.get("REPLAYMASK_DATA", Path.home() / ".cache" / "replaymask" / "data"))


def default_cache_dir() -> Path:
    default = Path.home() / ".cache" / "replaymask" / "arrays"
    return Path(os.environ.get("REPLAYMASK_CACHE", default))


def one_line(text: str) -> str:
    """``text`` with its runs of whitespace (line breaks included) as single spaces."""
    return " ".join(str(text).split())


def decode_in_threads(decode: Callable[[int], None], count: int, description: str,
                      progress: bool | None = None) -> None:
    """``decode(i)`` for i in ``range(count)`` on a few threads (Pillow decodes without
    the GIL), with a progress bar; the first error stops the rest and is raised.
    ``progress`` None: a bar only on a terminal."""
    executor = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for _ in tqdm(executor.map(decode, range(count)), total=count, desc=description,
                      unit="img", disable=None if progress is None else not progress,
                      mininterval=0.5):
            pass
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
