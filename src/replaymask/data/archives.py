"""Archives: checksums, downloads that verify them, and extraction that refuses unsafe members.

Downloads are written atomically and checked against their published MD5; extraction
refuses absolute paths, ``..``, links, devices and anything else that is not a plain file
or folder, and happens in a scratch folder so that an interrupted run never leaves a
half-written data set behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .sources import DataError, one_line

DOWNLOAD_TIMEOUT_S = 30


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):  # archives can be GBs
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(payload)
    os.replace(handle.name, path)


def download_archive(mirrors: tuple[str, ...], destination: Path, md5: str
                     ) -> tuple[Path | None, str]:
    """Fetch ``destination`` from the first mirror that serves it with the right MD5:
    (its path, "") or (None, why not)."""
    errors = []
    for url in mirrors:
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            return fetch(url, destination, md5), ""
        except (OSError, http.client.HTTPException, ValueError) as error:
            errors.append(f"{url}: {getattr(error, 'reason', None) or error}")
    return None, one_line("; ".join(errors) or "no mirror configured")


def fetch(url: str, destination: Path, md5: str) -> Path:
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


def extract_folder(archive: Path, root: Path, folder: str) -> None:
    """Extract ``archive`` safely and move its ``folder`` to ``root/folder``.

    Members with absolute paths or ``..``, links, devices and anything else that is not
    a plain file or directory are refused. Extraction happens in a scratch folder, so an
    interrupted run never leaves a half-written dataset behind.
    """
    try:
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.extract-"))
    except OSError as error:
        raise DataError(one_line(f"{archive}: cannot extract into {root} ({error})")) from None
    try:
        try:
            if archive.name.endswith(".zip"):
                _extract_zip(archive, work)
            else:
                _extract_tar(archive, work)
        except DataError:
            raise
        except (OSError, EOFError, ValueError, tarfile.TarError, zipfile.BadZipFile) as error:
            raise DataError(one_line(f"{archive}: cannot extract ({error})")) from None
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
        raise DataError(one_line(f"{archive}: refusing to extract member {name!r} ({problem})"))


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
