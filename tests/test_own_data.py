"""Your own continual-learning problem: benchmarks from tensors, datasets and folders, networks
as objects and names, one execution path, and the identity of both in the config hash."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import replaymask
from replaymask.config import resolve
from replaymask.data.benchmarks import load_benchmark
from replaymask.errors import ConfigError

from .conftest import separable_images


def toy_arrays(classes=(0, 1, 2, 3, 4, 5), per_class=40, features=12, seed=0):
    """Flat float features, one Gaussian blob per class, split into train and test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(max(classes) + 1, features)).astype(np.float32)
    labels = np.repeat(np.asarray(classes), per_class)
    inputs = centres[labels] + rng.normal(0, 1, size=(len(labels), features)).astype(np.float32)
    return (inputs[::2], labels[::2]), (inputs[1::2], labels[1::2])


def toy(tasks=((3, 0, 5), (1,), (2, 4)), **options):
    train, test = toy_arrays()
    options.setdefault("batch_size", 8)
    return replaymask.benchmark_from_tensors("toy", train=train, test=test,
                                             tasks=[list(t) for t in tasks], **options)


def test_uneven_tasks_renumber_labels_so_each_task_is_a_block_of_consecutive_outputs():
    bench = toy()
    assert bench.task_sizes == (3, 1, 2) and bench.task_offsets == (0, 3, 4, 6)
    assert bench.class_order == (3, 0, 5, 1, 2, 4)
    _, (_, raw_test_labels) = toy_arrays()
    renumbered = [bench.class_order.index(int(c)) for c in raw_test_labels]
    assert bench.test_labels.tolist() == renumbered
    assert set(bench.train_labels[bench.task_indices("train", 1)].tolist()) == {3}
    assert bench.class_to_task.tolist() == [0, 0, 0, 1, 2, 2]


def test_an_int_splits_the_class_order_into_that_many_consecutive_tasks():
    train, test = toy_arrays()
    bench = replaymask.benchmark_from_tensors("toy", train, test, tasks=3,
                                              class_order=[5, 4, 3, 2, 1, 0])
    assert bench.task_sizes == (2, 2, 2) and bench.class_order == (5, 4, 3, 2, 1, 0)
    assert replaymask.benchmark_from_tensors("toy", train, test, 2).class_order == tuple(range(6))


def test_float_inputs_are_used_as_they_are_and_uint8_inputs_scaled_by_one_over_255():
    bench = toy()
    assert bench.train_inputs.dtype == torch.float32
    assert torch.equal(bench.prepare(bench.train_inputs[:4]), bench.train_inputs[:4])
    images = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(20) % 4
    made = replaymask.benchmark_from_tensors("img", (images, labels), (images, labels), 2,
                                             mean=0.5, std=0.25)
    expected = (images[:3].float() / 255 - 0.5) / 0.25
    assert torch.allclose(made.prepare(images[:3]), expected, atol=1e-6)


def test_a_benchmark_from_the_exact_tensors_of_seq_mnist_trains_bit_for_bit_like_seq_mnist(
        real_mnist):
    """The proof that there is one execution path: the built-in benchmark and the same
    tensors brought as a user's benchmark give the same numbers, to the last bit."""
    builtin = load_benchmark("seq-mnist", download=False)
    own = replaymask.benchmark_from_tensors(
        "my-mnist", train=(builtin.train_inputs, builtin.train_labels),
        test=(builtin.test_inputs, builtin.test_labels), tasks=5, n_epochs=1, batch_size=10)
    for settings in ({"model": "er", "buffer_size": 200, "lr": 0.1, "minibatch_size": 10},
                     {"model": "derpp", "buffer_size": 50, "gms": True, "lr": 0.03,
                      "minibatch_size": 10, "alpha": 0.3, "beta": 0.8}):
        ours = replaymask.run(dataset="seq-mnist", seed=3, progress=False, **settings)
        theirs = replaymask.run(dataset=own, seed=3, progress=False, **settings)
        assert ours.accuracy_matrix == theirs.accuracy_matrix
        assert ours.metrics == theirs.metrics
        assert ours.random_init_accuracy == theirs.random_init_accuracy
        assert ours.config.hash != theirs.config.hash  # other data, another identity
        assert theirs.to_dict()["benchmark"]["fingerprint"] == own.fingerprint


def test_a_run_on_a_user_benchmark_uses_its_protocol_and_the_mlp_for_flat_inputs(tmp_path):
    bench = toy(n_epochs=2, lr_milestones=[2])
    result = replaymask.run(model="er", dataset=bench, buffer_size=30, lr=0.05,
                            progress=False, out=tmp_path / "run")
    config = result.config
    assert (config.n_epochs, config.batch_size, config.lr_milestones) == (2, 8, (2,))
    assert set(config.provenance.from_benchmark) >= {"n_epochs", "batch_size", "lr_milestones"}
    assert len(result.accuracy_matrix["class_il"]) == 3
    assert result.accuracy_matrix["task_il"][-1][1] == 100.0  # a task of one class
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["benchmark"]["task_sizes"] == [3, 1, 2]
    assert stored["benchmark"]["origin"] == {"kind": "tensors"}
    assert stored["network"] == {"name": "mlp", "kind": "built-in"}
    assert stored["config"]["benchmark_fingerprint"] == bench.fingerprint
    assert "n_tasks" not in stored["config"]


class TinyNet(nn.Module):
    def __init__(self, num_classes=6, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def test_a_network_object_starts_every_run_from_a_copy_of_its_weights():
    bench, net = toy(), TinyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = replaymask.run(model="er", dataset=bench, net=net, buffer_size=20, lr=0.05,
                           progress=False)
    second = replaymask.run(model="er", dataset=bench, net=net, buffer_size=20, lr=0.05,
                            progress=False)
    assert first.accuracy_matrix == second.accuracy_matrix
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert first.config.backbone == f"{__name__}.TinyNet"
    assert first.to_dict()["network"]["kind"] == "module"


def test_a_factory_is_called_after_seeding_so_each_seed_draws_its_own_weights():
    bench = toy()
    runs = [replaymask.run(model="sgd", dataset=bench, net=TinyNet, seed=seed, lr=0.05,
                           progress=False) for seed in (0, 0, 1)]
    assert runs[0].accuracy_matrix == runs[1].accuracy_matrix
    assert runs[0].random_init_accuracy != runs[2].random_init_accuracy
    assert runs[0].config.backbone_fingerprint == runs[2].config.backbone_fingerprint


def test_identity_two_problems_never_share_a_hash_and_the_same_one_always_does():
    bench = toy()
    same = toy()
    other_split = toy(tasks=((0, 1), (2, 3), (4, 5)))
    other_protocol = toy(n_epochs=3)
    base = {"model": "er", "buffer_size": 20, "lr": 0.05}
    hashes = {name: resolve(dataset=b, **base).hash for name, b in
              (("bench", bench), ("same", same), ("split", other_split),
               ("protocol", other_protocol))}
    assert hashes["bench"] == hashes["same"]
    assert len({hashes["bench"], hashes["split"], hashes["protocol"]}) == 3
    nets = {resolve(dataset=bench, backbone=net, **base).hash
            for net in (None, TinyNet(), TinyNet(width=8), TinyNet)}
    assert len(nets) == 4
    torch.manual_seed(0)
    one = TinyNet()
    torch.manual_seed(0)
    assert resolve(dataset=bench, backbone=one, **base).hash == \
        resolve(dataset=bench, backbone=TinyNet(), **base).hash


def test_the_default_network_follows_the_inputs_and_anything_else_asks_for_net():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    rgb = replaymask.benchmark_from_tensors("rgb", (images, labels), (images, labels), 2)
    assert rgb.info.default_backbone == "resnet18"
    sequences = torch.rand(40, 5, 7)
    seq = replaymask.benchmark_from_tensors("seq", (sequences, labels), (sequences, labels), 2)
    with pytest.raises(ConfigError, match=r"no built-in network takes seq's inputs of shape "
                                          r"\(5, 7\).*pass net="):
        resolve(model="er", dataset=seq, lr=0.1)
    with pytest.raises(ConfigError, match="resnet18 backbone takes images"):
        resolve(model="er", dataset=seq, lr=0.1, backbone="resnet18")
    assert resolve(model="er", dataset=seq, lr=0.1, backbone="mlp").backbone == "mlp"


def test_xder_says_it_needs_tasks_of_equal_size():
    with pytest.raises(ConfigError, match=r"xder needs tasks of equal size \(its SupCon"):
        resolve(model="xder", dataset=toy(), lr=0.03, minibatch_size=8)
    resolve(model="xder", dataset=toy(), lr=0.03, minibatch_size=8, n_tasks=3)


def test_benchmark_from_datasets_reads_any_dataset_of_input_label_items():
    (train_x, train_y), (test_x, test_y) = toy_arrays()

    class Items(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return torch.from_numpy(self.x[i]), torch.tensor(self.y[i])

    made = replaymask.benchmark_from_datasets("toy", Items(train_x, train_y),
                                              Items(test_x, test_y), tasks=2, progress=False)
    direct = replaymask.benchmark_from_tensors("toy", (train_x, train_y), (test_x, test_y), 2)
    assert made.fingerprint == direct.fingerprint
    assert made.origin["kind"] == "datasets" and "Items" in made.origin["class"]


def test_benchmark_from_datasets_turns_pil_images_into_channels_first_uint8():
    from PIL import Image

    rng = np.random.default_rng(0)
    colour = [(Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)), i % 2)
              for i in range(8)]
    made = replaymask.benchmark_from_datasets("pil", colour, colour, 2, progress=False)
    assert made.train_inputs.shape == (8, 3, 6, 5) and made.train_inputs.dtype == torch.uint8
    assert torch.equal(made.train_inputs[0], torch.from_numpy(
        np.asarray(colour[0][0]).transpose(2, 0, 1).copy()))


def write_png_tree(root, per_class=(("cat", 3), ("dog", 2), ("eel", 2)), size=6, mode="L"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, count in per_class:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size, size) if mode == "L" else (size, size, 3)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                    folder / f"{i}.png")
    return root


def test_benchmark_from_folder_reads_classes_by_folder_and_tasks_by_class_name(tmp_path):
    root = write_png_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    made = replaymask.benchmark_from_folder("pets", root, tasks=[["eel"], ["cat", "dog"]],
                                            progress=False, cache_dir=cache)
    assert made.class_names == ("cat", "dog", "eel") and made.class_order == (2, 0, 1)
    assert made.task_sizes == (1, 2) and made.train_inputs.shape == (7, 6, 6)
    from PIL import Image

    first = np.asarray(Image.open(root / "train" / "cat" / "0.png"))
    assert any(np.array_equal(first, row.numpy()) for row in made.train_inputs)
    again = replaymask.benchmark_from_folder("pets", root, tasks=[["eel"], ["cat", "dog"]],
                                             progress=False, cache_dir=cache)
    assert again.fingerprint == made.fingerprint
    assert len(list(cache.glob("folder-pets-*.npz"))) == 1


def test_a_changed_file_decodes_the_tree_again_and_changes_the_fingerprint(tmp_path):
    from PIL import Image

    root = write_png_tree(tmp_path / "tree")
    first = replaymask.benchmark_from_folder("pets", root, 3, progress=False,
                                             cache_dir=tmp_path / "cache")
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8), "L").save(root / "test" / "dog" / "0.png")
    second = replaymask.benchmark_from_folder("pets", root, 3, progress=False,
                                              cache_dir=tmp_path / "cache")
    assert second.fingerprint != first.fingerprint
    assert len(list((tmp_path / "cache").glob("folder-pets-*.npz"))) == 1  # the stale one gone


def test_colour_trees_become_channels_first_and_image_size_resizes(tmp_path):
    root = write_png_tree(tmp_path / "tree", mode="RGB", size=9)
    made = replaymask.benchmark_from_folder("rgb", root, 3, image_size=4, progress=False,
                                            cache_dir=tmp_path / "cache")
    assert made.train_inputs.shape == (7, 3, 4, 4)
    assert made.info.default_backbone == "resnet18"


def test_uint8_28x28_images_get_the_mlp():
    labels = np.arange(4)
    images = separable_images(labels, np.random.default_rng(0))
    made = replaymask.benchmark_from_tensors("small", (images, labels), (images, labels), 2)
    assert made.info.default_backbone == "mlp"


def test_from_python_a_bad_network_is_a_config_error_and_nothing_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"gives outputs of shape \(2, 4\) for a batch of 2, "
                                          r"but toy has 6 classes"):
        replaymask.run(model="er", dataset=toy(), net=TinyNet(num_classes=4), lr=0.1,
                       out=tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match=r"fails on a batch of shape \(2, 12\)"):
        replaymask.run(model="er", dataset=toy(), net=nn.Linear(5, 6), lr=0.1,
                       out=tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="must be a network.s name, an nn.Module or a factory"):
        replaymask.run(model="er", dataset=toy(), net=42, lr=0.1, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("train, message", [
    ((np.zeros((4, 3)), ["a", "b", "c", "d"]), "train labels must be a tensor or a NumPy "
                                               "array of numbers"),
    ((np.zeros((4, 3)), np.arange(5)), r"train labels must be one per sample: shape \(4,\)"),
    ((np.zeros(4), np.arange(4)), "train inputs must hold one row per sample"),
    ((np.zeros((4, 3), dtype=np.int64), np.arange(4)), "train inputs must be uint8"),
    ((np.full((4, 3), np.inf, dtype=np.float32), np.arange(4)), "NaN or infinite"),
    ((np.zeros((0, 3)), np.arange(0)), "train holds no samples"),
])
def test_from_python_bad_tensors_are_one_config_error_naming_the_problem(train, message):
    test = (np.zeros((4, 3), dtype=np.float32), np.arange(4))
    with pytest.raises(ConfigError, match=message):
        replaymask.benchmark_from_tensors("bad", train, test, tasks=2)


@pytest.mark.parametrize("options, message", [
    ({"tasks": 4}, "4 tasks do not split 6 classes evenly"),
    ({"tasks": [[0, 1, 2], [3, 4, 5, 9]]}, "class 9 of task 2 has no training samples"),
    ({"tasks": 2, "class_order": [0, 1, 2]}, "class_order must list every class"),
    ({"tasks": [[0, 1, 2], [3, 4, 5]], "class_order": [5, 4, 3, 2, 1, 0]},
     "class_order and the task lists disagree"),
    ({"tasks": 2, "mean": [0.1, 0.2], "std": [1.0, 1.0]}, "mean must be one finite number"),
    ({"tasks": 2, "mean": 0.5}, "give mean and std together"),
    ({"tasks": 2, "augmentation": "crop+flip"}, r"needs images of shape \(C, H, W\)"),
    ({"tasks": 2, "best_args_from": "seq-imagenet"}, "best_args_from must name a built-in"),
    ({"tasks": 2, "validation_fraction": 0.9}, "validation_fraction must be a number from 0"),
])
def test_bad_options_are_one_config_error(options, message):
    train, test = toy_arrays()
    with pytest.raises(ConfigError, match=message):
        replaymask.benchmark_from_tensors("toy", train, test, **options)


def test_a_names_clash_with_a_built_in_benchmark_is_refused():
    train, test = toy_arrays()
    with pytest.raises(ConfigError, match="'seq-mnist' is a built-in benchmark's name"):
        replaymask.benchmark_from_tensors("seq-mnist", train, test, 2)
    with pytest.raises(ConfigError, match="a benchmark's name must be"):
        replaymask.benchmark_from_tensors("my data/set", train, test, 2)


def test_a_python_sweep_ships_benchmark_and_network_objects_to_its_workers(tmp_path):
    bench = toy()
    grid = {"model": "er", "dataset": bench, "backbone": [TinyNet, "mlp"], "buffer_size": 20,
            "lr": 0.05, "seed": [0, 1]}
    summary = replaymask.sweep(grid, db=tmp_path / "runs.db", workers=2, progress=False)
    assert (summary.total, summary.ran, summary.failed) == (4, 4, 0)
    records = replaymask.load_runs(tmp_path / "runs.db")
    assert {r.config.get("backbone") for r in records} == {f"{__name__}.TinyNet", None}
    alone = replaymask.run(model="er", dataset=bench, net=TinyNet, buffer_size=20, lr=0.05,
                           seed=1, progress=False)
    same = [r for r in records if r.hash == alone.config.hash]
    assert same and same[0].result["accuracy_matrix"] == alone.accuracy_matrix
    again = replaymask.sweep(grid, db=tmp_path / "runs.db", workers=2, progress=False)
    assert again.already_done == 4


def test_a_checkpointed_run_on_a_user_benchmark_resumes_to_the_same_result(tmp_path):
    bench = toy(n_epochs=2)
    clean = replaymask.run(model="derpp", dataset=bench, net=TinyNet, buffer_size=20, lr=0.05,
                           alpha=0.3, beta=0.5, progress=False)
    folder = tmp_path / "ckpt"
    replaymask.run(model="derpp", dataset=bench, net=TinyNet, buffer_size=20, lr=0.05,
                   alpha=0.3, beta=0.5, progress=False, checkpoint_dir=folder,
                   checkpoint_every=7)
    import shutil

    newest = sorted(folder.iterdir())
    for extra in newest[2:]:  # as if the run had been killed after its second checkpoint
        if extra.is_file():
            extra.unlink()
        else:
            shutil.rmtree(extra)
    resumed = replaymask.run(model="derpp", dataset=bench, net=TinyNet, buffer_size=20,
                             lr=0.05, alpha=0.3, beta=0.5, progress=False,
                             checkpoint_dir=folder, resume=True)
    assert resumed.accuracy_matrix == clean.accuracy_matrix
    with pytest.raises(ConfigError, match="written for a different run"):
        replaymask.run(model="derpp", dataset=toy(tasks=((0, 1), (2, 3), (4, 5))),
                       net=TinyNet, buffer_size=20, lr=0.05, alpha=0.3, beta=0.5,
                       progress=False, checkpoint_dir=folder, resume=True)


def test_review_findings_stay_fixed(tmp_path):
    """Each of these once went wrong: an uneven benchmark re-split to as many equal tasks
    shared the hash of its own split; a benchmark with a scenario applied passed for the
    benchmark itself; a module and a factory of one class shared a hash; options that
    build the same data gave two hashes; huge labels allocated a table as large as the
    largest label; X-DER's strong views needed a mean and std."""
    train, test = toy_arrays()
    uneven = replaymask.benchmark_from_tensors("toy", train, test, [[0, 1], [2, 3, 4, 5]])
    base = {"model": "er", "lr": 0.1, "buffer_size": 20}
    assert resolve(dataset=uneven, **base).hash != resolve(dataset=uneven, n_tasks=2,
                                                           **base).hash
    with pytest.raises(ConfigError, match=r"has a run's scenario applied \(class_order_seed=7"):
        resolve(dataset=uneven.with_scenario(class_order_seed=7), **base)
    with pytest.raises(ConfigError, match="a built-in benchmark is given by its name"):
        resolve(dataset=_fake_builtin(), **base)
    torch.manual_seed(0)
    module = TinyNet()
    assert resolve(dataset=uneven, backbone=module, **base).hash != \
        resolve(dataset=uneven, backbone=TinyNet, **base).hash
    huge = np.array([0, 10**12] * 20)
    made = replaymask.benchmark_from_tensors("huge", (train[0][:40], huge),
                                             (train[0][:40], huge), 2)
    assert made.class_order == (0, 10**12) and made.train_labels.max() == 1
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    rgb = replaymask.benchmark_from_tensors("rgb", (images, labels), (images, labels), 2)
    replaymask.run(model="xder", dataset=rgb, net=lambda k: nn.Sequential(
        nn.Flatten(), nn.Linear(192, k)), lr=0.05, minibatch_size=4, buffer_size=8,
        simclr_batch_size=4, progress=False)


def _fake_builtin():
    from replaymask.data.benchmarks import Benchmark

    inputs = torch.zeros((4, 28, 28), dtype=torch.uint8)
    labels = torch.arange(4)
    return Benchmark("seq-mnist", inputs, labels, inputs, labels, task_sizes=(2, 2),
                     class_order=(0, 1, 2, 3))


def test_options_that_build_the_same_data_are_the_same_run(tmp_path, monkeypatch):
    train, test = toy_arrays()

    @replaymask.register_benchmark("toy-options")
    def toy_options(tasks=3, verbose=False):
        return replaymask.benchmark_from_tensors("toy-options", train, test, tasks)

    base = {"model": "er", "lr": 0.1, "dataset": "toy-options"}
    plain = resolve(**base)
    spelled = resolve(dataset_options={"tasks": 3, "verbose": True}, **{
        k: v for k, v in base.items()})
    assert plain.hash == spelled.hash and spelled.to_dict()["dataset_options"]["verbose"]
    assert resolve(dataset_options={"tasks": 2}, **base).hash != plain.hash


def test_16_bit_grayscale_images_keep_their_top_8_bits(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("a", "b"):
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            pixels = np.full((4, 4), 63000 if name == "a" else 256, dtype=np.uint16)
            Image.fromarray(pixels).save(folder / "0.png")
    made = replaymask.benchmark_from_folder("deep", tmp_path / "tree", 2, progress=False,
                                            cache_dir=tmp_path / "cache")
    assert sorted(made.train_inputs.reshape(2, -1)[:, 0].tolist()) == [1, 63000 >> 8]


def test_two_folder_benchmarks_keep_their_caches_apart(tmp_path):
    root = write_png_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    for name in ("pets", "pets-b"):
        replaymask.benchmark_from_folder(name, root, 3, progress=False, cache_dir=cache)
    other = write_png_tree(tmp_path / "other")
    replaymask.benchmark_from_folder("pets", other, 3, progress=False, cache_dir=cache)
    assert len(list(cache.glob("folder-*.npz"))) == 3


def test_a_sweep_keeps_two_same_content_benchmarks_of_two_names_apart(tmp_path):
    train, test = toy_arrays()
    alpha, beta = (replaymask.benchmark_from_tensors(name, train, test, 2)
                   for name in ("alpha", "beta"))
    summary = replaymask.sweep({"model": "sgd", "lr": 0.1, "dataset": [alpha, beta]},
                               db=tmp_path / "runs.db", workers=1, progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
