"""Re-run a sample of the runs stored in a results database and compare, bit for bit.

    python benchmarks/rerun_stored.py --db results/study.db [--per-pair 3] [--failed 2]
        [--workers 2] [--out results/rerun_check.txt]

The sample is deterministic: for every (model, dataset) pair, ``--per-pair`` finished runs
spread over its buffer sizes and GMS variants (in hash order), plus ``--failed`` failed
runs. Each is resolved from its stored configuration (which must give the stored hash)
and run the way a sweep worker runs it (one thread). A finished run must give the same
accuracy matrices, random-init and before-task accuracies and metrics, to the last bit;
a failed one the same error message. Prints one line per run and a verdict; exits 1 on
any difference.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

COMPARED = ("accuracy_matrix", "random_init_accuracy", "before_task_accuracy", "metrics")


def sample(db: Path, per_pair: int, failed: int) -> list[tuple[str, str, dict, dict | None,
                                                                 str | None]]:
    connection = sqlite3.connect(db)
    rows = connection.execute("SELECT config_hash, status, config, result, error FROM runs "
                              "ORDER BY config_hash").fetchall()
    connection.close()
    pairs: dict[tuple, list] = {}
    failures = []
    for key, status, config, result, error in rows:
        config = json.loads(config)
        entry = (key, status, config, json.loads(result) if result else None, error)
        if status == "failed":
            failures.append(entry)
            continue
        pairs.setdefault((config["model"], config["dataset"]), []).append(entry)
    picked = []
    for entries in pairs.values():
        # spread: one run per distinct (buffer, gms variant) first, in hash order
        seen, spread = set(), []
        for entry in entries:
            variant = (entry[2]["buffer_size"], entry[2]["gms"], entry[2]["gms_mask_value"])
            if variant not in seen:
                seen.add(variant)
                spread.append(entry)
        step = max(1, len(spread) // per_pair)
        picked += spread[::step][:per_pair]
    return picked + failures[:failed]


def rerun(entry) -> tuple[str, str, float]:
    from replaymask.config import resolve
    from replaymask.experiments.sweep import execute_run

    key, status, stored_config, stored_result, stored_error = entry
    config = resolve(stored_config)
    if config.hash != key:
        return key, f"DIFFERENT: the stored configuration resolves to {config.hash}", 0.0
    start = time.perf_counter()
    result, error = execute_run(config, None)
    seconds = time.perf_counter() - start
    if status == "failed":
        same = result is None and error.split(" (")[0] == stored_error.split(" (")[0]
        return key, ("identical failure" if same else f"DIFFERENT: {error}"), seconds
    if result is None:
        return key, f"DIFFERENT: failed now ({error})", seconds
    differing = [name for name in COMPARED if result[name] != stored_result[name]]
    return key, ("identical" if not differing else f"DIFFERENT: {', '.join(differing)}"), \
        seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/study.db"))
    parser.add_argument("--per-pair", type=int, default=3)
    parser.add_argument("--failed", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the lines to this file")
    args = parser.parse_args()
    entries = sample(args.db, args.per_pair, args.failed)
    lines = []
    with ProcessPoolExecutor(args.workers) as pool:
        for entry, (key, verdict, seconds) in zip(entries, pool.map(rerun, entries),
                                                  strict=True):
            config = entry[2]
            gms = f"gms m={config['gms_mask_value']}" if config["gms"] else "no gms"
            line = (f"{key}  {config['model']:9} {config['dataset']:10} "
                    f"buf {config['buffer_size']:>3}  seed {config['seed']}  {gms:14} "
                    f"{entry[1]:6}  {verdict}  ({seconds:.1f} s)")
            lines.append(line)
            print(line, flush=True)
    different = sum("DIFFERENT" in line for line in lines)
    verdict = (f"{len(lines)} stored runs re-run: {len(lines) - different} identical, "
               f"{different} different")
    print(verdict)
    if args.out:
        args.out.write_text("\n".join([*lines, verdict]) + "\n")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
