"""The study's pre-declared families of comparisons, each with its own Holm correction.

`replaymask report` corrects over every comparison in its table (several hundred), the
most conservative choice. A reviewer also asks for the primary question on its own:
does hard-masking GMS (m = -inf) change Class-IL, per method, buffer and dataset, in the
protocol's scenario? This script reads the report's paired.csv and prints, per family,
every comparison with its paired mean difference, 95% interval, raw p and Holm p
within the family:

    replaymask report --db results/study.db --out docs/study
    python benchmarks/study_families.py --paired docs/study/paired.csv --db results/study.db

Families: "primary" (GMS m = -inf against no GMS, best arguments, natural class order,
5 tasks, every buffer: 50 comparisons), "orders" (the same, pooled over the four class
orders, at buffers 20 and 200: 12), "fixed arguments" (buffer 500 with the buffer-200
arguments, m = -inf and 0: 12), "tasks" (10 and 2 tasks, buffer 200), "options"
(post-step logits, ER-ACE at ER's lr), "selected" (the learning rates chosen on the
validation split). With --db, one more family compares two GMS variants
directly: each "buffer masked" variant (--gms-on-buffer) against the same method with
plain GMS (only the stream masked), paired on seed and class order. A family with no
rows is skipped.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from replaymask.experiments.cells import Variant, group_runs, variant_of  # noqa: E402
from replaymask.experiments.report import learning_rate_searches  # noqa: E402
from replaymask.experiments.stats import holm, paired_difference  # noqa: E402
from replaymask.experiments.store import ResultsStore  # noqa: E402

HARD = " + GMS (m=-inf)"


def family_of(row: dict) -> str | None:
    variant, dataset = row["variant"], row["dataset"]
    plain = "[" not in variant
    if variant.endswith(HARD) and plain and "(" not in dataset:
        return "primary"
    if variant.endswith(HARD) and plain and dataset.endswith("(orders pooled)"):
        return "orders"
    if "tasks)" in dataset and plain:
        return "tasks"
    if "buffer masked" in variant:
        return None  # against plain GMS, not against no GMS: the --db family
    if not plain and row["buffer_size"] == "500" and "(" not in dataset:
        return "fixed arguments"
    if "der_logits=post-step" in variant or variant.startswith("ER-ACE [lr=0.01]"):
        return "options"
    if variant.endswith(HARD) and variant.startswith(("ER [lr=", "DER [lr=", "DER++ [lr=")) \
            and "(" not in dataset and row["buffer_size"] in ("20", "200"):
        return "selected"
    return None


def load_cells(db: Path):
    store = ResultsStore(db, create=False)
    return group_runs([row["result"] for row in store.runs("done")],
                      [row["config"] for row in store.runs("failed")])


def _row(label: str, cell, found) -> dict:
    return {"variant": label, "dataset": cell.dataset, "buffer_size": str(cell.buffer_size),
            "pairs": str(found.pairs), "mean_difference": found.mean, "ci95_low": found.low,
            "ci95_high": found.high, "p": found.p}


def tuned_rows(cells, setting: str) -> list[dict]:
    """Each method tuned against itself tuned: GMS at the learning rate it selected on the
    validation split minus the method without GMS at the one it selected, on the test
    set, paired on seed. Rows only where both selected runs are in the database."""
    validation = [c for c in cells if c.column.validation_fraction]
    test = {(c.variant, c.dataset, c.buffer_size): c for c in cells if c.column.protocol}
    chosen = {}
    for searched, cell, by_lr, best in learning_rate_searches(validation, setting):
        if best is None:
            continue
        result = by_lr[best].results[0]
        config = {**result["config"], "validation_fraction": 0.0}
        dataset = cell.column.dataset
        chosen[(searched.plain.label, dataset, cell.buffer_size, searched.gms_part)] = (
            best, test.get((variant_of(config, result.get("provenance")), dataset,
                            cell.buffer_size)))
    rows = []
    for (method, dataset, buffer_size, gms_part), (lr, masked) in sorted(chosen.items()):
        if not gms_part:
            continue
        base_lr, base = chosen.get((method, dataset, buffer_size, ""), (None, None))
        found = masked and base and paired_difference(masked, base, setting)
        if found and found.p is not None:
            rows.append(_row(f"{method} + GMS{gms_part} at lr {lr:g} vs {method} at lr "
                             f"{base_lr:g}", base, found))
    return rows


def buffer_masking_rows(cells, setting: str) -> list[dict]:
    """paired.csv-like rows: every '..., buffer masked' GMS cell minus the same method's
    cell with plain GMS (the same mask value, only the stream masked)."""
    by_key = {(c.variant, c.dataset, c.buffer_size): c for c in cells}
    rows = []
    for cell in cells:
        if not cell.variant.on_buffer:
            continue
        variant = cell.variant
        plain = by_key.get((Variant(variant.method, variant.arguments, True, variant.mask_value),
                            cell.dataset, cell.buffer_size))
        found = plain and paired_difference(cell, plain, setting)
        if found and found.p is not None:
            rows.append(_row(f"{cell.label} vs plain GMS", cell, found))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paired", type=Path, default=Path("docs/study/paired.csv"))
    parser.add_argument("--setting", default="class_il", choices=["class_il", "task_il"])
    parser.add_argument("--db", type=Path, help="the results database, for the family that "
                        "compares two GMS variants")
    args = parser.parse_args()
    with open(args.paired, newline="") as file:
        rows = [r for r in csv.DictReader(file) if r["setting"] == args.setting and r["p"]]
    families: dict[str, list[dict]] = {}
    for row in rows:
        if (name := family_of(row)) is not None:
            families.setdefault(name, []).append(row)
    if args.db is not None:
        cells = load_cells(args.db)
        families["buffer masked vs plain GMS"] = buffer_masking_rows(cells, args.setting)
        families["tuned"] = tuned_rows(cells, args.setting)
    for name, members in families.items():
        if not members:
            continue
        adjusted = holm([float(r["p"]) for r in members])
        print(f"\n## {name}: {len(members)} comparisons, {args.setting}, Holm within the "
              "family\n")
        print("| variant | dataset | buffer | pairs | difference [95% CI] | p | p (Holm) |")
        print("|---|---|---|---|---|---|---|")
        for row, p_holm in zip(members, adjusted, strict=True):
            mark = "*" if p_holm < 0.05 else ""
            print(f"| {row['variant']} | {row['dataset']} | {row['buffer_size']} | "
                  f"{row['pairs']} | {float(row['mean_difference']):+.1f} "
                  f"[{float(row['ci95_low']):+.1f}, {float(row['ci95_high']):+.1f}] | "
                  f"{float(row['p']):.2g} | {p_holm:.2g}{mark} |")


if __name__ == "__main__":
    main()
