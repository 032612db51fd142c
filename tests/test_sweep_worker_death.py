"""A worker process killed mid-run: its run is re-run from its checkpoint, recorded once."""

import os
import signal
import threading
import time
from pathlib import Path

from replaymask.experiments.store import ResultsStore
from replaymask.experiments.sweep import load_sweep, run_sweep


def children(pid):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"resource_tracker" not in cmdline:
                found.append(int(entry.name))
    return found


def test_runs_of_a_killed_worker_are_rerun_from_their_checkpoints_and_recorded_once(
        tmp_path, mnist_like_root):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("model: derpp\nbuffer_size: 10\nseed: [0, 1, 2, 3, 4, 5]\n"
                          "n_epochs: 12\n")
    configs = load_sweep(sweep_file)
    clean = ResultsStore(tmp_path / "clean.db", create=True)
    run_sweep(configs, clean, workers=2, data_root=str(mnist_like_root), progress=False)

    store = ResultsStore(tmp_path / "killed.db", create=True)
    checkpoints = tmp_path / "checkpoints"
    killed = []

    def kill_a_worker_once_it_has_a_checkpoint():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if any(checkpoints.glob("*/checkpoint-*.pt")):
                workers = children(os.getpid())
                if workers:
                    os.kill(max(workers), signal.SIGKILL)
                    killed.append(max(workers))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_once_it_has_a_checkpoint, daemon=True)
    killer.start()
    summary = run_sweep(configs, store, workers=2, data_root=str(mnist_like_root),
                        progress=False, checkpoint_root=checkpoints)
    killer.join()
    assert killed, "a worker should have been killed mid-sweep"
    assert summary.failed == 0
    rows = {row["config_hash"]: row for row in store.runs()}
    assert set(rows) == {c.hash for c in configs}
    expected = {row["config_hash"]: row for row in clean.runs()}
    for key, row in rows.items():
        assert row["status"] == "done" and row["attempts"] == 1
        assert row["result"]["accuracy_matrix"] == expected[key]["result"]["accuracy_matrix"]
        assert row["metrics"] == expected[key]["metrics"]
    assert not any(checkpoints.glob("*/checkpoint-*.pt"))  # removed once recorded
