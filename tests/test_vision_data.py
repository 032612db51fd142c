"""Reading CIFAR-10, CIFAR-100 and TinyImageNet from their distributions, and failing clearly."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import pickle
import shutil
import stat
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from replaymask.data import tinyimagenet
from replaymask.data import vision as vision_data
from replaymask.data.sources import DataError
from replaymask.data.vision import VISION_DATASETS, VISION_SPECS, load_vision_data

from .vision_files import (
    make_cifar_arrays,
    py2_pickle_bytes,
    tiny_wnids,
    write_cifar10_like,
    write_cifar100_like,
    write_cifar_batch,
    write_tinyimagenet_like,
)

WRITERS = {"cifar10": write_cifar10_like, "cifar100": write_cifar100_like,
           "tinyimagenet": write_tinyimagenet_like}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    """One TinyImageNet-like folder per module (600 JPEGs); tests copy it before changing it."""
    return write_tinyimagenet_like(tmp_path_factory.mktemp("tiny-source"))


def copy_tiny(tiny_source: Path, root: Path) -> Path:
    return Path(shutil.copytree(tiny_source, root / "tiny-imagenet-200"))


def write_like(dataset: str, root: Path, tiny_source: Path) -> Path:
    if dataset == "tinyimagenet":
        return copy_tiny(tiny_source, root)
    return WRITERS[dataset](root)


def load(dataset: str, root: Path, **kwargs):
    return load_vision_data(dataset, data_root=root, download=False, **kwargs)


# ----------------------------------------------------------------------------- reading


def test_the_three_datasets_are_offered():
    assert frozenset({"cifar10", "cifar100", "tinyimagenet"}) == VISION_DATASETS


def test_reads_cifar10_batches_in_order_with_exact_pixels_and_labels(tmp_path):
    folder = write_cifar10_like(tmp_path)
    data = load("cifar10", tmp_path)
    expected = make_cifar_arrays(10, 20, 5)
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (200, 3, 32, 32)
    assert data.test_images.shape == (50, 3, 32, 32) and data.train_images.is_contiguous()
    assert data.train_labels.dtype == torch.int64
    for split in ("train", "test"):
        assert np.array_equal(getattr(data, f"{split}_images").numpy(), expected[f"{split}_images"])
        assert np.array_equal(getattr(data, f"{split}_labels").numpy(), expected[f"{split}_labels"])
    assert torch.bincount(data.train_labels).tolist() == [20] * 10
    assert str(folder) in data.source and "CIFAR-10" in data.source


def test_reads_cifar100_fine_labels_with_exact_pixels(tmp_path):
    write_cifar100_like(tmp_path)
    data = load("cifar100", tmp_path)
    expected = make_cifar_arrays(100, 3, 1)
    assert data.train_images.shape == (300, 3, 32, 32)
    assert data.test_images.shape == (100, 3, 32, 32)
    assert np.array_equal(data.train_images.numpy(), expected["train_images"])
    assert np.array_equal(data.test_labels.numpy(), expected["test_labels"])
    assert sorted(data.train_labels.unique().tolist()) == list(range(100))  # fine, not coarse


def test_rgb_planes_of_a_cifar_row_become_channels_first(tmp_path):
    folder = write_cifar10_like(tmp_path)
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, :1024], row[0, 1024:2048], row[0, 2048:] = 10, 20, 30  # R, G, B planes
    row[0, 1] = 255  # red, first image row, second column
    row[0, 1024 + 32] = 254  # green, second image row, first column
    for name in ["test_batch"]:
        write_cifar_batch(folder / name, row, [7])
    image = load("cifar10", tmp_path).test_images[0]
    assert image.shape == (3, 32, 32)
    assert image[0, 0, 1] == 255 and image[1, 1, 0] == 254
    image[0, 0, 1], image[1, 1, 0] = 10, 20
    assert image[0].unique().tolist() == [10] and image[1].unique().tolist() == [20]
    assert image[2].unique().tolist() == [30]


def test_reads_tinyimagenet_with_sorted_wnid_labels_and_pillows_pixels(tiny_source, tmp_path):
    folder = copy_tiny(tiny_source, tmp_path)
    data = load("tinyimagenet", tmp_path)
    assert data.train_images.shape == (400, 3, 64, 64)
    assert data.test_images.shape == (200, 3, 64, 64)
    assert data.train_images.dtype == torch.uint8 and data.test_labels.dtype == torch.int64
    wnids = sorted(tiny_wnids())
    assert (folder / "wnids.txt").read_text().split() != wnids  # the file's order is not sorted

    def pillow(path):
        return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)

    index = 0
    for label, wnid in enumerate(wnids):  # ImageFolder's order: sorted classes, sorted files
        for name in sorted(os.listdir(folder / "train" / wnid / "images")):
            assert data.train_labels[index] == label
            assert np.array_equal(data.train_images[index].numpy(),
                                  pillow(folder / "train" / wnid / "images" / name))
            index += 1
    lines = (folder / "val" / "val_annotations.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        name, wnid = line.split("\t")[:2]
        assert data.test_labels[i] == wnids.index(wnid)
        assert np.array_equal(data.test_images[i].numpy(), pillow(folder / "val" / "images" / name))
    grey = Image.open(folder / "val" / "images" / "val_3.JPEG")
    assert grey.mode == "L"  # a grayscale JPEG became three equal channels
    assert torch.equal(data.test_images[3][0], data.test_images[3][2])


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_the_root_may_be_the_dataset_folder_itself(dataset, tiny_source, tmp_path):
    folder = write_like(dataset, tmp_path / "data", tiny_source)
    renamed = folder.rename(tmp_path / "my-copy")
    data = load(dataset, renamed)
    assert str(renamed) in data.source and len(data.train_labels) > 0


def test_the_default_data_root_is_searched(tmp_path):
    write_cifar100_like(tmp_path / "default-data")  # REPLAYMASK_DATA, set by conftest
    (tmp_path / "empty").mkdir()
    assert len(load("cifar100", tmp_path / "empty").train_labels) == 300
    assert len(load_vision_data("cifar100", download=False).train_labels) == 300


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_batches_pickled_by_python3(tmp_path, protocol):
    folder = write_cifar10_like(tmp_path)
    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps(
        {b"data": data, b"labels": [3, 4], b"batch_label": b"x"}, protocol=protocol))
    loaded = load("cifar10", tmp_path)
    assert np.array_equal(loaded.test_images.numpy().reshape(2, 3072), data)
    assert loaded.test_labels.tolist() == [3, 4]


# ----------------------------------------------------------------------------- caching


def test_second_load_comes_from_the_cache(tiny_source, tmp_path, monkeypatch):
    write_cifar10_like(tmp_path)
    copy_tiny(tiny_source, tmp_path)
    first = {name: load(name, tmp_path) for name in ("cifar10", "tinyimagenet")}
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    monkeypatch.setattr(vision_data, "read_cifar", lambda *a: pytest.fail("cache not used"))
    monkeypatch.setattr(tinyimagenet, "decode_jpegs", lambda *a: pytest.fail("cache not used"))
    for name, data in first.items():
        again = load(name, tmp_path)
        assert torch.equal(data.train_images, again.train_images)
        assert torch.equal(data.test_labels, again.test_labels)


def test_a_changed_cifar_file_invalidates_the_cache(tmp_path):
    write_cifar10_like(tmp_path)
    load("cifar10", tmp_path)
    write_cifar10_like(tmp_path, seed=1)  # same sizes, new content and mtimes
    expected = make_cifar_arrays(10, 20, 5, seed=1)
    assert np.array_equal(load("cifar10", tmp_path).train_images.numpy(),
                          expected["train_images"])
    write_cifar10_like(tmp_path, per_class_train=3)
    assert len(load("cifar10", tmp_path).train_labels) == 30
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1  # stale ones removed


def test_a_changed_tinyimagenet_folder_invalidates_the_cache(tiny_source, tmp_path):
    folder = copy_tiny(tiny_source, tmp_path)
    load("tinyimagenet", tmp_path)
    wnid = sorted(tiny_wnids())[5]
    shutil.copy(folder / "train" / wnid / "images" / f"{wnid}_0.JPEG",
                folder / "train" / wnid / "images" / f"{wnid}_9.JPEG")
    data = load("tinyimagenet", tmp_path)
    assert len(data.train_labels) == 401 and (data.train_labels == 5).sum() == 3
    annotations = folder / "val" / "val_annotations.txt"
    annotations.write_text("".join(annotations.read_text().splitlines(True)[:-1]))
    assert len(load("tinyimagenet", tmp_path).test_labels) == 199


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_cache_is_rebuilt(tmp_path, damage):
    write_cifar10_like(tmp_path)
    first = load("cifar10", tmp_path)
    for cached in (tmp_path / "cache").glob("*.npz"):
        payload = cached.read_bytes()
        cached.write_bytes(b"garbage" if damage == "garbage" else payload[: len(payload) // 2])
    assert torch.equal(load("cifar10", tmp_path).train_images, first.train_images)


def test_an_unwritable_cache_only_costs_speed(tmp_path):
    write_cifar100_like(tmp_path)
    (tmp_path / "not-a-dir").write_text("x")
    data = load("cifar100", tmp_path, cache_dir=tmp_path / "not-a-dir" / "cache")
    assert len(data.train_labels) == 300


# ----------------------------------------------------------------------------- bad data


def test_a_truncated_pickle_is_reported_with_its_path(tmp_path):
    folder = write_cifar10_like(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DataError, match=r"data_batch_3: corrupt or truncated pickle"):
        load("cifar10", tmp_path)


@pytest.mark.parametrize("data, labels, match", [
    (np.zeros((2, 3071), np.uint8), [0, 1], r"shape \(N, 3072\), found uint8 \(2, 3071\)"),
    (np.zeros((2, 3072), np.float32), [0, 1], "should be a uint8 array"),
    (np.zeros(3072 * 2, np.uint8), [0, 1], "should be a uint8 array"),
    (b"\x00" * 6144, [0, 1], "found bytes"),
    (np.zeros((2, 3072), np.uint8), [0], "should be 2 integers"),
    (np.zeros((2, 3072), np.uint8), ["a", "b"], "should be 2 integers"),
    (np.zeros((2, 3072), np.uint8), [0, 10], r"label 10 is outside 0\.\.9"),
    (np.zeros((2, 3072), np.uint8), [-1, 0], r"label -1 is outside"),
])
def test_wrong_shapes_and_labels_are_reported(tmp_path, data, labels, match):
    folder = write_cifar10_like(tmp_path)
    write_cifar_batch(folder / "data_batch_2", data, labels)
    with pytest.raises(DataError, match=match) as error:
        load("cifar10", tmp_path)
    assert "data_batch_2" in str(error.value) and "\n" not in str(error.value)


def test_a_missing_key_is_reported(tmp_path):
    folder = write_cifar100_like(tmp_path)
    write_cifar_batch(folder / "test", np.zeros((1, 3072), np.uint8), [1], label_key="labels")
    with pytest.raises(DataError, match="test: missing key 'fine_labels'"):
        load("cifar100", tmp_path)
    (folder / "test").write_bytes(py2_pickle_bytes([1, 2, 3]))
    with pytest.raises(DataError, match="expected a dict, found list"):
        load("cifar100", tmp_path)


def _calls(module: str, name: str, argument: str) -> bytes:
    """A protocol-2 pickle that calls module.name(argument) when loaded."""
    text = argument.encode()
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(text))
            + text + b"\x85R.")


@pytest.mark.parametrize("module, name", [
    ("posix", "system"), ("os", "system"), ("builtins", "exec"), ("__builtin__", "eval"),
    ("subprocess", "getoutput"), ("numpy", "load"), ("builtins", "getattr"),
])
def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, module, name):
    folder = write_cifar10_like(tmp_path)
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if name in ("system", "getoutput") else \
        f"open({str(marker)!r}, 'w')"
    (folder / "data_batch_1").write_bytes(_calls(module, name, command))
    with pytest.raises(DataError, match=rf"data_batch_1: refusing to unpickle {module}\.{name}"):
        load("cifar10", tmp_path)
    assert not marker.exists()


def test_an_object_hidden_inside_a_batch_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = write_cifar10_like(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, 2))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_corrupt_jpeg_is_reported_with_its_path(tiny_source, tmp_path):
    folder = copy_tiny(tiny_source, tmp_path)
    wnid = sorted(tiny_wnids())[0]
    path = folder / "train" / wnid / "images" / f"{wnid}_1.JPEG"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=rf"{wnid}_1.JPEG: unreadable or corrupt image"):
        load("tinyimagenet", tmp_path)
    path.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"{wnid}_1.JPEG: unreadable or corrupt image"):
        load("tinyimagenet", tmp_path)


def test_an_image_of_the_wrong_size_is_reported(tiny_source, tmp_path):
    folder = copy_tiny(tiny_source, tmp_path)
    Image.new("RGB", (32, 64)).save(folder / "val" / "images" / "val_7.JPEG", "JPEG")
    with pytest.raises(DataError, match=r"val_7.JPEG: image is 32x64, expected 64x64"):
        load("tinyimagenet", tmp_path)


@pytest.mark.parametrize("line, match", [
    ("val_0.JPEG\tn99999999\t0\t0\t1\t1", r"line 201: unknown wnid 'n99999999'"),
    ("val_999.JPEG\t{wnid}\t0\t0\t1\t1", r"line 201: image 'val_999.JPEG' is missing"),
    ("val_0.JPEG\t{wnid}\t0\t0\t1\t1", r"line 201: image 'val_0.JPEG' is listed twice"),
    ("val_0.JPEG", r"line 201: expected 'FILE<tab>WNID"),
])
def test_bad_val_annotations_are_reported(tiny_source, tmp_path, line, match):
    folder = copy_tiny(tiny_source, tmp_path)
    with open(folder / "val" / "val_annotations.txt", "a") as handle:
        handle.write(line.format(wnid=tiny_wnids()[0]) + "\n")
    with pytest.raises(DataError, match=match) as error:
        load("tinyimagenet", tmp_path)
    assert "val_annotations.txt" in str(error.value)


def test_train_folders_must_match_wnids(tiny_source, tmp_path):
    folder = copy_tiny(tiny_source, tmp_path)
    (folder / "train" / "n12345678" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folders do not match wnids.txt"):
        load("tinyimagenet", tmp_path)
    shutil.rmtree(folder / "train" / "n12345678")
    wnid = tiny_wnids()[9]
    for image in (folder / "train" / wnid / "images").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=rf"{wnid}/images: no .JPEG images"):
        load("tinyimagenet", tmp_path)
    (folder / "wnids.txt").write_text("n1\nn1\n")
    with pytest.raises(DataError, match="expected distinct wnids"):
        load("tinyimagenet", tmp_path)


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_missing_data_without_download_gives_one_line_naming_layout_and_url(dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as error:
        load(dataset, tmp_path / "empty")
    message, spec = str(error.value), VISION_SPECS[dataset]
    assert "\n" not in message
    assert spec.name in message and str(tmp_path / "empty" / spec.folder) in message
    assert spec.layout in message and spec.mirrors[0] in message and spec.archive in message
    assert message.endswith("download disabled")


def test_an_unknown_dataset_or_unreadable_root_is_an_error(tmp_path):
    with pytest.raises(DataError, match="unknown vision dataset 'imagenet'"):
        load("imagenet", tmp_path)
    with pytest.raises(DataError, match="not a readable directory"):
        load("cifar10", tmp_path / "missing")


# ----------------------------------------------------------------------------- archives


def make_tar(path: Path, folder: Path, extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for info, payload in extra:
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def make_zip(path: Path, folder: Path, extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for file in sorted(folder.rglob("*")):
            zipped.write(file, file.relative_to(folder.parent).as_posix())
        for info, payload in extra:
            zipped.writestr(info, payload)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def override(monkeypatch, dataset: str, **changes) -> None:
    """How tests point a dataset at their own mirrors and checksums."""
    monkeypatch.setitem(VISION_SPECS, dataset,
                        dataclasses.replace(VISION_SPECS[dataset], **changes))


def test_an_archive_already_in_the_data_root_is_extracted_and_used(tmp_path, monkeypatch):
    source = write_cifar100_like(tmp_path / "staging")
    root = tmp_path / "root"
    root.mkdir()
    archive = make_tar(root / "cifar-100-python.tar.gz", source)
    override(monkeypatch, "cifar100", md5=md5(archive))
    data = load("cifar100", root)
    assert len(data.train_labels) == 300 and (root / "cifar-100-python" / "train").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no scratch left


def test_a_zip_archive_of_tinyimagenet_in_the_root_is_extracted(tiny_source, tmp_path,
                                                                 monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    archive = make_zip(root / "tiny-imagenet-200.zip", tiny_source)
    override(monkeypatch, "tinyimagenet", md5=md5(archive))
    assert len(load("tinyimagenet", root).test_labels) == 200


def test_an_archive_in_the_root_with_a_wrong_md5_is_not_used(tmp_path, monkeypatch):
    source = write_cifar100_like(tmp_path / "staging")
    root = tmp_path / "root"
    root.mkdir()
    make_tar(root / "cifar-100-python.tar.gz", source)
    with pytest.raises(DataError, match=r"cifar-100-python.tar.gz: checksum mismatch"):
        load("cifar100", root)
    assert not (root / "cifar-100-python").exists()


def test_an_incomplete_folder_is_kept_aside_when_the_archive_is_extracted(tmp_path, monkeypatch):
    source = write_cifar100_like(tmp_path / "staging")
    root = tmp_path / "root"
    (root / "cifar-100-python").mkdir(parents=True)
    (root / "cifar-100-python" / "train").write_text("mine")  # "test" is missing
    archive = make_tar(root / "cifar-100-python.tar.gz", source)
    override(monkeypatch, "cifar100", md5=md5(archive))
    assert len(load("cifar100", root).train_labels) == 300
    [kept] = root.glob("cifar-100-python.incomplete-*/cifar-100-python/train")
    assert kept.read_text() == "mine"


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _zip_member(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


UNSAFE_MEMBERS = {
    "dotdot": ("tar", lambda evil: _tar_member("../evil"), r"'\.\./evil' \('\.\.' in"),
    "nested-dotdot": ("tar", lambda evil: _tar_member("cifar-100-python/../../evil"), "'..' in"),
    "absolute": ("tar", lambda evil: _tar_member(str(evil)), "absolute path"),
    "symlink": ("tar", lambda evil: _tar_member("cifar-100-python/link", tarfile.SYMTYPE,
                                                 "/etc"), "a link"),
    "hardlink": ("tar", lambda evil: _tar_member("cifar-100-python/hard", tarfile.LNKTYPE,
                                                  "/etc/passwd"), "a link"),
    "device": ("tar", lambda evil: _tar_member("cifar-100-python/dev", tarfile.CHRTYPE),
               "not a plain file"),
    "zip-dotdot": ("zip", lambda evil: _zip_member("../evil"), "'..' in"),
    "zip-symlink": ("zip", lambda evil: _zip_member("cifar-100-python/link",
                                                    stat.S_IFLNK | 0o777), "a link"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_MEMBERS))
def test_an_archive_with_an_unsafe_member_is_refused(tmp_path, monkeypatch, case):
    kind, member, match = UNSAFE_MEMBERS[case]
    source = write_cifar100_like(tmp_path / "staging")
    root = tmp_path / "deep" / "root"
    root.mkdir(parents=True)
    evil = tmp_path / "evil"
    extra = [(member(evil), b"owned")]
    if kind == "tar":
        archive = make_tar(root / "cifar-100-python.tar.gz", source, extra)
    else:  # the loader picks the extractor by the archive's name
        archive = make_zip(root / "cifar-100-python.zip", source, extra)
        override(monkeypatch, "cifar100", archive="cifar-100-python.zip")
    override(monkeypatch, "cifar100", md5=md5(archive))
    with pytest.raises(DataError, match=rf"refusing to extract member .*{match}"):
        load("cifar100", root)
    assert not evil.exists() and not (tmp_path / "deep" / "evil").exists()
    assert not (root / "evil").exists() and not (root / "cifar-100-python").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/"mirror"."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = lambda *a, **k: _Files(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_downloads_from_a_loopback_mirror_and_verifies_the_md5(loopback_mirror, tmp_path,
                                                               monkeypatch):
    mirror, url = loopback_mirror
    archive = make_tar(mirror / "c10.tar.gz", write_cifar10_like(tmp_path / "staging"))
    override(monkeypatch, "cifar10", mirrors=(url + "missing.tar.gz", url + "c10.tar.gz"),
             md5=md5(archive))
    root = tmp_path / "root"
    root.mkdir()
    data = load_vision_data("cifar10", data_root=root, download=True)
    assert np.array_equal(data.train_images.numpy(), make_cifar_arrays(10, 20, 5)["train_images"])
    assert md5(root / "cifar-10-python.tar.gz") == md5(archive)
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py",
                                                      "cifar-10-python.tar.gz"]


def test_downloads_into_the_default_root_without_a_data_root(loopback_mirror, tmp_path,
                                                             monkeypatch):
    mirror, url = loopback_mirror
    archive = make_tar(mirror / "c100.tar.gz", write_cifar100_like(tmp_path / "staging"))
    override(monkeypatch, "cifar100", mirrors=(url + "c100.tar.gz",), md5=md5(archive))
    assert len(load_vision_data("cifar100").train_labels) == 300
    assert (tmp_path / "default-data" / "cifar-100-python" / "test").is_file()


def test_a_downloaded_checksum_mismatch_is_refused_and_nothing_is_kept(loopback_mirror, tmp_path,
                                                                      monkeypatch):
    mirror, url = loopback_mirror
    make_tar(mirror / "c10.tar.gz", write_cifar10_like(tmp_path / "staging"))
    override(monkeypatch, "cifar10", mirrors=(url + "c10.tar.gz",), md5="0" * 32)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="download failed: .*c10.tar.gz: checksum mismatch"):
        load_vision_data("cifar10", data_root=root, download=True)
    assert list(root.iterdir()) == []


def test_a_downloaded_archive_with_a_dotdot_member_is_refused(loopback_mirror, tmp_path,
                                                              monkeypatch):
    mirror, url = loopback_mirror
    archive = make_tar(mirror / "c10.tar.gz", write_cifar10_like(tmp_path / "staging"),
                       [(_tar_member("../evil"), b"owned")])
    override(monkeypatch, "cifar10", mirrors=(url + "c10.tar.gz",), md5=md5(archive))
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match=r"refusing to extract member '\.\./evil'"):
        load_vision_data("cifar10", data_root=root, download=True)
    assert not (tmp_path / "evil").exists() and not (root / "evil").exists()
    assert not (root / "cifar-10-batches-py").exists()


def test_an_unreachable_mirror_fails_cleanly(tmp_path, monkeypatch):
    override(monkeypatch, "tinyimagenet", mirrors=("http://127.0.0.1:9/tiny.zip",))
    with pytest.raises(DataError, match=r"download failed: http://127\.0\.0\.1:9/tiny.zip: ") \
            as error:
        load_vision_data("tinyimagenet", download=True)
    assert "\n" not in str(error.value) and "tiny-imagenet-200/{wnids.txt" in str(error.value)
