"""Checkpoints: a run interrupted anywhere and resumed ends exactly like one never stopped."""

import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from replaymask.config import resolve
from replaymask.core import checkpoint
from replaymask.core.checkpoint import (
    MAGIC,
    CheckpointError,
    checkpoint_files,
    read_checkpoint,
    save_checkpoint,
)
from replaymask.core.methods import method_class
from replaymask.core.training import Checkpointing, CheckpointMismatchError, train


class Crash(Exception):
    pass


def configured(model, **settings):
    defaults = dict(model=model, buffer_size=20, n_epochs=2)
    if model == "xder":
        defaults.update(dataset="seq-cifar10", batch_size=8, minibatch_size=8,
                        simclr_batch_size=4, n_epochs=1)
    return resolve({**defaults, **settings})


def crash_after(monkeypatch, model, steps):
    """Make the ``steps``-th training step of ``model`` raise, as a kill would."""
    learner = method_class(model)
    original = learner.observe
    calls = {"n": 0}

    def observe(self, *args):
        calls["n"] += 1
        if calls["n"] == steps:
            raise Crash
        return original(self, *args)
    monkeypatch.setattr(learner, "observe", observe)
    return lambda: monkeypatch.setattr(learner, "observe", original)


def same_outcome(first, second):
    assert first.accuracy_matrix == second.accuracy_matrix
    assert first.metrics == second.metrics
    assert first.before_task_accuracy == second.before_task_accuracy
    assert first.random_init_accuracy == second.random_init_accuracy


def test_a_run_resumed_from_a_checkpoint_at_an_epochs_last_batch_equals_the_uninterrupted_run(
        tiny, tmp_path, monkeypatch):
    # 6 steps per epoch: the checkpoint after step 6 records batch 6 of 6 of epoch 1, so
    # the resumed epoch has no batch left (it must not train on an empty one)
    config = configured("derpp", batch_size=10)
    clean = train(config, tiny, progress=False)
    saving = Checkpointing(tmp_path / "ck", every_steps=6, resume=True, warn=pytest.fail)
    restore = crash_after(monkeypatch, "derpp", 7)
    with pytest.raises(Crash):
        train(config, tiny, progress=False, checkpointing=saving)
    restore()
    same_outcome(train(config, tiny, progress=False, checkpointing=saving), clean)


@pytest.mark.parametrize("model,crash_steps", [
    ("derpp", [7, 20, 12]),  # mid-task (12 steps per task), again later, near the end
    ("er_ace", [12]),        # exactly at a task boundary
    ("joint", [40]),         # re-initialises the network at each task
    ("sgd", [3, 4, 5]),      # before the first checkpoint, then repeatedly
    # the rehearsal family: each method's own state (old networks, bias layers, held-out
    # splits, memory scores, per-task memories) survives a crash mid-task
    *((model, [17]) for model in ("agem", "gem", "gdumb", "icarl", "fdr", "mer", "gss",
                                  "bic", "hal", "lode")),
])
def test_a_run_resumed_after_crashes_equals_the_uninterrupted_run(tiny, tmp_path, monkeypatch,
                                                                  model, crash_steps):
    config = configured(model, batch_size=10)
    clean = train(config, tiny, progress=False)
    saving = Checkpointing(tmp_path / "ck", every_steps=5, resume=True, warn=pytest.fail)
    for steps in crash_steps:
        restore = crash_after(monkeypatch, model, steps)
        with pytest.raises(Crash):
            train(config, tiny, progress=False, checkpointing=saving)
        restore()
    same_outcome(train(config, tiny, progress=False, checkpointing=saving), clean)


def test_xder_resumes_exactly_with_augmentation_and_its_own_state(tiny_vision, tmp_path,
                                                                  monkeypatch):
    config = configured("xder")
    clean = train(config, tiny_vision, progress=False)
    saving = Checkpointing(tmp_path / "ck", every_steps=1, resume=True, warn=pytest.fail)
    restore = crash_after(monkeypatch, "xder", 4)  # task 1, second step: buffer in use
    with pytest.raises(Crash):
        train(config, tiny_vision, progress=False, checkpointing=saving)
    restore()
    same_outcome(train(config, tiny_vision, progress=False, checkpointing=saving), clean)


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(tiny, tmp_path, monkeypatch):
    config = configured("er", batch_size=10)
    clean = train(config, tiny, progress=False)
    warnings = []
    saving = Checkpointing(tmp_path / "ck", every_steps=4, resume=True, warn=warnings.append)
    restore = crash_after(monkeypatch, "er", 30)
    with pytest.raises(Crash):
        train(config, tiny, progress=False, checkpointing=saving)
    restore()
    newest = checkpoint_files(tmp_path / "ck")[0]
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated, as by a full disk
    same_outcome(train(config, tiny, progress=False, checkpointing=saving), clean)
    assert len(warnings) == 1 and "checksum mismatch" in warnings[0] and newest.name in warnings[0]


def test_resuming_with_other_settings_is_refused(tiny, tmp_path):
    saving = Checkpointing(tmp_path / "ck", resume=True)
    train(configured("er", batch_size=10), tiny, progress=False, checkpointing=saving)
    with pytest.raises(CheckpointMismatchError, match="lr"):
        train(configured("er", batch_size=10, lr=0.5), tiny, progress=False,
              checkpointing=saving)


def test_only_the_two_newest_checkpoints_are_kept(tmp_path):
    for sequence in range(1, 6):
        save_checkpoint(tmp_path, sequence, {"x": torch.tensor([sequence])})
    assert [p.name for p in checkpoint_files(tmp_path)] == ["checkpoint-00000005.pt",
                                                            "checkpoint-00000004.pt"]
    assert not list(tmp_path.glob(".checkpoint-*"))  # no temporary files left
    assert read_checkpoint(checkpoint_files(tmp_path)[0])["x"].item() == 5


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_with_code_in_it_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = io.BytesIO()
    torch.save({"format_version": 1, "evil": Exploit()}, payload)
    data = payload.getvalue()
    path = tmp_path / "checkpoint-00000001.pt"
    path.write_bytes(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
    with pytest.raises(CheckpointError, match="unreadable payload"):
        read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    raw = pickle.dumps(Exploit())
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match="bad header"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 99)
    save_checkpoint(tmp_path, 1, {})
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(checkpoint_files(tmp_path)[0])


def run_command(root, out, checkpoints):
    return [sys.executable, "-m", "replaymask", "run", "--model", "derpp", "--buffer-size",
            "20", "--n-epochs", "20", "--data-root", str(root), "--no-download",
            "--no-progress", "--threads", "1", "--out", str(out), "--checkpoint-dir",
            str(checkpoints), "--checkpoint-every", "3", "--resume"]


def newest_checkpoint(directory):
    files = checkpoint_files(directory) if directory.exists() else []
    return files[0].name if files else None


def kill_after_progress(command, env, checkpoints, delay):
    """Start ``command``; once it has saved a checkpoint of its own, wait ``delay`` s, kill -9.

    Anchored to the run's own progress rather than to a wall-clock guess, so a slow or
    fast machine (a cold start on a fresh CI box) cannot make every kill miss.  Returns
    whether the process was still alive to be killed.
    """
    before = newest_checkpoint(checkpoints)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (process.poll() is None and newest_checkpoint(checkpoints) == before
           and time.monotonic() < deadline):
        time.sleep(0.01)
    time.sleep(delay)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return killed


def test_kill_9_at_random_moments_then_resume_gives_the_same_result_json(mnist_like_root,
                                                                         tmp_path):
    import json
    import random

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean = tmp_path / "clean"
    subprocess.run(run_command(mnist_like_root, clean, tmp_path / "ck-clean"), check=True,
                   env=env, capture_output=True)
    out, checkpoints = tmp_path / "out", tmp_path / "ck"
    moments = random.Random(0)
    kills = sum(kill_after_progress(run_command(mnist_like_root, out, checkpoints), env,
                                    checkpoints, moments.uniform(0.0, 0.15))
                for _ in range(3))
    subprocess.run(run_command(mnist_like_root, out, checkpoints), check=True, env=env,
                   capture_output=True)
    assert kills == 3  # every try was killed mid-run, after progress of its own
    expected = json.loads((clean / "result.json").read_text())
    resumed = json.loads((out / "result.json").read_text())
    for key in ("accuracy_matrix", "metrics", "before_task_accuracy", "random_init_accuracy"):
        assert resumed[key] == expected[key]


def test_an_unwritable_checkpoint_dir_is_refused_before_training(mnist_like_root, tmp_path,
                                                                  capsys):
    from replaymask import cli

    (tmp_path / "a-file").write_text("")
    code = cli.main(["run", "--data-root", str(mnist_like_root), "--out", str(tmp_path / "o"),
                     "--checkpoint-dir", str(tmp_path / "a-file" / "ck"), "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and "--checkpoint-dir" in stderr
    assert not (tmp_path / "o").exists()


def test_a_failing_checkpoint_write_stops_the_run_with_one_line(mnist_like_root, tmp_path,
                                                                capsys, monkeypatch):
    from replaymask import cli
    from replaymask.core import training

    def full_disk(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(training, "save_checkpoint", full_disk)
    code = cli.main(["run", "--model", "sgd", "--data-root", str(mnist_like_root), "--out",
                     str(tmp_path / "o"), "--checkpoint-dir", str(tmp_path / "ck"),
                     "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 4 and "No space left on device" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()
