"""Kill a sweep with SIGKILL halfway, start it again: every run ends up recorded exactly once."""

import os
import signal
import subprocess
import sys
import time

from replaymask.experiments.store import ResultsStore
from replaymask.experiments.sweep import load_sweep


def test_a_killed_sweep_resumes_and_records_each_run_once(tmp_path, mnist_like_root):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("model: [sgd, er]\nbuffer_size: 10\nseed: [0, 1, 2, 3, 4, 5, 6, 7, 8, "
                          "9, 10, 11, 12, 13, 14]\nn_epochs: 2\n")
    db = tmp_path / "r.db"
    command = [sys.executable, "-m", "replaymask", "sweep", str(sweep_file), "--db", str(db),
               "--workers", "2", "--data-root", str(mnist_like_root), "--no-progress"]
    env = {**os.environ}
    first = subprocess.Popen(command, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists() and len(ResultsStore(db).statuses()) >= 6:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its workers, mid-sweep
    first.wait()
    recorded_before = len(ResultsStore(db).statuses())
    assert 6 <= recorded_before < 30, "the kill should land halfway"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"{recorded_before} already done" in second.stdout
    rows = ResultsStore(db).runs()
    assert len(rows) == 30 == len({r["config_hash"] for r in rows})
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
    assert len(load_sweep(sweep_file)) == 30
