"""``frugalrec recommend`` and ``frugalrec chat``: the LLM tier from the terminal."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import dumps
from frugalrec._table import format_table


def _common(p: argparse.ArgumentParser) -> None:
    from frugalrec.cli.source import add_source_args

    add_source_args(p)
    p.add_argument(
        "--user",
        help="your user id (its history is the starting point; an unknown id is a cold start)",
    )
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--model", default="ease", help="cheap stage (a CF model name)")
    p.add_argument(
        "--llm",
        default="smollm2-135m",
        metavar="NAME",
        help="the LLM (models list: smollm2-135m, gemma3-270m, qwen2.5-0.5b, qwen2.5-1.5b)",
    )
    p.add_argument("--json", action="store_true")


def add_adapter_args(p: argparse.ArgumentParser) -> None:
    """``--llm-adapter DIR`` and ``--llm-adapter-runtime`` (recommend and serve)."""
    p.add_argument(
        "--llm-adapter",
        type=Path,
        metavar="DIR",
        help="a LoRA adapter folder for --llm (python -m frugalrec.bench.lora train)",
    )
    p.add_argument(
        "--llm-adapter-runtime",
        choices=["llama-cpp", "transformers"],
        default="llama-cpp",
        help="llama-cpp: the adapter exported to GGUF on the quantised base (default: loads in"
        " 0.2 s, fits the LLM worker's restart budget, half the memory); transformers: peft on"
        " the dequantised float32 base (1.2-1.7x faster per request on the reference CPU)",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("recommend", help="top-k for a user, optionally LLM re-ranked and explained")
    _common(p)
    p.add_argument("--rerank", choices=["none", "llm"], default="none")
    p.add_argument("--candidates", type=int, default=10, help="K candidates the LLM re-ranks")
    p.add_argument("--weight", type=float, default=0.3, help="LLM share of the blended score")
    add_adapter_args(p)
    p.add_argument(
        "--explain",
        nargs="?",
        const="template",
        choices=["template", "llm"],
        help="explain each item (template: zero cost; llm: rephrased by the LLM, guarded)",
    )
    p.add_argument("--budget-ms", type=float, default=None, help="latency budget (cascade)")
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="fire the LLM only when the cheap top-1/top-K relative margin is below this",
    )
    p.set_defaults(func=cmd_recommend)
    c = sub.add_parser("chat", help="conversational recommendations (reads turns from stdin)")
    _common(c)
    c.add_argument("--no-llm", action="store_true", help="rules only, never load the LLM")
    c.set_defaults(func=cmd_chat)


def _status(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _setup(args: argparse.Namespace, need_llm: bool, llm_explain: bool = False) -> Any:
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import load_source
    from frugalrec.llm.cascade import CascadeConfig
    from frugalrec.llm.request import LLMTier, fit_cheap_model, history_in_order
    from frugalrec.llm.reranker import RerankerConfig

    if args.k < 1:
        raise UsageError("-k must be at least 1")
    cost: dict[str, float] = {}
    t = time.perf_counter()
    ds = load_source(args, quiet=args.json)
    history = None
    args.cold_start = False
    if args.user is not None:
        u = int(ds.users_vocab.index([args.user])[0])
        if u < 0:
            # Not an error and not a silent popularity list: an explicit cold start (an
            # empty history), said so in the output.
            _status(f"user {args.user!r} has no history in {ds.name}: cold start", args.json)
            args.cold_start = True
            history = np.zeros(0, dtype=np.int64)
        else:
            history = history_in_order(ds, u)
    model = fit_cheap_model(ds, args.model)
    cost["load_and_fit_ms"] = (time.perf_counter() - t) * 1e3
    llm: Any = None
    if need_llm:
        from frugalrec.llm.lora import check_adapter, load_reranker_llm

        t = time.perf_counter()
        adapter = getattr(args, "llm_adapter", None)
        rt = getattr(args, "llm_adapter_runtime", "llama-cpp")
        if adapter:
            try:
                check_adapter(adapter, args.llm)
            except ValueError as exc:
                raise UsageError(f"--llm-adapter: {exc}") from None
            _status(f"loading {args.llm} + LoRA {adapter} ({rt})...", args.json)
        else:
            _status(f"loading {args.llm} (llama.cpp, in a worker process)...", args.json)
        llm = load_reranker_llm(args.llm, adapter, runtime=rt)
        cost["llm_load_ms"] = (time.perf_counter() - t) * 1e3
    rerank = getattr(args, "rerank", "none") == "llm"
    rcfg = None
    if rerank:
        if not 1 <= args.candidates <= 26:
            raise UsageError("--candidates must be between 1 and 26")
        rcfg = RerankerConfig(candidates=args.candidates, weight=args.weight)
    budget = getattr(args, "budget_ms", None)
    margin = getattr(args, "margin", None)
    from frugalrec.llm.registry import prior_ms_per_token

    ccfg = CascadeConfig(
        budget_ms=math.inf if budget is None else budget,
        margin=math.inf if margin is None else margin,
        prior_ms_per_token=prior_ms_per_token(args.llm),
    )
    tier = LLMTier(ds, model, llm, rcfg, ccfg, llm_explanations=llm_explain)
    return ds, tier, history, llm, cost


def cmd_recommend(args: argparse.Namespace) -> int:
    from frugalrec.cli import UsageError

    if args.user is None:
        raise UsageError("recommend needs --user")
    if args.budget_ms is not None and args.budget_ms <= 0:
        raise UsageError("--budget-ms must be > 0")
    llm_explain = args.explain == "llm"
    need_llm = args.rerank == "llm" or llm_explain
    if llm_explain and args.rerank != "llm":
        args.candidates = args.k  # unused, but keeps the setup checks simple
    _, tier, history, llm, setup = _setup(args, need_llm, llm_explain)
    _status("answering...", args.json)
    boost = None
    if args.cold_start:
        # The model's average answer over its known users (same scale as theirs), not the
        # zeros or raw counts an empty history would give: boost = mean - fold_in(empty).
        import scipy.sparse as sp

        from frugalrec.api import cold_start_scores

        empty = sp.csr_matrix((1, tier.ds.n_items), dtype=np.float32)
        boost = cold_start_scores(tier.model) - tier.model.fold_in(empty)[0]
    ans = tier.answer(history, args.k, explain=args.explain is not None, boost=boost)
    payload = {
        "dataset": tier.ds.name,
        "user_cold_start": args.cold_start,
        "model": args.model,
        "llm": llm.info() if llm is not None else None,
        "rerank": args.rerank,
        **ans,
        "setup_ms": setup,
    }
    if args.json:
        print(dumps(payload, indent=2))
        return 0
    cols = ["rank", "item", "title", "year", "score"]
    if args.explain:
        cols += ["explainer", "explanation"]
    if args.cold_start:
        print(f"(cold start: {args.user!r} has no history; scores are the model's average "
              "over its known users)")  # fmt: skip
    print(format_table(ans["items"], cols, 3))
    why = ans["route"].get("fallback_reason")
    print(
        f"route: {ans['route']['route']}{f' ({why})' if why else ''}"
        f" (llm fired: {ans['route']['llm_fired']})"
    )
    print("cost (ms): " + ", ".join(f"{k}={v:.1f}" for k, v in ans["cost_ms"].items()))
    print("setup (ms): " + ", ".join(f"{k}={v:.0f}" for k, v in setup.items()))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from frugalrec.llm.chat import ChatSession

    _, tier, history, llm, _ = _setup(args, need_llm=not args.no_llm)
    session = ChatSession(tier, history, llm=llm, k=args.k)
    interactive = sys.stdin.isatty()
    if interactive and not args.json:
        examples = _examples(tier.ds)
        print(f"Tell me what you'd like (e.g. {examples}, 'more like the second one');")
        print("'reset' to start over, Ctrl-D to end.")
    while True:
        if interactive and not args.json:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        out = session.turn(text)
        if args.json:
            print(dumps(out), flush=True)
            continue
        print(f"[{out['parser']}] understood: {out['understood'] or 'nothing new'}")
        print(format_table(out["items"], ["rank", "title", "genres", "explanation"], 3)
              .replace("genres", "categories", 1))  # fmt: skip
        print("cost (ms): " + ", ".join(f"{k}={v:.1f}" for k, v in out["cost_ms"].items()))
    return 0


def _examples(ds: Any) -> str:
    """Two example requests in the catalogue's own words."""
    from frugalrec.pipeline.query import catalogue_categories

    cats = list(catalogue_categories(ds.items))
    if len(cats) >= 2:
        return f"'{cats[0].lower()}', 'no {cats[1].lower()}'"
    return "'something like <a title you liked>', 'older ones'"
