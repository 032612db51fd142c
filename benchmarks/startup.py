"""Start-up of the commands that train nothing: wall time of a fresh process, the import
time Python reports (``-X importtime``), and whether torch was imported.

    python benchmarks/startup.py [--db results/study.db] [--repeats 7] [--src OTHER/src]

``--src`` measures another checkout's package (its ``src`` folder goes first on the
path), e.g. the commit before a change, with the same Python; runs alternate between
the commands, one process at a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "replaymask --help": ["--help"],
    "replaymask runs": ["runs", "--db", "{db}"],
    "replaymask report --no-plots": ["report", "--db", "{db}", "--no-plots", "--out", "{out}"],
}


def measure(argv: list[str], src: str | None) -> tuple[float, float, bool]:
    """(wall seconds, cumulative import microseconds of all top-level imports, torch?)"""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    code = "import sys; from replaymask.cli import main; sys.exit(main(sys.argv[1:]))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1]}")
    total, torch = 0, False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name[1:].startswith(" "):  # a top-level import (nested ones are indented)
            total += int(cumulative)
        torch = torch or name.strip() == "torch"
    return wall, total, torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="results/study.db")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--src", help="another checkout's src folder to measure instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        samples = {name: [] for name in COMMANDS}
        for _ in range(args.repeats):
            for name, argv in COMMANDS.items():
                argv = [a.format(db=args.db, out=str(Path(out) / "report")) for a in argv]
                samples[name].append(measure(argv, args.src))
    print(f"{'command':30} {'wall s (median)':>16} {'imports ms (median)':>20} {'torch':>6}")
    for name, runs in samples.items():
        print(f"{name:30} {statistics.median(r[0] for r in runs):16.3f} "
              f"{statistics.median(r[1] for r in runs) / 1000:20.1f} "
              f"{'yes' if any(r[2] for r in runs) else 'no':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
