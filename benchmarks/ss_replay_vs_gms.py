"""Separated-softmax replay against ER and ER + GMS, from the study's database.

    python benchmarks/ss_replay_vs_gms.py [--db results/study.db] [--setting class_il]

Per dataset and buffer size: the mean Class-IL (or Task-IL) accuracy of each variant over
seeds, and paired differences between variants over the seeds both have (runs with the
same seed share initial weights, data order and replay draws), with a 95% t-interval.
"k/n" counts the runs that finished out of those started (the others diverged).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
from pathlib import Path

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262}  # two-sided 95% quantiles of Student's t by degrees of freedom
VARIANTS = {
    "ER": ("er", False, None),
    "ER + GMS(-inf)": ("er", True, "-inf"),
    "SS": ("ss_replay", False, None),
    "SS + GMS(0)": ("ss_replay", True, 0.0),
    "SS + GMS(5)": ("ss_replay", True, 5.0),
}
PAIRS = [("SS", "ER"), ("SS", "ER + GMS(-inf)"), ("SS + GMS(0)", "SS")]


def study_grid(config: dict) -> bool:
    """A run of docs/study/study.yaml's grid: the best arguments, the natural class order, the
    protocol's tasks, the test set, only the stream masked (the database also holds the
    other scenarios and options of issue 11)."""
    from replaymask.experiments.cells import benchmark_label, method_label

    return ("[" not in method_label(config) and benchmark_label(config) == config["dataset"]
            and not config.get("gms_on_buffer"))


def load(db: Path, setting: str) -> tuple[dict, dict]:
    """(dataset, buffer, variant) -> {seed: accuracy}, and -> runs started."""
    connection = sqlite3.connect(db)
    rows = connection.execute("SELECT status, config, metrics FROM runs").fetchall()
    connection.close()
    values, started = {}, {}
    for status, config, metrics in rows:
        config = json.loads(config)
        if not study_grid(config):
            continue
        for name, (model, gms, mask) in VARIANTS.items():
            if (config["model"], config["gms"]) == (model, gms) and \
                    (not gms or config["gms_mask_value"] == mask):
                key = (config["dataset"], config["buffer_size"], name)
                started[key] = started.get(key, 0) + 1
                if status == "done":
                    accuracy = json.loads(metrics)[setting]["average_accuracy"]
                    values.setdefault(key, {})[config["seed"]] = accuracy
    return values, started


def paired(a: dict, b: dict) -> str:
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return "n/a"
    differences = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(differences)
    half = T_975[len(seeds) - 1] * statistics.stdev(differences) / len(seeds) ** 0.5
    return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/study.db"))
    parser.add_argument("--setting", choices=["class_il", "task_il"], default="class_il")
    args = parser.parse_args()
    values, started = load(args.db, args.setting)
    cells = sorted({(d, b) for d, b, _ in values})
    names = list(VARIANTS)
    print("| dataset | buffer | " + " | ".join(names) + " | "
          + " | ".join(f"{a} - {b}" for a, b in PAIRS) + " |")
    print("|---" * (2 + len(names) + len(PAIRS)) + "|")
    for dataset, buffer in cells:
        parts = []
        for name in names:
            runs = values.get((dataset, buffer, name), {})
            n = started.get((dataset, buffer, name), 0)
            parts.append(f"{statistics.fmean(runs.values()):.1f} ({len(runs)}/{n})"
                         if runs else f"- (0/{n})")
        diffs = [paired(values.get((dataset, buffer, a), {}), values.get((dataset, buffer, b), {}))
                 for a, b in PAIRS]
        print(f"| {dataset} | {buffer} | " + " | ".join(parts + diffs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
