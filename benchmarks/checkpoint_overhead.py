"""What checkpointing costs: S-MNIST runs with and without a checkpoint at every task end.

    python benchmarks/checkpoint_overhead.py [--repeats 5] [--model derpp] [--every N]

Each repeat runs the same `python -m replaymask run` (buffer 200, 1 thread) twice in
fresh processes, once plain and once with ``--checkpoint-dir`` (a fresh folder:
5 checkpoints, one per task, plus one every N steps if ``--every`` is given), in
alternating order, and reads the training wall time the run itself records
(``wall_time_s`` in result.json, which excludes interpreter start and data loading).
Prints the medians, the overhead, and the checkpoint file size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def timed(model: str, out: Path, extra: list[str]) -> float:
    subprocess.run([sys.executable, "-m", "replaymask", "run", "--model", model,
                    "--dataset", "seq-mnist", "--buffer-size", "200", "--threads", "1",
                    "--no-progress", "--no-download", "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads((out / "result.json").read_text())["wall_time_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="derpp")
    parser.add_argument("--every", type=int, default=0, help="also checkpoint every N steps")
    args = parser.parse_args()
    plain, saving, size = [], [], 0
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for repeat in range(args.repeats):
            checkpoints = scratch / f"ck{repeat}"
            extra = ["--checkpoint-dir", str(checkpoints), "--checkpoint-every",
                     str(args.every)]
            runs = [("plain", []), ("checkpointed", extra)]
            for name, flags in runs if repeat % 2 == 0 else runs[::-1]:
                seconds = timed(args.model, scratch / f"{name}{repeat}", flags)
                (plain if name == "plain" else saving).append(seconds)
            size = max(path.stat().st_size for path in checkpoints.glob("checkpoint-*.pt"))
            print(f"repeat {repeat + 1}: plain {plain[-1]:6.2f} s, "
                  f"checkpointed {saving[-1]:6.2f} s")
    base, with_checkpoints = statistics.median(plain), statistics.median(saving)
    print(f"{args.model}, S-MNIST, buffer 200: median training time {base:.2f} s plain, "
          f"{with_checkpoints:.2f} s with checkpoints "
          f"({with_checkpoints - base:+.2f} s, {100 * (with_checkpoints / base - 1):+.1f} %); "
          f"checkpoint file {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
