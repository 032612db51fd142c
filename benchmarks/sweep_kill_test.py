"""A sweep whose worker processes get killed still records every run exactly once.

    python benchmarks/sweep_kill_test.py [--kills 2] [--workers 2]

The sweep: 100 short S-MNIST ER runs (buffers 10, 20, 50, 100, 200 x seeds 0-9 x
plain / GMS), on 2 local workers. It runs twice: once undisturbed into one database,
once into another while a watcher sends SIGKILL to one of the sweep's worker processes
``--kills`` times (after a few runs have been recorded each time). Then the two
databases are compared: the same set of runs, every one recorded once with status
"done", and identical accuracy matrices and metrics. Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SWEEP = """\
model: er
dataset: seq-mnist
buffer_size: [10, 20, 50, 100, 200]
seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
gms: [false, true]
"""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b"resource_tracker"  # gone: never a target


def done_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'"
                                      ).fetchone()[0]
    except sqlite3.Error:
        return 0


def sweep(sweep_file: Path, db: Path, workers: int, kills: int) -> tuple[float, list[str]]:
    command = [sys.executable, "-m", "replaymask", "sweep", str(sweep_file), "--db", str(db),
               "--workers", str(workers), "--no-progress"]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    log = []

    def killer():
        for kill in range(kills):
            target = 15 * (kill + 1)  # runs recorded before each kill
            while done_count(db) < target and process.poll() is None:
                time.sleep(0.2)
            workers_now = [pid for pid in children(process.pid)
                           if b"resource_tracker" not in _cmdline(pid)]
            if process.poll() is not None or not workers_now:
                return
            victim = max(workers_now)
            os.kill(victim, signal.SIGKILL)
            log.append(f"killed worker {victim} after {done_count(db)} runs were recorded")

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    output, _ = process.communicate()
    watcher.join()
    if process.returncode != 0:
        sys.exit(f"sweep_kill_test: the sweep failed:\n{output[-2000:]}")
    log.append(output.strip().splitlines()[-1])
    return time.perf_counter() - began, log


def rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as connection:
        return {h: (status, json.loads(matrices) if matrices else None,
                    json.loads(metrics) if metrics else None)
                for h, status, matrices, metrics in connection.execute(
                    "SELECT config_hash, status, accuracy_matrix, metrics FROM runs")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sweep_file = scratch / "sweep.yaml"
        sweep_file.write_text(SWEEP)
        clean_s, clean_log = sweep(sweep_file, scratch / "clean.db", args.workers, 0)
        print(f"undisturbed sweep: {clean_s:.0f} s; {clean_log[-1]}")
        killed_s, killed_log = sweep(sweep_file, scratch / "killed.db", args.workers,
                                     args.kills)
        for line in killed_log[:-1]:
            print(f"  {line}")
        print(f"sweep with {args.kills} worker kills: {killed_s:.0f} s; {killed_log[-1]}")
        clean, killed = rows(scratch / "clean.db"), rows(scratch / "killed.db")
    problems = []
    if set(clean) != set(killed):
        problems.append(f"different runs: {len(set(clean) ^ set(killed))} differ")
    for config_hash, row in clean.items():
        other = killed.get(config_hash)
        if row[0] != "done" or other is None or other[0] != "done":
            problems.append(f"{config_hash}: status {row[0]} vs {other and other[0]}")
        elif row[1:] != other[1:]:
            problems.append(f"{config_hash}: results differ")
    print(f"{len(clean)} runs in each database; {len(killed)} rows after the kills (one per "
          f"run: the hash is the primary key); "
          f"{'identical results' if not problems else f'{len(problems)} problems'}")
    for problem in problems[:10]:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
