"""Names for the command line and sweep files: ``@register_benchmark`` and
``@register_backbone`` in a user's module, loaded by ``--import``, a sweep file's
``import:`` and the entry-point group ``replaymask.plugins``; sweep workers (local and Ray)
import the same modules."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .test_hardened_inputs import assert_one_clear_error, call

PLUGIN = '''
import numpy as np
import torch
from torch import nn

import replaymask


@replaymask.register_benchmark("blobs")
def blobs(tasks=3, classes=6, seed=0):
    """Gaussian blobs, flat float features: a problem no built-in benchmark covers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(classes, 12)).astype(np.float32)
    labels = np.repeat(np.arange(classes), 30)
    inputs = centres[labels] + rng.normal(0, 1, size=(len(labels), 12)).astype(np.float32)
    return replaymask.benchmark_from_tensors(
        "blobs", train=(inputs[::2], labels[::2]), test=(inputs[1::2], labels[1::2]),
        tasks=tasks, batch_size=8)


@replaymask.register_backbone("wide-mlp")
def wide_mlp(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 64), nn.ReLU(),
                         nn.Linear(64, num_classes))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A user's module ``my_plugin.py`` in the current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    yield "my_plugin"
    sys.modules.pop("my_plugin", None)


def test_run_imports_a_module_and_uses_its_benchmark_options_and_backbone(plugin, tmp_path):
    code, stdout, stderr = call(["run", "--import", plugin, "--model", "er", "--dataset",
                                 "blobs", "--dataset-option", "tasks=2", "--backbone",
                                 "wide-mlp", "--lr", "0.05", "--buffer-size", "20",
                                 "--no-progress", "--out", str(tmp_path / "out")])
    assert code == 0, stderr
    stored = json.loads((tmp_path / "out" / "result.json").read_text())
    assert stored["config"]["dataset_options"] == {"tasks": 2}
    assert stored["config"]["backbone"] == "wide-mlp"
    assert len(stored["config"]["backbone_fingerprint"]) == 64
    origin = stored["benchmark"]["origin"]
    assert (origin["registered"], origin["module"], origin["kind"]) == ("blobs", plugin, "tensors")
    assert stored["benchmark"]["options"] == {"tasks": 2}
    assert stored["network"]["kind"] == "registered"
    assert stored["network"]["factory"] == f"{plugin}.wide_mlp"
    assert len(stored["accuracy_matrix"]["class_il"]) == 2


def test_the_benchmarks_command_lists_built_in_and_registered_names(plugin):
    code, stdout, _ = call(["benchmarks", "--import", plugin])
    assert code == 0
    assert "seq-mnist" in stdout and "blobs" in stdout and "registered by my_plugin" in stdout
    assert "blobs(tasks=3, classes=6, seed=0)" in stdout and "wide-mlp" in stdout


def test_a_sweep_file_imports_its_modules_and_two_workers_run_a_registered_benchmark(
        plugin, tmp_path):
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        import: [my_plugin]
        model: er
        dataset: blobs
        dataset_options: [{tasks: 2}, {tasks: 3}]
        lr: 0.05
        buffer_size: 20
        seed: [0, 1]
        """))
    db = tmp_path / "runs.db"
    code, stdout, stderr = call(["sweep", str(tmp_path / "sweep.yaml"), "--db", str(db),
                                 "--workers", "2", "--no-progress"])
    assert code == 0, stderr + stdout
    rows = sqlite3.connect(db).execute("SELECT config, status FROM runs").fetchall()
    assert [status for _, status in rows] == ["done"] * 4
    fingerprints = {json.loads(config)["benchmark_fingerprint"] for config, _ in rows}
    assert len(fingerprints) == 2  # two task splits: two benchmarks
    code, stdout, _ = call(["runs", "--db", str(db)])
    labels = {line.split()[3] for line in stdout.splitlines()[1:-1]}
    assert labels == {f"blobs@{fingerprint[:8]}" for fingerprint in fingerprints}
    first = sorted(fingerprints)[0]
    code, stdout, _ = call(["runs", "--db", str(db), "--dataset", f"blobs@{first[:6]}"])
    assert stdout.splitlines()[-1] == "2 runs"
    code, again, _ = call(["sweep", str(tmp_path / "sweep.yaml"), "--db", str(db),
                           "--no-progress"])
    assert "4 already done" in again  # the same problem, the same hashes: nothing re-runs


def test_the_report_keeps_two_benchmarks_of_one_name_apart(plugin, tmp_path):
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        import: [my_plugin]
        model: sgd
        dataset: blobs
        dataset_options: [{seed: 0}, {seed: 1}]
        lr: 0.05
        """))
    db = tmp_path / "runs.db"
    assert call(["sweep", str(tmp_path / "sweep.yaml"), "--db", str(db), "--workers", "1",
                 "--no-progress"])[0] == 0
    code, stdout, stderr = call(["report", "--db", str(db), "--out", str(tmp_path / "report"),
                                 "--no-plots"])
    assert code == 0, stderr
    table = (tmp_path / "report" / "report.md").read_text()
    columns = {part.split(" buf")[0] for part in table.split("|") if "blobs@" in part}
    assert len(columns) == 2
    assert "| SGD [lr=0.05] |" in table  # no best arguments for blobs: its lr is named


def test_an_installed_plugin_registers_its_names_through_the_entry_point_group(tmp_path):
    site = tmp_path / "site"
    package = site / "blob_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    info = site / "blob_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: blob-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[replaymask.plugins]\nblobs = blob_plugin\n")
    environment = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "replaymask", "run", "--model", "sgd",
                           "--dataset", "blobs", "--lr", "0.05", "--no-progress", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          env=environment, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    stored = json.loads((tmp_path / "out" / "result.json").read_text())
    assert stored["benchmark"]["origin"]["module"] == "blob_plugin"


def test_a_broken_installed_plugin_is_one_line_naming_it(tmp_path):
    site = tmp_path / "site"
    info = site / "broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[replaymask.plugins]\nbroken = no_such_module\n")
    done = subprocess.run([sys.executable, "-m", "replaymask", "run", "--dataset", "mine",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "replaymask: error: the installed replaymask plugin 'broken' (no_such_module) cannot "
        "be imported: ModuleNotFoundError: No module named 'no_such_module'"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "--import", "no_such_module_here"],
     "cannot import 'no_such_module_here': ModuleNotFoundError"),
    (["run", "--import", "missing.py"], "cannot import 'missing.py': no such file"),
    (["run", "--dataset", "blobz"], "unknown benchmark 'blobz' (known: seq-mnist, "),
    (["run", "--import", "my_plugin", "--dataset", "blobs", "--backbone", "tiny",
      "--lr", "0.1"], "unknown backbone 'tiny' (known: mlp, resnet18, wide-mlp"),
    (["run", "--import", "my_plugin", "--dataset", "blobs", "--dataset-option", "colour=red",
      "--lr", "0.1"], "benchmark 'blobs' takes no option 'colour' (its options: tasks, "
                      "classes, seed)"),
    (["run", "--import", "my_plugin", "--dataset", "blobs", "--dataset-option", "tasks=4",
      "--lr", "0.1"], "benchmark 'blobs': 4 tasks do not split 6 classes evenly"),
    (["run", "--import", "my_plugin", "--dataset", "blobs"],
     "derpp has no best arguments for blobs: pass --lr, --alpha, --beta"),
    (["run", "--dataset", "seq-mnist", "--dataset-option", "tasks=2"],
     "seq-mnist is built in and takes no dataset options"),
    (["sweep", "SWEEP"], "cannot import 'no_such_module_here'"),
])
def test_mistakes_with_names_and_modules_are_one_line_and_write_nothing(
        plugin, tmp_path, argv, message):
    (tmp_path / "sweep.yaml").write_text("import: [no_such_module_here]\nmodel: er\n")
    argv = [str(tmp_path / "sweep.yaml") if arg == "SWEEP" else arg for arg in argv]
    if argv[0] == "run":
        argv += ["--out", str(tmp_path / "out")]
    else:
        argv += ["--db", str(tmp_path / "runs.db")]
    code, stdout, stderr = call(argv)
    assert_one_clear_error(code, stdout, stderr, mentions=message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs.db").exists()


def test_a_module_that_raises_when_imported_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faulty.py").write_text("raise RuntimeError('no GPU here\\nsecond line')\n")
    code, stdout, stderr = call(["run", "--import", "faulty.py", "--out", str(tmp_path / "o")])
    assert_one_clear_error(code, stdout, stderr,
                           mentions="cannot import 'faulty.py': RuntimeError: no GPU here")


def test_the_docs_say_that_importing_a_module_runs_its_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    guide = (Path(__file__).resolve().parent.parent / "docs" / "own-data.md").read_text()
    for text in (readme, guide):
        assert "that module's code" in text


DEFECTS = '''
import numpy as np
import torch
from torch import nn

import replaymask


@replaymask.register_benchmark("defective")
def defective(defect="none"):
    rng = np.random.default_rng(0)
    x = rng.random((40, 6)).astype(np.float32)
    y = np.arange(40) % 4
    test_x, test_y, tasks = x.copy(), y.copy(), [[0, 1], [2, 3]]
    if defect == "float_labels":
        y = y.astype(np.float32)
    elif defect == "negative":
        y = y - 1
    elif defect == "two_tasks":
        tasks = [[0, 1], [1, 2, 3]]
    elif defect == "no_task":
        tasks = [[0, 1], [2]]
    elif defect == "no_test":
        test_x, test_y = test_x[test_y != 2], test_y[test_y != 2]
    elif defect == "empty_task":
        tasks = [[0, 1, 2, 3], [7, 8]]
    elif defect == "nan":
        x[5, 2] = np.nan
    elif defect == "shapes":
        test_x = rng.random((40, 7)).astype(np.float32)
    return replaymask.benchmark_from_tensors("defective", (x, y), (test_x, test_y), tasks)


@replaymask.register_backbone("five-outputs")
def five_outputs(num_classes):
    return nn.Linear(6, 5)


@replaymask.register_backbone("wrong-input")
def wrong_input(num_classes):
    return nn.Linear(3, num_classes)
'''


@pytest.mark.parametrize("options, message", [
    (["defect=float_labels"], "train labels must be integers, got torch.float32"),
    (["defect=negative"], "train labels must be >= 0, got -1"),
    (["defect=two_tasks"], "class 1 is in two tasks: 1 and 2"),
    (["defect=no_task"], "class 3 has training samples but is in no task"),
    (["defect=no_test"], "class 2 has training samples but no test samples"),
    (["defect=empty_task"], "task 2 has no training samples (classes [7, 8])"),
    (["defect=nan"], "train inputs hold NaN or infinite values (1 samples, the first is "
                     "sample 5)"),
    (["defect=shapes"], "train and test samples have different shapes: (6,) and (7,)"),
    (["--backbone", "five-outputs"], "gives outputs of shape (2, 5) for a batch of 2, but "
                                     "defective has 4 classes"),
    (["--backbone", "wrong-input"], "the network wrong-input fails on a batch of shape (2, 6)"),
])
def test_bad_data_and_networks_from_the_command_line_are_one_line_and_write_nothing(
        tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "defects.py").write_text(DEFECTS)
    flags = (["--dataset-option", options[0]] if options[0].startswith("defect=")
             else options)
    code, stdout, stderr = call(["run", "--import", "defects.py", "--model", "er",
                                 "--dataset", "defective", "--lr", "0.1", "--out",
                                 str(tmp_path / "out"), "--tensorboard", str(tmp_path / "tb"),
                                 "--checkpoint-dir", str(tmp_path / "ckpt"), *flags])
    assert_one_clear_error(code, stdout, stderr, mentions=message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defects.py"]


def test_analyze_instruments_a_registered_benchmark(plugin, tmp_path):
    code, stdout, stderr = call(["analyze", "--import", plugin, "--model", "er", "--dataset",
                                 "blobs", "--dataset-option", "tasks=2", "--lr", "0.05",
                                 "--buffer-size", "20", "--mask-values", "none,-inf",
                                 "--out", str(tmp_path / "analysis")])
    assert code == 0, stderr
    found = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert set(found["runs"]) == {"plain softmax", "GMS m=-inf"}
    run = found["runs"]["GMS m=-inf"]["0"]
    assert run["config"]["dataset_options"] == {"tasks": 2} and run["records"]
