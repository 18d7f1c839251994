"""``frugalrec serve``: the HTTP service (API, page, metrics) on an embedded or external store."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

# The asyncio event loop, not uvloop: admission control (serve/admission.py) sees the
# requests that arrived together as one turn of the loop and refuses the excess at once.
# uvloop hands them to the app one at a time, run to completion, so the queue stays in the
# kernel's socket buffers where no in-flight limit can see it (measured: with uvloop a burst
# of 24 requests on 24 connections is served one by one and none is refused).
UVICORN_LOOP = "asyncio"
SWITCH_INTERVAL_S = 0.001


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from frugalrec.cli.source import add_source_args

    p = sub.add_parser("serve", help="run the HTTP service and web page")
    add_source_args(p, serve_names=True)
    p.add_argument("--config", type=Path, help="PipelineConfig JSON (default: EASE, cheap tier)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--store", help="sqlite:///path (default: in the cache dir) or postgresql://...")
    p.add_argument("--model-dir", type=Path, help="where model versions are saved")
    p.add_argument("--read-requires-key", action="store_true", help="reads need an API key too")
    p.add_argument(
        "--rate-limit",
        type=float,
        default=1000.0,
        help="requests/s per API key (default 1000, burst --rate-burst); protects the service "
        "from one runaway or leaked key, e.g. a backend's retry loop",
    )
    p.add_argument("--rate-burst", type=int, default=2000, help="burst size per API key")
    p.add_argument(
        "--anonymous-rate-limit",
        type=float,
        default=1000.0,
        help="requests/s per client address without a key (burst: twice this); protects "
        "open reads from one scraper. A key gets at least this by default",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=6,
        help="reads in flight in this process before the next is refused with 503 + "
        "Retry-After (load shedding): protects the latency of the requests it serves "
        "when many clients together offer more than its capacity",
    )
    p.add_argument(
        "--max-in-flight-writes",
        type=int,
        default=8,
        help="writes (events, forget, retrain) in flight before 503 + Retry-After",
    )
    p.add_argument(
        "--max-loop-lag-ms",
        type=float,
        default=3.0,
        help="refuse new requests with 503 + Retry-After while the event loop runs this "
        "late (requests waiting in the socket queue that no in-flight count sees); 0: off",
    )
    p.add_argument("--max-body-bytes", type=int, default=256 * 1024)
    p.add_argument(
        "--cors-origin", action="append", default=[], help="allow this origin (default: none)"
    )
    p.add_argument(
        "--rerank",
        choices=["none", "llm"],
        default="none",
        help="llm: the LLM tier (a one-pass LLM re-ranker the cascade fires when the cheap "
        "stage is unsure and the request's budget_ms allows; loads the LLM at start)",
    )
    p.add_argument(
        "--llm",
        default="smollm2-135m",
        metavar="NAME",
        help="the re-ranker's LLM (models list: smollm2-135m, gemma3-270m, qwen2.5-0.5b, "
        "qwen2.5-1.5b; see frugalrec models list)",
    )
    from frugalrec.cli.recommend import add_adapter_args

    add_adapter_args(p)
    p.add_argument(
        "--intent-llm",
        metavar="NAME",
        help="where the query rules leave a request open, ask this LLM (as frugalrec query "
        "--llm); default: rules only",
    )
    p.add_argument(
        "--category-words",
        type=Path,
        metavar="JSON",
        help="the catalogue's own everyday words for its categories (phrase -> "
        "[[category, ...], ...]), on top of the packaged table",
    )
    p.add_argument("--llm-budget-ms", type=float, default=2000.0, help="budget of a request "
                   "that names none (LLM tier)")  # fmt: skip
    p.add_argument("--llm-margin", type=float, default=0.355, help="fire the LLM only below "
                   "this relative top-1/top-K cheap margin (inf: always)")  # fmt: skip
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import source_spec
    from frugalrec.serve.settings import API_KEY_FILE_ENV, API_KEYS_ENV, ServeSettings

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    spec = source_spec(args)
    overrides: dict[str, Any] = {
        "dataset": spec,
        "pipeline_config": args.config,
        "model_dir": args.model_dir,
        "read_requires_key": args.read_requires_key,
        "rate_limit_per_s": args.rate_limit,
        "rate_limit_burst": args.rate_burst,
        "anonymous_rate_limit_per_s": args.anonymous_rate_limit,
        "anonymous_rate_limit_burst": max(1, int(2 * args.anonymous_rate_limit)),
        "max_in_flight": args.max_in_flight,
        "max_in_flight_writes": args.max_in_flight_writes,
        "max_loop_lag_ms": args.max_loop_lag_ms,
        "max_body_bytes": args.max_body_bytes,
        "cors_origins": tuple(args.cors_origin),
        "rerank": args.rerank,
        "llm_model": args.llm,
        "llm_adapter": args.llm_adapter,
        "llm_adapter_runtime": args.llm_adapter_runtime,
        "llm_budget_ms": args.llm_budget_ms,
        "llm_margin": args.llm_margin,
        "intent_llm": args.intent_llm,
        "category_words": args.category_words,
    }
    if args.store:
        overrides["store_url"] = args.store
    try:
        settings = ServeSettings.from_environment(**overrides)
    except Exception as exc:  # pydantic ValidationError names the field
        raise UsageError(str(exc)) from exc
    if not settings.api_key_hashes:
        print(
            "warning: no API key configured: event, forget and retrain endpoints will answer "
            f"403.\n  Set one, e.g.:  export {API_KEYS_ENV}=$(python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')\n"
            f"  (comma-separate several keys, or put one per line in a file named by "
            f"{API_KEY_FILE_ENV})",
            file=sys.stderr,
        )
    import uvicorn

    from frugalrec.serve.app import create_app, http_protocol

    llm_note = f" and the LLM {settings.llm_model}" if settings.rerank == "llm" else ""
    shown = args.dataset or args.interactions
    print(f"loading {shown}, the model{llm_note} ...", file=sys.stderr)
    app = create_app(settings)
    service = app.state.service
    print(
        f"frugalrec serving {service.config.name} (model version {service.serving.version}, "
        f"store {settings.store_url.split(':', 1)[0]}) on http://{args.host}:{args.port}/  "
        f"(API docs: /docs)",
        file=sys.stderr,
    )
    # Everything loaded so far (dataset, model, tables) lives as long as the process: move it
    # out of the collector's generations so a full collection never walks it mid-request.
    gc.collect()
    gc.freeze()
    # The serving loop holds the interpreter lock almost all the time under load; a thread
    # that needs it back (the group-commit writer after each store call, the LLM worker's
    # reader) would wait the default 5 ms each time. 1 ms bounds those waits.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # No access log: request paths carry the caller's user ids.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        loop=UVICORN_LOOP,
        # Refusals decided when the headers are parsed: a few bytes, no ASGI task.
        http=http_protocol(app),
    )
    return 0
