#!/usr/bin/env bash
# Warm-quality benchmarks for BENCHMARKS.md ("Warm quality"): the collaborative ladder,
# blends chosen on valid and `--models auto` on identical exported ml-100k splits, and the
# leave-one-out table. Writes JSON into docs/bench/warm-*.json; the re-scorable top-20 lists
# go to $RECS (not committed: they carry MovieLens user ids).
set -euo pipefail
cd "$(dirname "$0")/.."
F=${F:-.venv/bin/frugalrec}
RECS=${RECS:-/tmp/warm-recs}
out=docs/bench
mkdir -p "$out" "$RECS"
for p in random temporal; do
  $F export-split --dataset ml-100k --protocol "$p" --out "/tmp/split-$p"
done
S=/tmp/split-random
$F evaluate --train $S/train.csv --valid $S/valid.csv --test $S/test.csv --items $S/items.csv \
  --models ease,edlae,dlae,als,hybrid,blend --encoder minilm \
  --json "$out/warm-random.json" --recs-out "$RECS/random/recs.csv" --quiet
S=/tmp/split-temporal
$F evaluate --train $S/train.csv --valid $S/valid.csv --test $S/test.csv --items $S/items.csv \
  --models pop,itemknn,ease,edlae,dlae,gfcf,rp3beta,als,blend \
  --json "$out/warm-temporal.json" --recs-out "$RECS/temporal/recs.csv" --quiet
$F evaluate --dataset ml-100k --protocol leave-one-out \
  --models pop,itemknn,ease,edlae,dlae,gfcf,rp3beta,als,blend \
  --json "$out/warm-loo.json" --recs-out "$RECS/loo/recs.csv" --quiet
$F evaluate --dataset ml-100k --protocol leave-one-out --models sasrec --no-tune \
  --json "$out/warm-loo-sasrec.json" --recs-out "$RECS/loo-sasrec/recs.csv" --quiet
$F evaluate --dataset ml-100k --protocol leave-one-out --models bpr,content,textmap,hybrid \
  --encoder minilm --json "$out/warm-loo-text.json" --recs-out "$RECS/loo-text/recs.csv" --quiet
# The temporal split again, in-process (with timestamps), so recency can be tuned.
$F evaluate --dataset ml-100k --protocol temporal --models ease,edlae,dlae,itemknn,blend \
  --json "$out/warm-temporal-recency.json" --recs-out "$RECS/temporal-recency/recs.csv" --quiet
