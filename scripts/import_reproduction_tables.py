"""Move the runs of the old reproduction tables (results/{der-table,gms-table,
sgd-gms-table}.jsonl, written by benchmarks/reproduce.py until issue 18) into a results
database, each under the hash its settings resolve to now, so that the sweep files of
docs/reproduction/ and `replaymask report` take over from that script:

    python scripts/import_reproduction_tables.py --db results/reproduction.db

A line is imported only if its stored configuration is what its settings resolve to now
(so the run is the one the sweep file would run); anything else is listed and skipped.
A diverged run is recorded as a failed one, with its error. Runs already in the database
are left as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from replaymask.config import resolve
from replaymask.experiments.store import ResultsStore

TABLES = ("der-table", "gms-table", "sgd-gms-table")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("results/reproduction.db"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    store = ResultsStore(args.db, create=True)
    held = store.statuses()
    imported = skipped = 0
    for table in TABLES:
        for line in (args.results / f"{table}.jsonl").read_text().splitlines():
            record = json.loads(line)
            config = resolve(record["settings"], origin=f"benchmarks/reproduce.py {table}")
            if config.to_dict() != record["config"]:
                print(f"skipped ({table}): {record['settings']} resolves to another "
                      "configuration now", file=sys.stderr)
                skipped += 1
                continue
            if config.hash in held:
                continue
            if "diverged" in record:
                store.record(config.hash, config.to_dict(), error=record["diverged"])
            else:
                result = {key: value for key, value in record.items() if key != "settings"}
                store.record(config.hash, config.to_dict(), result=result)
            held[config.hash] = "imported"
            imported += 1
    store.close()
    print(f"imported {imported} runs into {args.db}; {skipped} skipped")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
