"""Recompute the provenance stored with the finished runs of a results database.

    python scripts/recompute_provenance.py --db results/study.db \
        --sweep docs/study/study.yaml [--dry-run]

Runs made by a sweep file get the provenance of the combination that made them (pass the
file); others get it inferred from their configuration. Configurations and hashes do not
change: a run whose configuration would resolve to another hash stops the script before
anything is written for it. See replaymask.experiments.provenance.
"""

from __future__ import annotations

import argparse
import sys

from replaymask.experiments.provenance import recompute_provenance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--sweep", action="append", default=[], help="a sweep file that "
                        "made runs of the database (may be given several times)")
    parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
    args = parser.parse_args()
    fix = recompute_provenance(args.db, args.sweep, dry_run=args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"{args.db}: {verb} the provenance of {fix.from_sweep} runs from their sweep file "
          f"and {fix.inferred} inferred from their configuration; {fix.unchanged} were "
          "already right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
