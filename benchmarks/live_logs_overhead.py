"""What live logs cost: S-MNIST runs plain, with ``--tensorboard`` and with ``--wandb``.

    python benchmarks/live_logs_overhead.py [--repeats 5] [--model er] [--no-wandb]

Each repeat runs the same `python -m replaymask run` (buffer 200, 1 thread) in fresh
processes, once per variant, in rotating order, and reads two times: the training wall
time the run records (``wall_time_s`` in result.json: the loop with its observer calls,
without interpreter start, data loading or the loggers' closing work), and the whole
process's wall time (everything: imports, the accuracy-matrix image, W&B's start and
finish). Prints the medians and the differences to the plain run; also checks that every
variant ended with the same accuracy matrices.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(model: str, out: Path, extra: list[str]) -> tuple[float, float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "replaymask", "run", "--model", model,
                    "--dataset", "seq-mnist", "--buffer-size", "200", "--threads", "1",
                    "--no-progress", "--no-download", "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"})
    process = time.perf_counter() - start
    result = json.loads((out / "result.json").read_text())
    return result["wall_time_s"], process, result["accuracy_matrix"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="er")
    parser.add_argument("--no-wandb", action="store_true", help="leave out the W&B variant")
    args = parser.parse_args()
    variants = ["plain", "tensorboard"]
    if not args.no_wandb and importlib.util.find_spec("wandb") is not None:
        variants.append("wandb")
    training = {name: [] for name in variants}
    process = {name: [] for name in variants}
    matrices = set()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for repeat in range(args.repeats):
            order = variants[repeat % len(variants):] + variants[:repeat % len(variants)]
            for name in order:
                flags = [] if name == "plain" else [f"--{name}", str(scratch / f"{name}-logs")]
                trained, whole, matrix = timed(args.model, scratch / f"{name}{repeat}", flags)
                training[name].append(trained)
                process[name].append(whole)
                matrices.add(json.dumps(matrix))
            print(f"repeat {repeat + 1}: " + ", ".join(
                f"{name} {training[name][-1]:5.2f} s training / {process[name][-1]:5.2f} s "
                f"process" for name in variants))
    base_training = statistics.median(training["plain"])
    base_process = statistics.median(process["plain"])
    for name in variants:
        trained, whole = statistics.median(training[name]), statistics.median(process[name])
        print(f"{args.model}, S-MNIST, buffer 200, {name:11}: median training "
              f"{trained:.2f} s ({trained - base_training:+.2f} s), process {whole:.2f} s "
              f"({whole - base_process:+.2f} s)")
    print("accuracy matrices: " + ("identical in every run" if len(matrices) == 1
                                   else f"{len(matrices)} different ones"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
