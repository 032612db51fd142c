"""``--wandb DIR``: the same live logs as TensorBoard's, as offline W&B runs, read back from
the run files W&B writes (no network, no account)."""

from __future__ import annotations

import json
import struct
import sys
import time

import pytest

from replaymask import api, cli

pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, with its own settings and caches kept inside the test's folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home" / variable.lower()))


def wandb_records(path) -> list:
    """The records of a ``run-<id>.wandb`` file: a LevelDB-style log (32 KiB blocks, each
    record split into chunks with a 7-byte header) after W&B's 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, records, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # padding to the end of the block
            position += left_in_block
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a whole record, or its last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run_files(folder) -> list:
    """The offline runs' files under a ``--wandb`` folder."""
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))


def logged_run(run_file, wait_s: float = 60.0) -> dict:
    """An offline run's name, config, history (step -> values), summary and exit code.

    W&B's own process may still be appending the last records (the exit record comes
    last) after ``finish`` has returned, so on a busy machine the file is read again
    until the exit record is there, for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            run = _read_run(run_file)
        except Exception:  # a record still being written: read again
            run = None
        if (run is not None and run["exit_code"] is not None) or time.monotonic() > deadline:
            return run if run is not None else _read_run(run_file)
        time.sleep(0.1)


def _read_run(run_file) -> dict:
    run = {"config": {}, "history": {}, "summary": {}, "exit_code": None, "name": None}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"] = record.run.display_name
            run["config"].update({item.key: json.loads(item.value_json)
                                  for item in record.run.config.update})
        elif kind == "history":
            items = {"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                     for item in record.history.item}
            run["history"].setdefault(items.pop("_step"), {}).update(items)
        elif kind == "summary":
            run["summary"].update({"/".join(item.nested_key) or item.key:
                                   json.loads(item.value_json)
                                   for item in record.summary.update})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def test_a_run_logs_the_same_values_to_an_offline_wandb_run(mnist_like_root, tmp_path, capsys):
    out, folder = tmp_path / "out", tmp_path / "wandb-runs"
    code = cli.main(["run", "--model", "er", "--buffer-size", "20", "--gms", "--n-epochs", "2",
                     "--analysis", "--data-root", str(mnist_like_root), "--out", str(out),
                     "--wandb", str(folder), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    (run_file,) = run_files(folder)
    run = logged_run(run_file)
    assert run["name"].startswith("er_seq-mnist_buf20_seed0_gms-inf_")
    assert run["config"]["model"] == "er" and run["config"]["gms"] is True
    assert run["config"]["lr"] == result["config"]["lr"]
    history = run["history"]
    losses = [values["train/loss"] for values in history.values() if "train/loss" in values]
    assert len(losses) == 10  # 5 tasks x 2 epochs, one read-back at each epoch's end
    matrix = result["accuracy_matrix"]["class_il"]
    at_task_ends = [values for values in history.values() if "class_il/average" in values]
    assert [values["class_il/task_1"] for values in at_task_ends] == [row[0] for row in matrix]
    assert [values["class_il/average"] for values in at_task_ends] == pytest.approx(
        [sum(row) / len(row) for row in matrix])
    grads = [values["analysis/grad_old"] for values in history.values()
             if "analysis/grad_old" in values]
    assert grads == pytest.approx([record["grad_old"] for record in result["analysis"]])
    images = [values for values in history.values() if "accuracy_matrix/_type" in values]
    assert [image["accuracy_matrix/_type"] for image in images] == ["image-file"]
    for setting in ("class_il", "task_il"):
        assert run["summary"][setting] == result["metrics"][setting]["average_accuracy"]
        assert run["summary"][f"{setting}_forgetting"] == \
            result["metrics"][setting]["forgetting"]
    assert run["exit_code"] == 0


def test_results_are_identical_with_and_without_wandb(mnist_like_root, tmp_path):
    settings = {"model": "derpp", "buffer_size": 20, "gms": True, "seed": 3,
                "data_root": mnist_like_root, "progress": False}
    logged = api.run(wandb=tmp_path / "w", tensorboard=tmp_path / "tb", **settings)
    plain = api.run(**settings)
    assert logged.accuracy_matrix == plain.accuracy_matrix
    assert logged.metrics == plain.metrics


def test_a_sweep_makes_one_wandb_run_per_run(mnist_like_root, tmp_path):
    grid = {"model": "er", "buffer_size": 20, "n_epochs": 1, "gms": [False, True]}
    summary = api.sweep(grid, db=tmp_path / "r.db", workers=2, data_root=mnist_like_root,
                        progress=False, wandb=tmp_path / "w")
    assert summary.ran == 2 and summary.failed == 0
    runs = [logged_run(run_file) for run_file in run_files(tmp_path / "w")]
    assert sorted(run["config"]["gms"] for run in runs) == [False, True]
    assert all(run["exit_code"] == 0 and "class_il" in run["summary"] for run in runs)


def test_a_diverging_run_is_marked_failed(mnist_like_root, tmp_path, capsys):
    code = cli.main(["run", "--model", "sgd", "--lr", "1e30", "--data-root",
                     str(mnist_like_root), "--out", str(tmp_path / "out"), "--wandb",
                     str(tmp_path / "w"), "--no-progress"])
    assert code == 3 and "diverged" in capsys.readouterr().err
    (run_file,) = run_files(tmp_path / "w")
    assert logged_run(run_file)["exit_code"] == 1


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_missing_wandb_package_is_one_line_exit_2_before_anything(
        command, mnist_like_root, tmp_path, capsys, monkeypatch):
    for name in [name for name in sys.modules if name.startswith("wandb.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails
    folder, out, db = tmp_path / "w", tmp_path / "out", tmp_path / "r.db"
    if command == "run":
        argv = ["run", "--model", "er", "--data-root", str(mnist_like_root), "--out", str(out)]
    else:
        (tmp_path / "s.yaml").write_text("model: er\n")
        argv = ["sweep", str(tmp_path / "s.yaml"), "--db", str(db)]
    code = cli.main([*argv, "--wandb", str(folder), "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err == ("replaymask: error: --wandb needs the wandb package: "
                                       "pip install 'replaymask[wandb]'\n")
    assert not folder.exists() and not out.exists() and not db.exists()


def test_an_unwritable_wandb_folder_is_one_line_exit_2(mnist_like_root, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code = cli.main(["run", "--model", "er", "--data-root", str(mnist_like_root), "--out",
                     str(tmp_path / "out"), "--wandb", str(a_file / "w"), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1
    assert f"--wandb {str(a_file / 'w')!r} cannot be created" in stderr
    assert not (tmp_path / "out").exists()
