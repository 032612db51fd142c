"""Colour image datasets read from disk as uint8 tensors: CIFAR-10, CIFAR-100, TinyImageNet.

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
import http.client
import importlib
import os
import pickle
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .mnist import (
    DataError,
    ImageData,
    _md5,
    _read_cache,
    _write_cache,
    default_cache_dir,
    default_data_root,
)

CACHE_FORMAT = "v1"  # bump when decoding changes, to invalidate old caches
DOWNLOAD_TIMEOUT_S = 30
TINY_SIDE = 64


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
        if _md5(archive) != spec.md5:
            problems.append(f"{archive}: checksum mismatch (expected md5 {spec.md5})")
            continue
        _extract(archive, base, spec.folder)
        if _is_complete(spec, base / spec.folder):
            return base / spec.folder
        problems.append(f"{archive}: extracted {spec.folder} is incomplete")

    if download:
        target = root if root is not None else default
        archive, error = _download(spec, target)
        if archive is not None:
            _extract(archive, target, spec.folder)
            if _is_complete(spec, target / spec.folder):
                return target / spec.folder
            error = f"{archive}: extracted {spec.folder} is incomplete"
        problems.append(f"download failed: {error}")
    else:
        problems.append("download disabled")

    looked = ", ".join(str(c) for c in candidates)
    archives = " or ".join(str(base / spec.archive) for base in roots)
    raise DataError(_one_line(
        f"no {spec.name} data found: looked for {looked} and {archives}; expected the layout "
        f"DATA_ROOT/{spec.layout} (pass --data-root DATA_ROOT) or the archive "
        f"{spec.archive} from {spec.mirrors[0] if spec.mirrors else '(no mirror)'} "
        f"(md5 {spec.md5}) in DATA_ROOT; " + "; ".join(problems)))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _download(spec: VisionSpec, target: Path) -> tuple[Path | None, str]:
    """Fetch the archive into ``target``, checking its MD5; written atomically."""
    errors = []
    for url in spec.mirrors:
        try:
            target.mkdir(parents=True, exist_ok=True)
            return _fetch(url, target / spec.archive, spec.md5), ""
        except (OSError, http.client.HTTPException, ValueError) as error:
            errors.append(f"{url}: {getattr(error, 'reason', None) or error}")
    return None, _one_line("; ".join(errors) or "no mirror configured")


def _fetch(url: str, destination: Path, md5: str) -> Path:
    digest = hashlib.md5()
    fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                   suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle, \
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, disable=None,
                      desc=f"downloading {destination.name}") as bar:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch (md5 {digest.hexdigest()}, expected {md5})")
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return destination


# ----------------------------------------------------------------------------- extracting


def _extract(archive: Path, root: Path, folder: str) -> None:
    """Extract ``archive`` safely and move its ``folder`` to ``root/folder``.

    Members with absolute paths or ``..``, links, devices and anything else that is not
    a plain file or directory are refused. Extraction happens in a scratch folder, so an
    interrupted run never leaves a half-written dataset behind.
    """
    try:
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.extract-"))
    except OSError as error:
        raise DataError(_one_line(f"{archive}: cannot extract into {root} ({error})")) from None
    try:
        try:
            if archive.name.endswith(".zip"):
                _extract_zip(archive, work)
            else:
                _extract_tar(archive, work)
        except DataError:
            raise
        except (OSError, EOFError, ValueError, tarfile.TarError, zipfile.BadZipFile) as error:
            raise DataError(_one_line(f"{archive}: cannot extract ({error})")) from None
        extracted = work / folder
        if not extracted.is_dir():
            raise DataError(f"{archive}: the archive has no {folder}/ folder")
        destination = root / folder
        if destination.exists() or destination.is_symlink():  # an incomplete copy: keep it
            aside = Path(tempfile.mkdtemp(dir=root, prefix=f"{folder}.incomplete-"))
            os.replace(destination, aside / folder)
        os.replace(extracted, destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_member(archive: Path, work: Path, name: str, problem: str | None) -> None:
    path = PurePosixPath(name)
    if problem is None and (path.is_absolute() or name.startswith("\\")):
        problem = "absolute path"
    if problem is None and ".." in path.parts:
        problem = "'..' in its path"
    if problem is None and not (work / name).resolve().is_relative_to(work.resolve()):
        problem = "it would land outside the target folder"
    if problem is not None:
        raise DataError(_one_line(f"{archive}: refusing to extract member {name!r} ({problem})"))


def _extract_tar(archive: Path, work: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            problem = None if member.isfile() or member.isdir() else (
                "a link" if member.issym() or member.islnk() else "not a plain file")
            _check_member(archive, work, member.name, problem)
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, work, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; the member was checked above
                tar.extract(member, work)


def _extract_zip(archive: Path, work: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            mode = info.external_attr >> 16
            problem = "a link" if stat.S_ISLNK(mode) else None
            if problem is None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                problem = "not a plain file"
            _check_member(archive, work, info.filename, problem)
            zipped.extract(info, work)


# ----------------------------------------------------------------------------- caching


def _load_cached(dataset: str, spec: VisionSpec, folder: Path, cache_dir: Path) -> ImageData:
    if spec.train_files:
        files = [folder / name for name in spec.train_files + spec.test_files]
        stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        build = lambda: _read_cifar(spec, folder)  # noqa: E731
    else:
        listing = _TinyListing(folder)
        stamp = listing.stamp()
        build = listing.decode
    where = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    key = hashlib.sha1(f"{CACHE_FORMAT}|{stamp}".encode()).hexdigest()[:16]
    cache_file = cache_dir / f"{dataset}-{where}-{key}.npz"
    arrays = _read_cached_arrays(cache_file)
    if arrays is None:
        arrays = build()
        _write_cache(cache_file, arrays, stale=f"{dataset}-{where}-*.npz")
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    tensors["train_labels"] = tensors["train_labels"].long()
    tensors["test_labels"] = tensors["test_labels"].long()
    return ImageData(source=f"{spec.name} from {folder}", **tensors)


def _read_cached_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when missing, corrupt or of the wrong shape."""
    arrays = _read_cache(path)
    if arrays is None:
        return None
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 4 or images.shape[1] != 3 or labels.shape != images.shape[:1]:
            return None
    return arrays


# ----------------------------------------------------------------------------- CIFAR


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
        raise DataError(_one_line(f"{path}: corrupt or truncated pickle "
                                  f"({type(error).__name__}: {error})")) from None


def _read_cifar_batch(path: Path, spec: VisionSpec) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict, found {type(batch).__name__}")

    def get(key: str):
        for candidate in (key.encode(), key):
            if candidate in batch:
                return batch[candidate]
        raise DataError(f"{path}: missing key {key!r} (found {sorted(map(str, batch))})")

    data, labels = get("data"), get(spec.label_key)
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
        raise DataError(f"{path}: {spec.label_key!r} should be {len(data)} integers, found "
                        f"{labels.dtype} of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.n_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(f"{path}: label {bad} is outside 0..{spec.n_classes - 1}")
    return data, labels.astype(np.uint8)


def _read_cifar(spec: VisionSpec, folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split, names in (("train", spec.train_files), ("test", spec.test_files)):
        parts = [_read_cifar_batch(folder / name, spec) for name in names]
        # rows are 1024 R, 1024 G, 1024 B values, each plane row-major: (N, 3, 32, 32)
        images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        del parts
        arrays[f"{split}_images"] = np.ascontiguousarray(images.reshape(-1, 3, 32, 32))
        arrays[f"{split}_labels"] = labels
    return arrays


# ----------------------------------------------------------------------------- TinyImageNet


class _TinyListing:
    """The files of a tiny-imagenet-200 folder, listed without reading any image."""

    def __init__(self, folder: Path):
        self.folder = folder
        wnids_file = folder / "wnids.txt"
        try:
            lines = wnids_file.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(_one_line(f"{wnids_file}: unreadable ({error})")) from None
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
            raise DataError(_one_line(f"{train}: unreadable ({error})")) from None
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
            raise DataError(_one_line(f"{directory}: unreadable ({error})")) from None
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
            raise DataError(_one_line(f"{self.annotations}: unreadable ({error})")) from None
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
            "train_images": _decode_jpegs(train_paths, "TinyImageNet train"),
            "train_labels": train_labels.astype(np.uint8),
            "test_images": _decode_jpegs(test_paths, "TinyImageNet val"),
            "test_labels": np.asarray(test_labels, dtype=np.uint8),
        }


def _decode_jpegs(paths: list[Path], what: str) -> np.ndarray:
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
            raise DataError(_one_line(f"{path}: unreadable or corrupt image ({error})")) \
                from None
        out[i] = np.asarray(rgb).transpose(2, 0, 1)

    executor = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        done = executor.map(decode, range(len(paths)))
        for _ in tqdm(done, total=len(paths), desc=f"decoding {what} JPEGs", unit="img",
                      disable=None):
            pass
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return out
