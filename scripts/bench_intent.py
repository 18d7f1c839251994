"""Precision@10 of the constraints per intent parser on hand-written requests (ml-100k).

    python scripts/bench_intent.py --llms smollm2-135m,qwen2.5-0.5b

For each request of ``tests/data/intent_requests.jsonl`` (written by hand, with the
constraints a person means: categories every item must have, categories none may have, a
year range), each parser turns the request into an intent, the query scorer ranks the
catalogue (MiniLM vectors + the intent's constraints + popularity prior, as ``frugalrec
query``), and precision@10 is the share of the top 10 that meet the hand-written
constraints. Whether an item meets them is computed here from the item table, not by the
parser's or the scorer's code. Parsers: the rules alone, then rules + each LLM rung (the LLM
only where the rules leave words unresolved). Reports the LLM's share of requests and the
parse latency (p50/p99 ms) per parser. Some requests are met by fewer than 10 catalogue
items (a western from the forties): the JSON gives the ceiling of precision@10 on the set
and, per parser, precision of the attainable (hits / min(10, items that satisfy)). Writes
``docs/bench/intent_parsers.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                     if ln.startswith("Model name"))  # fmt: skip
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def meets(items: Any, expected: dict[str, Any]) -> np.ndarray:
    """bool [n_items]: has every expected category, none of the excluded, year in range."""
    genres = [set(str(g).split("|")) for g in items["genres"].fillna("")]
    years = items["year"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.array([set(expected["include"]) <= g and not (set(expected["exclude"]) & g)
                   for g in genres])  # fmt: skip
    lo, hi = expected["year_min"], expected["year_max"]
    if lo is not None:
        ok &= years >= lo
    if hi is not None:
        ok &= years <= hi
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--requests",
        default=str(ROOT / "tests/data/intent_requests.jsonl"),
        help="JSONL file(s), comma-separated (default: the test set)",
    )
    ap.add_argument("--llms", default="", help="comma-separated LLM names (rules always run)")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--out", default=str(ROOT / "docs/bench/intent_parsers.json"))
    ap.add_argument(
        "--seconds", type=float, default=0, help="per-LLM time budget (0: all requests)"
    )
    ap.add_argument("--seed", type=int, default=0, help="order of the requests under a budget")
    ap.add_argument("--examples", type=int, default=5, help="worked examples in the LLM prompt")
    ap.add_argument(
        "--extend-includes",
        action="store_true",
        help="let the LLM add categories where the rules found some too",
    )
    args = ap.parse_args(argv)

    from frugalrec.data.sources import load_dataset
    from frugalrec.llm.intent import IntentParser
    from frugalrec.pipeline.query import catalogue_categories, score_query
    from frugalrec.text import EmbeddingCache, item_texts, load_encoder

    requests = [json.loads(ln) for f in args.requests.split(",")
                for ln in Path(f).read_text().splitlines() if ln]  # fmt: skip
    ds = load_dataset("ml-100k")
    items = ds.items
    enc = load_encoder(args.encoder, args.backend)
    vectors = EmbeddingCache(enc).encode(item_texts(items))
    popularity = np.asarray(ds.csr().sum(axis=0)).ravel()
    years = items["year"].dropna()
    span = (int(years.min()), int(years.max()))
    cats = catalogue_categories(items)
    # A budget evaluates a prefix of a seeded random order: a seeded sample of requests.
    order = np.random.default_rng(args.seed).permutation(len(requests))
    requests = [requests[i] for i in order]
    truth = [meets(items, r) for r in requests]
    # What the catalogue can give: a request only 4 items satisfy scores at most 0.4.
    attainable = [min(10, int(ok.sum())) for ok in truth]
    out: dict[str, Any] = {
        "command": "python scripts/bench_intent.py " + " ".join(argv or sys.argv[1:]),
        "dataset": "ml-100k",
        "encoder": enc.key,
        "requests": len(requests),
        "requests_files": [os.path.relpath(f, ROOT) for f in args.requests.split(",")],
        "prompt_examples": args.examples,
        "extend_includes": args.extend_includes,
        "metric": "precision@10: share of the top 10 meeting the hand-written constraints",
        "precision@10_ceiling": float(np.mean([a / 10 for a in attainable])),
        "requests_with_fewer_than_10_satisfying_items": int(sum(a < 10 for a in attainable)),
        "machine_before": machine(),
        "parsers": {},
    }
    names = ["rules", *[n for n in args.llms.split(",") if n]]
    for name in names:
        llm = None
        load_s = 0.0
        if name != "rules":
            from frugalrec.llm.runtime import load_llm

            t0 = time.perf_counter()
            llm = load_llm(name)
            load_s = time.perf_counter() - t0
        parser = IntentParser(
            cats, span, llm, examples=args.examples, extend_includes=args.extend_includes
        )
        rows, prec, ms, llm_ms, of_attainable = [], [], [], [], []
        t_start = time.perf_counter()
        for r, ok, att in zip(requests, truth, attainable, strict=True):
            if llm is not None and args.seconds and time.perf_counter() - t_start > args.seconds:
                break
            intent = parser.parse(r["request"])
            ms.append(parser.last_ms)
            if parser.last_used_llm:
                llm_ms.append(parser.last_ms)
            qv = enc.encode([intent.text])[0]
            s = score_query(intent, qv, vectors, items, popularity=popularity)
            top = np.argsort(-s, kind="stable")[:10]
            top = top[np.isfinite(s[top])]
            p = float(ok[top].sum() / 10)
            prec.append(p)
            of_attainable.append(float(ok[top].sum() / att) if att else 1.0)
            rows.append({"request": r["request"], "intent": intent.to_dict(),
                         "used_llm": parser.last_used_llm, "ms": round(parser.last_ms, 2),
                         "precision@10": p})  # fmt: skip
            print(f"{name}: {p:.1f} {parser.last_ms:8.0f} ms {r['request']}", file=sys.stderr)
        rules_same = [row["precision@10"] for row in out["parsers"].get("rules", {})
                      .get("rows", [])[: len(prec)]]  # fmt: skip
        out["parsers"][name] = {
            "requests_evaluated": len(prec),
            "precision@10": float(np.mean(prec)),
            "rules_precision@10_same_requests": float(np.mean(rules_same)) if rules_same else None,
            "precision@10_of_attainable": float(np.mean(of_attainable)),
            "requests_below_1": int(sum(p < 1 for p in prec)),
            "llm_share": len(llm_ms) / len(prec),
            "parse_ms_p50": float(np.percentile(ms, 50)),
            "parse_ms_p99": float(np.percentile(ms, 99)),
            "llm_call_ms_p50": float(np.percentile(llm_ms, 50)) if llm_ms else None,
            "llm_call_ms_p99": float(np.percentile(llm_ms, 99)) if llm_ms else None,
            "llm_load_s": load_s,
            "rows": rows,
        }
        out["machine_after"] = machine()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")  # after each parser
        print(f"{name}: precision@10 {np.mean(prec):.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
