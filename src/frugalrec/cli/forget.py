"""``frugalrec forget --user ID``: remove a user's events, model influence and old artifacts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "forget",
        help="forget a user: delete their events, retrain without them, purge old versions",
    )
    p.add_argument("--user", required=True, help="the user's own id (pseudonymised here)")
    p.add_argument("--store", help="sqlite:///path (default: the service's) or postgresql://...")
    from frugalrec.cli.source import add_source_args

    add_source_args(p, serve_names=True, what="data the service runs on (for the retrain)")
    p.add_argument("--config", type=Path, help="PipelineConfig JSON the service runs")
    p.add_argument("--model-dir", type=Path, help="model versions directory")
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="only delete events (model changes at the next retrain)",
    )
    p.add_argument(
        "--keep-old-versions", action="store_true", help="do not delete older model artifacts"
    )
    p.add_argument(
        "--no-compact",
        action="store_true",
        help="do not rewrite the store (SQLite VACUUM, PostgreSQL VACUUM FULL)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_forget)


def cmd_forget(args: argparse.Namespace) -> int:
    from frugalrec._table import format_table
    from frugalrec.cli import UsageError
    from frugalrec.cli.source import source_spec
    from frugalrec.privacy.pseudonyms import Pseudonymiser
    from frugalrec.serve.forget import forget_user
    from frugalrec.serve.settings import ServeSettings
    from frugalrec.serve.store import StoreError, open_store

    if not args.user.strip():
        raise UsageError("--user must not be empty")
    overrides: dict[str, object] = {"model_dir": args.model_dir}
    if args.store:
        overrides["store_url"] = args.store
    try:
        settings = ServeSettings(**overrides)  # type: ignore[arg-type]
    except Exception as exc:  # pydantic names the field
        raise UsageError(str(exc)) from exc
    # Retraining needs the service's data; deleting events alone does not. Checked before
    # the store is opened: a usage error changes nothing.
    spec = source_spec(args, required=not args.no_retrain)
    try:
        store = open_store(settings.store_url)
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
    try:
        dataset = config = model_dir = None
        if not args.no_retrain:
            from frugalrec.serve.catalogue import load_serving_dataset
            from frugalrec.serve.state import DEFAULT_CONFIG, ServiceState

            # A text-aware config refits on the service's own catalogue vectors (forget_user
            # encodes them through the embedding cache), so any config the service runs works.
            try:
                config = ServiceState._load_config(args.config) if args.config else DEFAULT_CONFIG
            except ValueError as exc:  # names the file and the field; nothing deleted yet
                raise UsageError(str(exc)) from exc
            assert spec is not None
            dataset = load_serving_dataset(spec)
            model_dir = settings.resolved_model_dir()
        report = forget_user(
            store,
            Pseudonymiser.from_environment(settings.pseudonym_key_file),
            args.user,
            dataset=dataset,
            config=config,
            model_dir=model_dir,
            purge_old_versions=not args.keep_old_versions,
            compact=not args.no_compact,
        )
    finally:
        store.close()
    out = report.to_dict()
    if args.json:
        print(json.dumps(out))
    else:
        rows = [{"field": k.replace("_", " "), "value": str(v)} for k, v in out.items()]
        print(format_table(rows, ["field", "value"]))
        if report.versions_still_holding_user:
            print(
                "note: older model versions still hold this user's history "
                f"({report.versions_still_holding_user}); retrain to remove them",
                file=sys.stderr,
            )
    return 0
