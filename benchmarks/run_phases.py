"""Where the wall time of a fresh `replaymask run` process goes, phase by phase.

    python benchmarks/run_phases.py [--repeats 5] [--model er] [--buffer-size 200]

Each repeat starts a fresh Python that does what ``python -m replaymask run`` does, with
a wall-clock stamp between phases: interpreter start, ``import torch``, importing the
package's run path, loading S-MNIST (from the array cache), training (steps and, timed
apart, evaluation), writing the result, and exiting. The exit is timed twice, in
alternate repeats: as the command exits (the garbage collector frozen first, see
``replaymask.cli.entry_point``) and as a plain interpreter exit. Prints the median of
each phase in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time, json
stamps = {"start": time.time()}
import torch
stamps["import torch"] = time.time()
import gc
from replaymask import cli
from replaymask.experiments.execution import default_threads
from replaymask.config import resolve
from replaymask.core import training
from replaymask.core.results import write_result
from replaymask.data.benchmarks import load_benchmark
stamps["import replaymask"] = time.time()
config = resolve({"model": sys.argv[1], "dataset": "seq-mnist", "buffer_size": int(sys.argv[2])},
                 origin="command line")
benchmark = load_benchmark("seq-mnist", download=False)
stamps["load data"] = time.time()
evaluation = [0.0]
evaluate = training.evaluate
def timed_evaluate(*args):
    begin = time.time()
    result = evaluate(*args)
    evaluation[0] += time.time() - begin
    return result
training.evaluate = timed_evaluate
torch.set_num_threads(default_threads(config) or torch.get_num_threads())
result = training.train(config, benchmark, progress=False)
stamps["train"] = time.time()
write_result(sys.argv[3], result)
stamps["write result"] = time.time()
print(json.dumps({"stamps": stamps, "evaluation_s": evaluation[0]}), flush=True)
if sys.argv[4] == "frozen":
    gc.freeze()
"""
PHASES = ("interpreter start", "import torch", "import replaymask", "load data",
          "train: steps", "train: evaluation", "write result")


def one_run(args, exit_mode: str, scratch: str) -> dict[str, float]:
    launched = time.time()
    child = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.buffer_size),
                            os.path.join(scratch, "out"), exit_mode],
                           capture_output=True, text=True, check=True)
    ended = time.time()
    record = json.loads(child.stdout.strip().splitlines()[-1])
    stamps, evaluation = record["stamps"], record["evaluation_s"]
    train = stamps["train"] - stamps["load data"]
    return {
        "interpreter start": stamps["start"] - launched,
        "import torch": stamps["import torch"] - stamps["start"],
        "import replaymask": stamps["import replaymask"] - stamps["import torch"],
        "load data": stamps["load data"] - stamps["import replaymask"],
        "train: steps": train - evaluation,
        "train: evaluation": evaluation,
        "write result": stamps["write result"] - stamps["train"],
        f"exit ({exit_mode})": ended - stamps["write result"],
        f"total ({exit_mode})": ended - launched,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="er")
    parser.add_argument("--buffer-size", type=int, default=200)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        one_run(args, "frozen", scratch)  # untimed: file caches, the array cache
        for _ in range(args.repeats):
            for exit_mode in ("frozen", "plain"):
                runs.append(one_run(args, exit_mode, scratch))
    names = [*PHASES, "exit (frozen)", "exit (plain)", "total (frozen)", "total (plain)"]
    print(f"{args.model}, buffer {args.buffer_size}, S-MNIST; median of {args.repeats} fresh "
          "processes per exit mode (ms)")
    for name in names:
        values = [run[name] for run in runs if name in run]
        print(f"  {name:20s} {statistics.median(values) * 1e3:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
