"""kill -9 a real S-MNIST DER++ run at random moments, resume it, compare with a clean run.

    python benchmarks/crash_test.py [--trials 20] [--seed 0] [--checkpoint-every 500]

First one uninterrupted run (no checkpoints) gives the reference result.json. Then each
trial starts the same run with ``--checkpoint-dir`` (a checkpoint at every task end and
every N steps), sends it SIGKILL at a moment drawn uniformly over the reference run's
duration (start-up included), and resumes it with ``--resume`` until it finishes. The
resumed run's accuracy matrices and metrics must equal the reference's exactly. For
each trial the script prints when the kill landed and the position (task, epoch, batch)
of the checkpoint the resume started from. Exits 1 if any trial differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPARED = ("accuracy_matrix", "metrics", "before_task_accuracy", "random_init_accuracy")


def command(out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "replaymask", "run", "--model", "derpp", "--dataset",
            "seq-mnist", "--buffer-size", "200", "--gms", "--seed", "0", "--threads", "1",
            "--no-progress", "--no-download", "--out", str(out), *extra]


def newest_position(directory: Path) -> str:
    from replaymask.core.checkpoint import load_newest_checkpoint

    found = load_newest_checkpoint(directory, warn=lambda message: None)
    if found is None:
        return "none (started afresh)"
    position = json.loads(found[0]["run_state"])["position"]
    return f"task {position['task']} epoch {position['epoch']} batch {position['batch']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    args = parser.parse_args()
    draw = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        began = time.perf_counter()
        subprocess.run(command(scratch / "clean", []), check=True, env=env,
                       stdout=subprocess.DEVNULL)
        duration = time.perf_counter() - began
        reference = json.loads((scratch / "clean" / "result.json").read_text())
        print(f"reference run: {duration:.1f} s; class-il "
              f"{reference['metrics']['class_il']['average_accuracy']:.4f}")
        for trial in range(args.trials):
            out, checkpoints = scratch / f"out{trial}", scratch / f"ck{trial}"
            run = command(out, ["--checkpoint-dir", str(checkpoints), "--checkpoint-every",
                                str(args.checkpoint_every), "--resume"])
            moment = draw.uniform(0.05, 1.0) * duration
            process = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(moment)
            killed = process.poll() is None
            if killed:
                process.send_signal(signal.SIGKILL)
            process.wait()
            resumed_from = newest_position(checkpoints) if killed else "-"
            subprocess.run(run, check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            result = json.loads((out / "result.json").read_text())
            same = all(result[key] == reference[key] for key in COMPARED)
            failures += not same
            print(f"trial {trial + 1:2}: kill at {moment:5.1f} s "
                  f"{'(killed)' if killed else '(had finished)'}; resumed from {resumed_from}; "
                  f"{'identical' if same else 'DIFFERENT'}")
    print(f"{args.trials - failures}/{args.trials} resumed runs identical to the reference")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
