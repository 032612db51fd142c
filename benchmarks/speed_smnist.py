"""Wall time and peak memory of a full S-MNIST ER run, as a user runs it.

    python benchmarks/speed_smnist.py [--repeats 5] [--model er] [--buffer-size 200]

Each repeat is a fresh `python -m replaymask run` process (5 tasks, 1 epoch, batch 10),
so interpreter start, imports and data loading are all included. The first, "cold"
process also decodes the data into the array cache; the repeats after it are "warm".
Prints wall seconds and peak RSS (the child's ru_maxrss) of each, and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed_run(command: list[str], env: dict) -> tuple[float, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"speed_smnist: the run failed: {process.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024  # KiB -> MiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="er")
    parser.add_argument("--buffer-size", type=int, default=200)
    parser.add_argument("extra", nargs="*", help="more `replaymask run` flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "REPLAYMASK_CACHE": os.path.join(scratch, "cache")}
        command = [sys.executable, "-m", "replaymask", "run", "--model", args.model,
                   "--dataset", "seq-mnist", "--buffer-size", str(args.buffer_size),
                   "--n-epochs", "1", "--batch-size", "10", "--no-download", "--no-progress",
                   "--out", os.path.join(scratch, "out"), *args.extra]
        print("command:", " ".join(command[1:]))
        cold_wall, cold_rss = timed_run(command, env)
        print(f"cold (builds the array cache): {cold_wall:6.2f} s wall, "
              f"{cold_rss:6.0f} MiB peak RSS")
        walls, peaks = [], []
        for repeat in range(args.repeats):
            wall, rss = timed_run(command, env)
            walls.append(wall)
            peaks.append(rss)
            print(f"warm run {repeat + 1}: {wall:6.2f} s wall, {rss:6.0f} MiB peak RSS")
    print(f"median of {args.repeats} warm runs: {statistics.median(walls):.2f} s wall "
          f"(min {min(walls):.2f}, max {max(walls):.2f}), "
          f"{statistics.median(peaks):.0f} MiB peak RSS (max {max(peaks):.0f})")
    print(f"cpu cores: {os.cpu_count()}; python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
