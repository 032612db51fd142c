"""Checkpoint files: atomic, checksummed, loaded without running any code.

A file is ``MAGIC``, the SHA-256 of the payload in hex, a newline, then the payload:
a ``torch.save`` of plain data (tensors, numbers, strings, lists, dicts) that is read
back with ``torch.load(..., weights_only=True)``. Files are numbered; a new one is
written to a temporary file, fsynced and renamed into place, and only then is the
one before the previous one deleted, so a crash at any moment leaves at least one
complete checkpoint. A truncated or corrupted file fails its checksum and the one
before it is used, with a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

FORMAT_VERSION = 1
MAGIC = b"replaymask-checkpoint\n"
KEEP = 2  # the newest complete checkpoint and the one before it


class CheckpointError(Exception):
    """A checkpoint file is unreadable, corrupt, or of another format version."""


def checkpoint_files(directory: Path) -> list[Path]:
    """Checkpoint files in ``directory``, newest first."""
    return sorted(Path(directory).glob("checkpoint-*.pt"), reverse=True)


def save_checkpoint(directory: Path, sequence: int, state: dict) -> Path:
    """Write ``state`` as checkpoint number ``sequence`` atomically; prune older ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    payload = buffer.getvalue()
    path = directory / f"checkpoint-{sequence:08d}.pt"
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, renamed after)
        dir=directory, prefix=".checkpoint-", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    for old in checkpoint_files(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and verify one checkpoint file; raises CheckpointError if it is not sound."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read it ({error.strerror})") from None
    header_end = len(MAGIC) + 64
    if not data.startswith(MAGIC) or data[header_end:header_end + 1] != b"\n":
        raise CheckpointError("not a replaymask checkpoint (bad header)")
    payload = data[header_end + 1:]
    if hashlib.sha256(payload).hexdigest().encode() != data[len(MAGIC):header_end]:
        raise CheckpointError("checksum mismatch (truncated or corrupted)")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 (any unpickling failure means "unusable")
        raise CheckpointError(f"unreadable payload ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(f"format version {version}, this replaymask reads "
                              f"{FORMAT_VERSION}")
    return state


def load_newest_checkpoint(directory: Path, warn: Callable[[str], None],
                           map_location: str | torch.device = "cpu"
                           ) -> tuple[dict, int] | None:
    """The newest sound checkpoint in ``directory`` and its number, or None if there is
    none; every unusable newer file is reported through ``warn`` and skipped."""
    for path in checkpoint_files(directory):
        try:
            state = read_checkpoint(path, map_location)
        except CheckpointError as error:
            warn(f"checkpoint {path} is unusable: {error}; trying the previous one")
            continue
        return state, int(path.stem.split("-")[1])
    return None


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
