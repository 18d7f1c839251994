"""Does LLM item enrichment help cold items? Describe the whole ml-100k catalogue with
SmolLM2 (sharded over processes, one llama.cpp thread each, cached), then compare cold-item
NDCG@10 of `content` and `textmap` with plain vs enriched item text.

    python scripts/bench_enrich_cold.py --workers 2 --work /tmp/enrich \
        --out docs/bench/llm-enrich-cold.json

The whole catalogue is described, not only the cold items: warm items' text trains the
text -> interactions map, so describing only cold items would shift their text distribution.
Descriptions are cached per shard in ``--work`` (a re-run generates nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def shard(index: int, n: int, work: Path, max_tokens: int) -> None:
    from frugalrec.data.sources import load_dataset
    from frugalrec.llm.enrichment import Enricher
    from frugalrec.llm.runtime import load_llm
    from frugalrec.text.items import item_texts

    texts = item_texts(load_dataset("ml-100k").items)
    enr = Enricher(
        load_llm("smollm2-135m"), work / f"cache{index}.json", max_tokens=max_tokens, noun="movie"
    )
    idx = [i for i in range(len(texts)) if i % n == index]
    for j in range(0, len(idx), 20):
        enr.describe([texts[i] for i in idx[j : j + 20]])
        print(f"shard {index}: {min(j + 20, len(idx))}/{len(idx)}", flush=True)
    if enr.stats["misses"]:  # a fully cached re-run keeps the cost of the run that generated
        (work / f"cost{index}.json").write_text(json.dumps(enr.cost()))


def evaluate(work: Path, n: int, max_tokens: int) -> dict:
    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.evaluate.run import run_models
    from frugalrec.llm.enrichment import Enricher
    from frugalrec.llm.runtime import load_llm
    from frugalrec.text.features import item_features

    ds = load_dataset("ml-100k")
    cache: dict[str, str] = {}
    for i in range(n):
        cache.update(json.loads((work / f"cache{i}.json").read_text()))
    (work / "merged.json").write_text(json.dumps(cache))
    llm = load_llm("smollm2-135m")
    enr = Enricher(llm, work / "merged.json", max_tokens=max_tokens, noun="movie")
    items = enr.enrich(ds.items, np.ones(len(ds.items), bool))
    if enr.stats["misses"]:
        raise RuntimeError(f"{enr.stats['misses']} items were not described by the shards")
    enriched = dataclasses.replace(ds, items=items)
    costs = [json.loads((work / f"cost{i}.json").read_text()) for i in range(n)]
    out: dict = {
        "llm": llm.name,
        "max_tokens": max_tokens,
        "items_described": len(cache),
        "generation": costs,
        "examples": [
            {"title": str(items["title"].iloc[i]), "description": str(items["description"].iloc[i])}
            for i in (0, 1, 49, 99, 180)
        ],
        "results": {},
    }
    for enc, be in (("static", "numpy"), ("minilm", "onnx-int8")):
        for name, d in (("plain", ds), ("enriched", enriched)):
            runs = run_models(
                make_split(d, "cold-item"), ["content", "textmap"],
                item_vectors=item_features(d, enc, be), n_boot=1000,
            )  # fmt: skip
            out["results"][f"{enc}/{be}/{name}"] = {
                r.model: {"ndcg@10": r.result.metrics["ndcg@10"], "ci": r.result.ci95["ndcg@10"]}
                for r in runs
            }
            print(enc, be, name, {r.model: round(r.result.metrics["ndcg@10"], 4) for r in runs})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--work", default="/tmp/frugalrec-enrich")
    p.add_argument("--out", default="docs/bench/llm-enrich-cold.json")
    p.add_argument("--shard", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.shard is not None:
        shard(args.shard, args.workers, work, args.max_tokens)
        return 0
    env = {**os.environ, "FRUGALREC_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--shard",
                str(i),
                "--workers",
                str(args.workers),
                "--work",
                str(work),
                "--max-tokens",
                str(args.max_tokens),
            ],
            env=env,
        )
        for i in range(args.workers)
    ]
    if any(proc.wait() for proc in procs):
        return 1
    result = evaluate(work, args.workers, args.max_tokens)
    result["generation_wall_s_this_run"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
