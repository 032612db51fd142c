"""Re-run a sample of the runs stored in a results database and compare, bit for bit.

    python benchmarks/rerun_stored.py --db results/study.db [--per-pair 3] [--failed 2]
        [--workers 2] [--out results/rerun_check.txt] [--baseline-src /tmp/before/src]
        [--recorded-here]

The sample is deterministic: for every (model, dataset) pair, ``--per-pair`` finished runs
spread over its buffer sizes and GMS variants (in hash order), plus ``--failed`` failed
runs. Each is resolved from its stored configuration (which must give the stored hash)
and run the way a sweep worker runs it (one thread). A finished run must give the same
accuracy matrices, random-init and before-task accuracies and metrics, to the last bit;
a failed one the same error message. Prints one line per run and a verdict; exits 1 on
any difference in a run recorded on this CPU (and, with ``--baseline-src``, on any
difference between the two versions of the code).

Float results of the CPU kernels can differ between CPU models (and instruction sets), so
a run recorded on another CPU may not match here. Each run's result records the CPU that
ran it (``versions.cpu``, and ``versions.cpu_capability`` since 2026-12-03; runs stored
before 2026-12-03, and failed runs, record neither). Each line says where the run was
recorded: only a run recorded on this CPU must match (a difference there fails the
check); the others are shown, and counted apart, as information.

``--baseline-src`` compares two versions of the code on this machine instead: the sample
is run first with the package at that path (a worktree of an earlier commit:
``git worktree add /tmp/before REV``), then with this one, and each run must give the
same numbers in both (the database is still shown).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

COMPARED = ("accuracy_matrix", "random_init_accuracy", "before_task_accuracy", "metrics")


def sample(db: Path, per_pair: int, failed: int, machine: dict | None = None
           ) -> list[tuple[str, str, dict, dict | None, str | None]]:
    """Given ``machine``, only finished runs recorded on that CPU are sampled."""
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
        if machine is None or recorded_on(entry[3], machine) == "this CPU":
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


def rerun(entry) -> tuple[str, dict, float]:
    """Run one stored configuration as a sweep worker does: (hash, outcome, seconds); the
    outcome holds the compared results, or the error without its code location."""
    from replaymask.config import resolve
    from replaymask.experiments.sweep import execute_run

    key, _, stored_config, _, _ = entry
    config = resolve(stored_config)
    if config.hash != key:
        return key, {"hash": config.hash}, 0.0
    start = time.perf_counter()
    result, error = execute_run(config, None)
    outcome = {"hash": key, "error": error.split(" (")[0] if error else None,
               "result": {name: result[name] for name in COMPARED} if result else None}
    return key, outcome, time.perf_counter() - start


def this_machine() -> dict:
    import torch

    from replaymask.core.training import cpu_model

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def recorded_on(stored_result: dict | None, machine: dict) -> str:
    """'this CPU', 'another CPU (...)' or 'CPU not recorded', from the stored versions. A
    failed run has no stored result, and its error is compared wherever it was recorded."""
    if stored_result is None:  # a failed run stores no result, nor its CPU
        return "CPU not recorded"
    versions = stored_result.get("versions", {})
    if "cpu" not in versions:
        return "CPU not recorded"
    same = versions["cpu"] == machine["cpu"] and \
        versions.get("cpu_capability", machine["cpu_capability"]) == machine["cpu_capability"]
    if same:
        return "this CPU"
    capability = versions.get("cpu_capability")
    return f"another CPU ({versions['cpu']}{', ' + capability if capability else ''})"


def verdict(entry, outcome: dict, baseline: dict | None, where: str = "this CPU") -> str:
    """Against the database, and (given) against the baseline code's outcome. A difference
    from the database is DIFFERENT only for a run recorded on this CPU."""
    key, status, _, stored_result, stored_error = entry
    if outcome["hash"] != key:
        return f"DIFFERENT: the stored configuration resolves to {outcome['hash']}"
    if status == "failed":
        difference = None if outcome["error"] == stored_error.split(" (")[0] \
            else outcome["error"] or "finished now"
    elif outcome["result"] is None:
        difference = f"failed now ({outcome['error']})"
    else:
        differing = [name for name in COMPARED if outcome["result"][name] != stored_result[name]]
        difference = ", ".join(differing) or None
    failure = " failure" if status == "failed" else ""
    if difference is not None and where != "this CPU":
        place = "an unrecorded CPU" if where == "CPU not recorded" else where
        difference = f"{difference} (recorded on {place})"
        if baseline is None:
            return f"differs: {difference}"
    if baseline is None:
        return f"identical{failure}" if difference is None else f"DIFFERENT: {difference}"
    database = f"identical{failure} to the database" if difference is None \
        else f"differs from the database: {difference}"
    return f"{'identical' if baseline == outcome else 'DIFFERENT'} to the baseline code; {database}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/study.db"))
    parser.add_argument("--per-pair", type=int, default=3)
    parser.add_argument("--failed", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the lines to this file")
    parser.add_argument("--baseline-src", type=Path,
                        help="compare with the package at this path (e.g. /tmp/before/src)")
    parser.add_argument("--recorded-here", action="store_true",
                        help="sample only finished runs recorded on this CPU (the ones that "
                             "must re-run bit for bit here)")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # the baseline's run
    args = parser.parse_args()
    entries = sample(args.db, args.per_pair, args.failed,
                     this_machine() if args.recorded_here else None)
    baseline = None
    if args.baseline_src is not None:
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "baseline.json"
            subprocess.run([sys.executable, __file__, "--db", str(args.db), "--per-pair",
                            str(args.per_pair), "--failed", str(args.failed), "--workers",
                            str(args.workers), "--dump", str(dump),
                            *(["--recorded-here"] if args.recorded_here else [])], check=True,
                           env={**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())})
            baseline = json.loads(dump.read_text())
    lines, outcomes, machine = [], {}, this_machine()
    places = {entry[0]: recorded_on(entry[3], machine) for entry in entries}
    with ProcessPoolExecutor(args.workers) as pool:
        for entry, (key, outcome, seconds) in zip(entries, pool.map(rerun, entries),
                                                  strict=True):
            outcomes[key] = outcome
            if args.dump:
                continue
            config = entry[2]
            gms = f"gms m={config['gms_mask_value']}" if config["gms"] else "no gms"
            line = (f"{key}  {config['model']:9} {config['dataset']:10} "
                    f"buf {config['buffer_size']:>3}  seed {config['seed']}  {gms:14} "
                    f"{entry[1]:6}  [{places[key]}]  "
                    f"{verdict(entry, outcome, baseline and baseline[key], places[key])}  "
                    f"({seconds:.1f} s)")
            lines.append(line)
            print(line, flush=True)
    if args.dump:
        args.dump.write_text(json.dumps(outcomes))
        return 0
    if baseline is None:
        different = sum("DIFFERENT" in line for line in lines)
        elsewhere = [line for line, entry in zip(lines, entries, strict=True)
                     if places[entry[0]] != "this CPU"]
        summary = (f"{len(lines)} stored runs re-run on {machine['cpu']} "
                   f"({machine['cpu_capability']}): {len(lines) - len(elsewhere)} recorded on "
                   f"this CPU, {different} of them different; {len(elsewhere)} recorded "
                   f"elsewhere or on an unrecorded CPU, "
                   f"{sum('differs:' in line for line in elsewhere)} of them different "
                   f"(not compared: float results differ between CPUs)")
    else:
        different = sum("DIFFERENT to the baseline" in line for line in lines)
        stored = sum("differs from the database" not in line for line in lines)
        summary = (f"{len(lines)} stored runs re-run with the baseline code and this code: "
                   f"{len(lines) - different} identical, {different} different; "
                   f"{stored} identical to the database on this machine")
    print(summary)
    if args.out:
        args.out.write_text("\n".join([*lines, summary]) + "\n")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
