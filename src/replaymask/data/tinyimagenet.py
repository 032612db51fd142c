"""TinyImageNet from its ``tiny-imagenet-200`` folder of JPEGs.

A wnid's class index is its position in the sorted list of wnids (torchvision
ImageFolder's convention); train images are ordered by class, then file name; the
labelled ``val`` split is the test split, in the order of ``val_annotations.txt``;
grayscale JPEGs become RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .sources import DataError, decode_in_threads, one_line

TINY_SIDE = 64


class TinyListing:
    """The files of a tiny-imagenet-200 folder, listed without reading any image."""

    def __init__(self, folder: Path):
        self.folder = folder
        wnids_file = folder / "wnids.txt"
        try:
            lines = wnids_file.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(one_line(f"{wnids_file}: unreadable ({error})")) from None
        if not lines or len(set(lines)) != len(lines):
            raise DataError(f"{wnids_file}: expected distinct wnids, one a line, "
                            f"found {len(lines)} ({len(set(lines))} distinct)")
        if len(lines) > 256:  # labels are cached as uint8
            raise DataError(f"{wnids_file}: {len(lines)} wnids, at most 256 are supported")
        self.wnids = sorted(lines)  # class index = position in the sorted list
        train = folder / "train"
        try:
            present = {p.name for p in train.iterdir() if p.is_dir()}
        except OSError as error:
            raise DataError(one_line(f"{train}: unreadable ({error})")) from None
        if present != set(self.wnids):
            extra, missing = sorted(present - set(lines)), sorted(set(lines) - present)
            raise DataError(f"{train}: class folders do not match wnids.txt "
                            f"(not in wnids.txt: {extra[:5]}, missing: {missing[:5]})")
        self.train_dirs = [train / wnid / "images" for wnid in self.wnids]
        self.train_names = [self._images_in(d) for d in self.train_dirs]
        self.val_dir = folder / "val" / "images"
        self.val_names = set(self._images_in(self.val_dir))
        self.annotations = folder / "val" / "val_annotations.txt"

    def _images_in(self, directory: Path) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(directory)
                           if n.lower().endswith((".jpeg", ".jpg")))
        except OSError as error:
            raise DataError(one_line(f"{directory}: unreadable ({error})")) from None
        if not names:
            raise DataError(f"{directory}: no .JPEG images")
        return names

    def stamp(self) -> str:
        """Cheap: stats of the index files and of each image folder, with file counts.

        Adding, removing or replacing an image changes its folder's mtime; an image
        rewritten in place is not noticed (delete the cache to force a rebuild)."""
        parts = [str(self.folder.resolve())]
        for path in (self.folder / "wnids.txt", self.annotations):
            info = path.stat()
            parts.append(f"{path.name}:{info.st_size}:{info.st_mtime_ns}")
        dirs = [*zip(self.train_dirs, map(len, self.train_names), strict=True),
                (self.val_dir, len(self.val_names))]
        parts += [f"{d.parent.name}:{d.stat().st_mtime_ns}:{count}" for d, count in dirs]
        return "|".join(parts)

    def _test_files(self) -> tuple[list[Path], list[int]]:
        index = {wnid: i for i, wnid in enumerate(self.wnids)}
        paths, labels, seen = [], [], set()
        try:
            text = self.annotations.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(one_line(f"{self.annotations}: unreadable ({error})")) from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            where = f"{self.annotations}: line {number}"
            if len(fields) < 2:
                raise DataError(f"{where}: expected 'FILE<tab>WNID<tab>x0 y0 x1 y1'")
            name, wnid = fields[0].strip(), fields[1].strip()
            if wnid not in index:
                raise DataError(f"{where}: unknown wnid {wnid!r} (not in wnids.txt)")
            if name not in self.val_names or "/" in name:
                raise DataError(f"{where}: image {name!r} is missing from {self.val_dir}")
            if name in seen:
                raise DataError(f"{where}: image {name!r} is listed twice")
            seen.add(name)
            paths.append(self.val_dir / name)
            labels.append(index[wnid])
        if not paths:
            raise DataError(f"{self.annotations}: lists no images")
        return paths, labels

    def decode(self) -> dict[str, np.ndarray]:
        test_paths, test_labels = self._test_files()
        train_paths = [d / n for d, names in zip(self.train_dirs, self.train_names, strict=True)
                       for n in names]
        train_labels = np.repeat(np.arange(len(self.wnids), dtype=np.int64),
                                 [len(names) for names in self.train_names])
        return {
            "train_images": decode_jpegs(train_paths, "TinyImageNet train"),
            "train_labels": train_labels.astype(np.uint8),
            "test_images": decode_jpegs(test_paths, "TinyImageNet val"),
            "test_labels": np.asarray(test_labels, dtype=np.uint8),
        }


def decode_jpegs(paths: list[Path], what: str) -> np.ndarray:
    """Decode into one preallocated (N, 3, 64, 64) array, on a few threads."""
    out = np.empty((len(paths), 3, TINY_SIDE, TINY_SIDE), dtype=np.uint8)

    def decode(i: int) -> None:
        path = paths[i]
        try:
            with Image.open(path) as image:
                if image.size != (TINY_SIDE, TINY_SIDE):
                    raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]}, "
                                    f"expected {TINY_SIDE}x{TINY_SIDE}")
                rgb = image.convert("RGB")  # grayscale (and CMYK) images become RGB
        except DataError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) \
                as error:
            raise DataError(one_line(f"{path}: unreadable or corrupt image ({error})")) \
                from None
        out[i] = np.asarray(rgb).transpose(2, 0, 1)

    decode_in_threads(decode, len(paths), f"decoding {what} JPEGs")
    return out
