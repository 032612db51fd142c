#!/usr/bin/env bash
# The mechanism, tested (docs/study/plan.md section 7): instrumented runs, with and without
# GMS (m = -inf), seeds 0-4, the paper's arguments, buffers 20 and 200, both datasets, of
# ER, DER, DER++, ER-ACE and the two ablations:
#   A1 = DER plus a cross-task replay cross-entropy: derpp at DER's arguments, beta 0.5;
#   A2 = ER with its replay cross-entropy over the earlier tasks' classes only.
# Each writes docs/study/mechanism/<variant>-<dataset>-buf<N>/analysis.{json,md,png};
# one that exists already is skipped, so the script resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPLAYMASK=${REPLAYMASK:-.venv/bin/replaymask}
declare -A VARIANTS=(
  [er]="--model er"
  [er-earlier-replay]="--model er --setting replay_classes=earlier"
  [der]="--model der"
  [der-cross-task-replay]="--model derpp --lr 0.03 --setting alpha=0.2 --setting beta=0.5 --setting minibatch_size=10"
  [derpp]="--model derpp"
  [er_ace]="--model er_ace"
)
for dataset in seq-mnist seq-fmnist; do
  for buffer in 20 200; do
    for name in er er-earlier-replay der der-cross-task-replay derpp er_ace; do
      out="docs/study/mechanism/${name}-${dataset}-buf${buffer}"
      [ -f "$out/analysis.json" ] && continue
      # shellcheck disable=SC2086
      $REPLAYMASK analyze ${VARIANTS[$name]} --dataset "$dataset" --buffer-size "$buffer" \
        --seed 0,1,2,3,4 --mask-values none,-inf --out "$out"
    done
  done
done
