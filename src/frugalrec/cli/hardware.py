"""``frugalrec hardware``: the hardware profiles the planner knows, with their sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "hardware",
        help="list hardware profiles (figures and sources); check a profile YAML of your own",
    )
    p.add_argument("name", nargs="?", help="show one profile with every figure's source")
    p.add_argument(
        "--file",
        type=Path,
        help="also load this YAML (checked: an error names file, profile and field)",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="measure this machine's ceilings if no cached measurement exists (~5 s)",
    )
    p.add_argument("--json", action="store_true", help="print the profiles as JSON")
    p.set_defaults(func=cmd_hardware)


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _row(p: Any) -> dict[str, object]:
    return {
        "profile": p.name,
        "kind": p.kind,
        "cores": p.cores,
        "memory GB": _g(p.memory_gb),
        "GB/s": _g(p.mem_bandwidth_gbs),
        "fp32 TFLOPS": _g(p.peak("fp32") / 1e12),
        "fp16 TFLOPS": _g(p.peak("fp16") / 1e12),
        "$/h": _g(p.usd_per_hour),
        "launch us": _g(p.launch_us),
        "source": "measured" if p.measured else "listed",
    }


def cmd_hardware(args: argparse.Namespace) -> int:
    from frugalrec._table import format_table
    from frugalrec.cli import UsageError
    from frugalrec.cost.hardware import HardwareProfileError, load_profiles

    try:
        profiles = load_profiles(args.file, measure_local=args.measure)
    except HardwareProfileError as exc:
        raise UsageError(str(exc)) from exc
    if args.name is not None:
        if args.name not in profiles:
            known = ", ".join(sorted(profiles))
            raise UsageError(f"unknown hardware profile {args.name!r}; known: {known}")
        profile = profiles[args.name]
        if args.json:
            print(json.dumps(profile.to_dict(), indent=2))
            return 0
        print(format_table([_row(profile)], list(_row(profile))))
        print()
        rows = [{"figure": k, "source": v} for k, v in sorted(profile.sources.items())]
        print(format_table(rows, ["figure", "source"]))
        return 0
    if args.json:
        print(json.dumps({n: p.to_dict() for n, p in profiles.items()}, indent=2))
        return 0
    table = [_row(p) for p in profiles.values()]
    print(format_table(table, list(table[0]) if table else []))
    if "local" not in profiles:
        print("\nlocal: not measured yet (frugalrec hardware --measure, or any bench run)")
    return 0
