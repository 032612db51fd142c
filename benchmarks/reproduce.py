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


def sgd_gms_table():
    """Fine-tuning with no buffer at all, without and with GMS."""
    for dataset, variant, seed in itertools.product(("seq-mnist", "seq-fmnist"), GMS_VARIANTS,
                                                    SEEDS):
        yield {"model": "sgd", "dataset": dataset, "buffer_size": 0, "seed": seed, **variant}


TABLES = {"der-table": der_table, "gms-table": gms_table, "sgd-gms-table": sgd_gms_table}


def run_one(settings: dict) -> dict:
    from replaymask.config import resolve
    from replaymask.core.results import DivergenceError
    from replaymask.experiments.execution import RunOptions, execute

    config = resolve(settings)
    try:  # one core per worker process
        result = execute(config, options=RunOptions(download=False, progress=False,
                                                    threads=1))
    except DivergenceError as error:  # an outcome to report, not a crash of the table
        return {"settings": settings, "config": config.to_dict(), "diverged": str(error)}
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
    from replaymask.core.methods import declaration

    name = declaration(settings["model"]).label
    if settings.get("gms"):
        mask = settings.get("gms_mask_value", "-inf")
        name += f" + GMS (m={mask})"
    return name


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def report(name: str) -> str:
    """One Markdown table per dataset: rows = method (+ GMS), columns = buffer size,
    cells = mean ± sample std over seeds; GMS rows also show the change in the mean
    against the same method without GMS."""
    path = RESULTS / f"{name}.jsonl"
    if not path.exists():
        return f"(no results/{name}.jsonl yet)\n"
    records = [json.loads(line) for line in path.open()]
    order = list(dict.fromkeys(label(s) for s in TABLES[name]()))
    sections = []
    for dataset in dict.fromkeys(r["settings"]["dataset"] for r in records):
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in records:
            if r["settings"]["dataset"] == dataset:
                s = r["settings"]
                groups.setdefault((label(s), s["buffer_size"]), []).append(r)
        buffers = sorted({b for _, b in groups})
        rows = sorted({row for row, _ in groups}, key=order.index)
        head = " | ".join(f"buf {b} Class-IL | buf {b} Task-IL" for b in buffers)
        rule = "|---" * (1 + 2 * len(buffers)) + "|"
        lines = [f"**{dataset}**", "", f"| method | {head} |", rule]
        for row in rows:
            cells = []
            for b in buffers:
                for setting in ("class_il", "task_il"):
                    cells.append(_cell(groups, row, b, setting))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        counts = sorted({len(v) for v in groups.values()})
        seconds = [r["wall_time_s"] for v in groups.values() for r in v if "wall_time_s" in r]
        lines += ["", f"Seeds per cell: {', '.join(map(str, counts))}; "
                      f"mean wall time per run {statistics.fmean(seconds):.1f} s."]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _cell(groups, row: str, buffer_size: int, setting: str) -> str:
    records = groups.get((row, buffer_size))
    if not records:
        return ""
    finished = [r for r in records if "diverged" not in r]
    diverged = f" [{len(records) - len(finished)}/{len(records)} diverged]" \
        if len(finished) < len(records) else ""
    if not finished:
        return "diverged" + diverged
    values = [r["metrics"][setting]["average_accuracy"] for r in finished]
    text = mean_std(values)
    base = [r for r in groups.get((row.split(" + GMS")[0], buffer_size), []) if "diverged" not in r]
    if " + GMS" in row and base:
        delta = statistics.fmean(values) - statistics.fmean(
            r["metrics"][setting]["average_accuracy"] for r in base)
        text += f" ({delta:+.1f})"
    return text + diverged


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
