"""Sweep throughput on S-MNIST: runs per minute with 1 and 2 local workers.

    python benchmarks/sweep_throughput.py [--runs 8] [--model er]

Each measurement is a fresh `replaymask sweep` process over a new database with
`--runs` seeds of one real S-MNIST configuration (buffer 200, the DER paper's args),
so process start, imports and data loading in each worker are included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--model", default="er")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    seeds = ", ".join(str(s) for s in range(args.runs))
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as scratch:
            sweep_file = os.path.join(scratch, "sweep.yaml")
            with open(sweep_file, "w") as handle:
                handle.write(f"model: {args.model}\ndataset: seq-mnist\nbuffer_size: 200\n"
                             f"seed: [{seeds}]\n")
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "replaymask", "sweep", sweep_file,
                                   "--db", os.path.join(scratch, "r.db"), "--workers",
                                   str(workers), "--no-progress"], capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"sweep_throughput: the sweep failed: {done.stderr[-500:]}")
            print(f"{workers} worker(s): {args.runs} {args.model} runs in {wall:.1f} s = "
                  f"{60 * args.runs / wall:.1f} runs/min")
    print(f"cpu cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
