"""Run the measured tables of BENCHMARKS.md: many seeds, in parallel worker processes.

    python benchmarks/reproduce.py der-table --workers 2
    python benchmarks/reproduce.py gms-table --workers 2
    python benchmarks/reproduce.py --report      # print the Markdown tables

Each finished run is appended to results/<table>.jsonl (config + metrics +
accuracy matrices); runs already there are skipped, so an interrupted table
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent.parent / "results"
SEEDS = range(5)


def der_table():
    """The DER paper's Table 2 protocol on S-MNIST, with its best arguments."""
    for seed in SEEDS:
        yield {"model": "sgd", "dataset": "seq-mnist", "buffer_size": 0, "seed": seed}
        yield {"model": "joint", "dataset": "seq-mnist", "buffer_size": 0, "seed": seed}
        for model, buffer_size in itertools.product(("er", "der", "derpp"), (200, 500)):
            yield {"model": model, "dataset": "seq-mnist", "buffer_size": buffer_size,
                   "seed": seed}


GMS_VARIANTS = [{}, {"gms": True}, {"gms": True, "gms_mask_value": "detach"},
                {"gms": True, "gms_mask_value": 0.0}]


def gms_table():
    """ER and DER++ without and with GMS (m = -inf, detach, 0), small buffers."""
    for dataset, buffer_size, model, variant, seed in itertools.product(
            ("seq-mnist", "seq-fmnist"), (20, 50, 200), ("er", "derpp"), GMS_VARIANTS, SEEDS):
        yield {"model": model, "dataset": dataset, "buffer_size": buffer_size, "seed": seed,
               **variant}


TABLES = {"der-table": der_table, "gms-table": gms_table}


def run_one(settings: dict) -> dict:
    import torch

    from replaymask.benchmarks import load_benchmark
    from replaymask.config import RunConfig, resolve
    from replaymask.training import train

    torch.set_num_threads(1)  # one core per worker process
    config, source = resolve(RunConfig(**settings))
    benchmark = load_benchmark(config.dataset, download=False)
    result = train(config, benchmark, hyperparameter_source=source, progress=False)
    return {"settings": settings, **result.to_dict()}


def key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def run_table(name: str, workers: int) -> None:
    path = RESULTS / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {key(json.loads(line)["settings"]) for line in path.open()} if path.exists() else set()
    pending = [s for s in TABLES[name]() if key(s) not in done]
    print(f"{name}: {len(done)} runs done, {len(pending)} to run", file=sys.stderr)
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool, path.open("a") as out:
        futures = [pool.submit(run_one, s) for s in pending]
        for future in tqdm(as_completed(futures), total=len(futures), desc=name):
            out.write(json.dumps(future.result()) + "\n")
            out.flush()
    print(f"{name}: {len(pending)} runs in {time.perf_counter() - start:.0f} s "
          f"with {workers} workers", file=sys.stderr)


def label(settings: dict) -> str:
    name = {"sgd": "SGD", "joint": "Joint", "er": "ER", "der": "DER", "derpp": "DER++",
            "er_ace": "ER-ACE"}[settings["model"]]
    if settings.get("gms"):
        mask = settings.get("gms_mask_value", "-inf")
        name += f" + GMS (m={mask})"
    return name


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def report(name: str) -> str:
    path = RESULTS / f"{name}.jsonl"
    if not path.exists():
        return f"(no results/{name}.jsonl yet)\n"
    groups: dict[tuple, list[dict]] = {}
    for line in path.open():
        record = json.loads(line)
        s = record["settings"]
        cell = (s["dataset"], s["buffer_size"])
        groups.setdefault((label(s), cell), []).append(record)
    rows = sorted({r for r, _ in groups}, key=lambda r: list(dict.fromkeys(
        label(s) for s in TABLES[name]())).index(r))
    cells = sorted({c for _, c in groups})
    header = "| method | " + " | ".join(f"{d} buf {b} Class-IL | Task-IL" for d, b in cells)
    lines = [header + " |", "|---" * (1 + 2 * len(cells)) + "|"]
    for row in rows:
        parts = []
        for cell in cells:
            records = groups.get((row, cell))
            if not records:
                parts += ["", ""]
                continue
            for setting in ("class_il", "task_il"):
                values = [r["metrics"][setting]["average_accuracy"] for r in records]
                parts.append(mean_std(values) + (f" (n={len(values)})" if setting == "task_il"
                                                 else ""))
        lines.append(f"| {row} | " + " | ".join(parts) + " |")
    seconds = [r["wall_time_s"] for rs in groups.values() for r in rs]
    lines.append("")
    lines.append(f"{sum(len(v) for v in groups.values())} runs; mean wall time per run "
                 f"{statistics.fmean(seconds):.1f} s (1 thread per run, 2 runs at a time).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", choices=[[], *TABLES], default=[])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    for name in args.tables:
        run_table(name, args.workers)
    if args.report or not args.tables:
        for name in TABLES:
            print(f"### {name}\n\n{report(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
