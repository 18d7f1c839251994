"""``frugalrec query``: a natural-language request answered from the catalogue."""

from __future__ import annotations

import argparse
import time

import numpy as np

from frugalrec._io import dumps
from frugalrec._table import format_table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args

    p = sub.add_parser("query", help="recommend from a natural-language request")
    p.add_argument("request", help='e.g. "a detective story, no romance, after 1990"')
    add_source_args(p)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--user", help="blend with this user's profile (original user id)")
    p.add_argument("--encoder", default="minilm", help="a registered encoder (encoders list)")
    p.add_argument("--backend", default=None, help="torch | onnx | onnx-int8")
    p.add_argument(
        "--llm",
        metavar="NAME",
        help="where the rules leave words unresolved, ask this LLM (models list) for the "
        "constraints, in JSON under a grammar built from the catalogue's categories",
    )
    p.add_argument(
        "--category-words",
        metavar="JSON",
        help="the catalogue's own everyday words for its categories (phrase -> "
        "[[category, ...], ...]), on top of the packaged table",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import load_source
    from frugalrec.llm.intent import IntentParser
    from frugalrec.pipeline.query import catalogue_categories, load_category_words, score_query
    from frugalrec.text import EmbeddingCache, item_texts, load_encoder

    if args.k < 1:
        raise UsageError("-k must be at least 1")
    if not args.request.strip():
        raise UsageError("the request is empty")
    ds = load_source(args, quiet=args.json)
    cost: dict[str, float] = {}
    t = time.perf_counter()
    encoder = load_encoder(args.encoder, args.backend)
    vectors = EmbeddingCache(encoder).encode(item_texts(ds.items))
    llm = None
    if args.llm:
        from frugalrec.llm.runtime import load_llm

        llm = load_llm(args.llm)
    cost["load_and_catalogue_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    years = ds.items["year"].dropna() if "year" in ds.items else []
    span = (int(min(years)), int(max(years))) if len(years) else None
    words = load_category_words(args.category_words) if args.category_words else None
    parser = IntentParser(catalogue_categories(ds.items), span, llm, words=words)
    intent = parser.parse(args.request)
    cost["parse_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    qv = encoder.encode([intent.text])[0]
    cost["encode_query_ms"] = (time.perf_counter() - t) * 1e3
    user_scores = None
    seen = np.zeros(ds.n_items, dtype=bool)
    if args.user is not None:
        idx = ds.users_vocab.index([args.user])[0]
        if idx < 0:
            raise UsageError(f"unknown user {args.user!r} in {ds.name}")
        from frugalrec.models import EASERecommender

        t = time.perf_counter()
        model = EASERecommender(l2=300.0).fit(ds)
        user_scores = model.score(np.array([idx]))[0]
        seen[model.history_[idx].indices] = True
        cost["user_profile_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    popularity = np.asarray(ds.csr().sum(axis=0)).ravel()
    scores = score_query(intent, qv, vectors, ds.items, user_scores, popularity=popularity)
    scores[seen] = -np.inf
    top = np.argsort(-scores, kind="stable")[: args.k]
    top = top[np.isfinite(scores[top])]
    cost["rank_ms"] = (time.perf_counter() - t) * 1e3
    results = [
        {
            "item": str(ds.items_vocab.ids[i]),
            "title": str(ds.items.loc[i, "title"]),
            "year": None
            if "year" not in ds.items or ds.items["year"].isna()[i]
            else int(ds.items.loc[i, "year"]),
            "categories": str(ds.items.loc[i, "genres"]) if "genres" in ds.items else "",
            "score": float(scores[i]),
        }
        for i in top
    ]
    payload = {
        "request": args.request,
        "intent": intent.to_dict(),
        "encoder": encoder.key,
        "items": results,
        "cost_ms": cost,
    }
    if args.json:
        print(dumps(payload, indent=2))
        return 0
    print(f"request: {args.request!r}")
    print(f"understood: {intent.to_dict()}")
    print(format_table(results, ["item", "title", "year", "categories", "score"], 3))
    if not results:
        print("(no catalogue item satisfies every constraint)")
    print("cost (ms): " + ", ".join(f"{k}={v:.1f}" for k, v in cost.items()))
    return 0


def register_bench(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args

    p = sub.add_parser(
        "bench-queries", help="NDCG@10 of generated category/decade requests per encoder tier"
    )
    add_source_args(p)
    p.add_argument(
        "--tiers",
        default="static/numpy,minilm/torch,minilm/onnx-int8,mpnet/torch,mpnet/onnx-int8",
        help="comma-separated tier/backend list",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_queries)


def cmd_bench_queries(args: argparse.Namespace) -> int:
    from frugalrec.cli.source import load_source
    from frugalrec.pipeline.query_eval import evaluate_queries
    from frugalrec.text import EmbeddingCache, item_texts, load_encoder

    ds = load_source(args, quiet=args.json)
    popularity = np.asarray(ds.csr().sum(axis=0)).ravel()
    rows = []
    for spec in [s.strip() for s in args.tiers.split(",") if s.strip()]:
        tier, _, backend = spec.partition("/")
        encoder = load_encoder(tier, backend or None)
        vectors = EmbeddingCache(encoder).encode(item_texts(ds.items))
        res = evaluate_queries(ds.items, vectors, encoder.encode, popularity=popularity)
        rows.append({"encoder": encoder.key, **res})
    if args.json:
        print(dumps(rows, indent=2))
    else:
        print(format_table(rows, list(rows[0]), 4))
    return 0
