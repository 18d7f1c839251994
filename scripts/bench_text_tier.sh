#!/usr/bin/env bash
# Text-tier benchmarks for BENCHMARKS.md: every encoder tier/backend on the cold-item and
# random protocols, the query test set, and the encoder speed/fidelity ladder.
# Writes JSON into docs/bench/. Takes about 30 minutes on 2 cores (MPNet dominates).
set -euo pipefail
cd "$(dirname "$0")/.."
F=.venv/bin/frugalrec
out=docs/bench
mkdir -p "$out"
for tb in static/numpy minilm/torch minilm/onnx minilm/onnx-int8 mpnet/torch mpnet/onnx-int8; do
  tier=${tb%/*}; backend=${tb#*/}
  $F evaluate --dataset ml-100k --protocol cold-item --models content,textmap,hybrid \
    --encoder "$tier" --backend "$backend" --quiet --json "$out/cold-$tier-$backend.json"
done
$F evaluate --dataset ml-100k --protocol cold-item --models pop,ease,attention --encoder minilm \
  --backend torch --quiet --json "$out/cold-baselines-attention.json"
$F evaluate --dataset ml-100k --protocol random --models ease,als,content,textmap,hybrid,attention \
  --encoder minilm --backend torch --quiet --json "$out/random-text.json"
$F bench-queries --dataset ml-100k --json > "$out/queries.json"
$F encoders bench --texts ml100k --repeats 3 --out "$out/encoders.json"
