"""Planner: pick the best-quality configuration per hardware profile under budgets.

For every hardware profile it answers three questions a person deploying a recommender asks:
what should I run, how many machines and how much money does that take, and what would the
next step up in quality buy and cost. When nothing fits it names the constraint that binds,
with the numbers that show by how much.

Costs come from :func:`frugalrec.cost.records.cost_on`: the measurement when a record was
measured on that hardware, its projection otherwise. Hardware profiles may be
``HardwareProfile`` objects or plain dicts; only ``memory_gb`` and ``usd_per_hour`` are read.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from frugalrec.cost.records import MEASURED, CostRecord, metric_label, records_on

HOURS_PER_MONTH = 730  # 365 * 24 / 12, the usual cloud-billing month
MB_PER_GB = 1024

# Fixed order used to break ties between constraints, so the output is deterministic.
CONSTRAINTS = ("p99_ms", "max_memory_mb", "hardware_memory", "budget_usd_month", "min_ndcg")
NO_DATA = "no_data"


@dataclass
class _Violation:
    constraint: str
    limit: float
    value: float

    @property
    def excess(self) -> float:
        """Relative distance past the limit (0.5 = 50 % over); comparable across units."""
        if self.constraint == "min_ndcg":
            return (self.limit - self.value) / max(abs(self.limit), 1e-12)
        return (self.value - self.limit) / max(abs(self.limit), 1e-12)


@dataclass
class _Option:
    record: CostRecord
    cost: dict[str, Any]
    source: str
    quality: float
    qps_per_machine: float
    machines: int
    usd_per_month: float | None
    memory_mb: float
    violations: list[_Violation] = field(default_factory=list)
    training: dict[str, Any] | None = None
    # Why ``quality`` is not the record's own figure (an LLM gain not shown above zero).
    quality_note: str | None = None

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def p99(self) -> float:
        return float(self.cost["p99_ms"])


@dataclass
class _Limits:
    p99_ms: float | None
    max_memory_mb: float | None
    qps: float | None
    budget_usd_month: float | None
    min_ndcg: float | None
    metric: str
    retrain_days: float | None = None


def plan(
    records: Sequence[CostRecord],
    hardware: Sequence[str],
    profiles: Mapping[str, Any],
    p99_ms: float | None = None,
    max_memory_mb: float | None = None,
    qps: float | None = None,
    budget_usd_month: float | None = None,
    min_ndcg: float | None = None,
    metric: str = "ndcg@10",
    retrain_days: float | None = None,
) -> dict[str, Any]:
    """Best configuration per hardware that meets every given constraint.

    A record with a ``training`` block (a fine-tuned configuration) also pays for its
    training: one-off ``wall_seconds / 3600 * usd_per_hour``, plus that again every
    ``retrain_days`` days, added to $/month. Seconds are as measured on the record's machine
    and, on other profiles, scaled by the ratio of fp32 peak FLOP/s (labelled projected).

    ``qps`` is the total load to serve: machines = max(1, ceil(qps / per-machine QPS)), and
    cost per month = machines * ``usd_per_hour`` * 730. ``max_memory_mb`` bounds each
    machine's peak RSS; a profile's ``memory_gb`` always does. ``min_ndcg`` is a floor on
    ``metric`` (NDCG@10 unless another metric is chosen).

    Returns ``{"hardware": {name: entry}, "constraints": {...}}`` where ``entry`` is either
    ``{"config", "quality", "cost", "cost_source", "machines", "usd_per_month", "memory",
    "reason", "next_better"}`` or ``{"infeasible": {"constraint", "message"}}``; a hardware
    with no measured or projected data is infeasible with constraint ``"no_data"``.
    """
    for label, value in (
        ("p99_ms", p99_ms),
        ("max_memory_mb", max_memory_mb),
        ("qps", qps),
        ("budget_usd_month", budget_usd_month),
        ("retrain_days", retrain_days),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{label} must be a positive number, got {value}")
    if min_ndcg is not None and not math.isfinite(min_ndcg):
        raise ValueError(f"min_ndcg must be a finite number, got {min_ndcg}")
    limits = _Limits(p99_ms, max_memory_mb, qps, budget_usd_month, min_ndcg, metric, retrain_days)
    out: dict[str, Any] = {}
    for hw in hardware:
        out[hw] = _plan_one(records, hw, profiles.get(hw), limits, profiles)
    return {
        "hardware": out,
        "constraints": {
            "p99_ms": p99_ms,
            "max_memory_mb": max_memory_mb,
            "qps": qps,
            "budget_usd_month": budget_usd_month,
            "min_ndcg": min_ndcg,
            "metric": metric,
            "retrain_days": retrain_days,
        },
    }


def format_plan_table(plan_dict: Mapping[str, Any]) -> str:
    """A plain-text table of a :func:`plan` result, followed by each hardware's reason."""
    constraints = plan_dict.get("constraints") or {}
    metric = str(constraints.get("metric") or "ndcg@10")
    label = metric_label(metric)
    header = [
        "hardware",
        "config",
        label,
        "p99 ms",
        "QPS/machine",
        "machines",
        "$/month",
        "RSS MB",
        "source",
    ]
    rows: list[list[str]] = []
    notes: list[tuple[str, str]] = []
    for hw, entry in (plan_dict.get("hardware") or {}).items():
        if "infeasible" in entry:
            inf = entry["infeasible"]
            what = (
                "(no data)"
                if inf.get("constraint") == NO_DATA
                else f"(infeasible: {inf.get('constraint')})"
            )
            rows.append([hw, what, *[""] * 7])
            notes.append((hw, str(inf.get("message", ""))))
            continue
        cost = entry.get("cost") or {}
        quality = (entry.get("quality") or {}).get(metric)
        rows.append(
            [
                hw,
                str((entry.get("config") or {}).get("name", "?")),
                "-" if quality is None else f"{quality:.3f}",
                _fmt_num(cost.get("p99_ms")),
                _fmt_num(entry.get("qps_per_machine", cost.get("qps")), 0)
                + ("" if cost.get("service_qps") else "*"),
                str(entry.get("machines", "")),
                "-" if entry.get("usd_per_month") is None else _usd(entry["usd_per_month"]),
                _fmt_num(cost.get("peak_rss_mb"), 0),
                str(entry.get("cost_source", "")),
            ]
        )
        notes.append((hw, str(entry.get("reason", ""))))

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = []
    summary = _constraints_summary(constraints, label)
    if summary:
        lines += [f"Constraints: {summary}", ""]
    lines += [line(header), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    if any(r[4].endswith("*") for r in rows):
        lines.append(
            "* scorer throughput only (no serving overhead calibrated on this machine: "
            "`python -m frugalrec.bench.service calibrate`, then bench again)"
        )
    if notes:
        lines.append("")
        for hw, note in notes:
            lines.append(
                textwrap.fill(note, width=100, initial_indent=f"{hw}: ", subsequent_indent="  ")
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# one hardware


def _plan_one(
    records: Sequence[CostRecord],
    hw: str,
    profile: Any,
    limits: _Limits,
    profiles: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    usd_per_hour = _profile_value(profile, "usd_per_hour")
    memory_gb = _profile_value(profile, "memory_gb")
    hardware_mb = memory_gb * MB_PER_GB if memory_gb is not None else None
    label = metric_label(limits.metric)

    costed = records_on(records, hw)
    if not costed:
        return _infeasible(
            NO_DATA,
            f"no data for {hw}: no configuration was measured there or has a projection for it",
        )
    options: list[_Option] = []
    for rec, cost, source in costed:
        q = rec.quality.get(limits.metric)
        if q is None or isinstance(q, bool) or not isinstance(q, int | float):
            continue
        planned, note = planning_quality(rec, limits.metric)
        scale = _training_scale(rec.hardware, hw, profiles or {})
        opt = _option(rec, cost, source, planned, usd_per_hour, hardware_mb, limits, scale)
        opt.quality_note = note
        options.append(opt)
    if not options:
        return _infeasible(
            NO_DATA, f"no data for {hw}: no configuration with cost data there has {label}"
        )
    if limits.budget_usd_month is not None and usd_per_hour is None:
        return _infeasible(
            "budget_usd_month",
            f"no price (usd_per_hour) is known for {hw}, so the "
            f"{_usd(limits.budget_usd_month)}/month budget cannot be checked",
        )

    feasible = [o for o in options if not o.violations]
    if not feasible:
        constraint, message = _binding(options, hw, hardware_mb, limits)
        return _infeasible(constraint, message)

    best = min(feasible, key=_rank_key)
    unshown = sorted(
        (o for o in feasible
         if o.quality_note and float(o.record.quality[limits.metric]) > best.quality),
        key=lambda o: o.name,
    )  # fmt: skip
    better = [o for o in options if o.quality > best.quality]
    nxt = min(better, key=_next_key) if better else None
    return {
        "config": dict(best.record.config),
        "quality": dict(best.record.quality),
        "cost": dict(best.cost),
        "cost_source": best.source,
        "measured_on": best.record.hardware,
        "machines": best.machines,
        "qps_per_machine": best.qps_per_machine,
        "qps_basis": "service" if best.cost.get("service_qps") else "scorer",
        "usd_per_month": best.usd_per_month,
        "training": best.training,
        "quality_planned": best.quality,
        "quality_note": best.quality_note,
        "memory": {
            "per_machine_mb": best.memory_mb,
            "hardware_mb": hardware_mb,
            "limit_mb": limits.max_memory_mb,
        },
        "reason": _reason(best, nxt, hw, hardware_mb, limits) + _unshown_text(unshown),
        "not_shown": [
            {
                "config": o.name,
                "quality": float(o.record.quality[limits.metric]),
                "planned_at": o.quality,
                "note": o.quality_note,
                "usd_per_month": o.usd_per_month,
                "training": o.training,
                "p99_ms": o.p99,
            }
            for o in unshown
        ],
        "next_better": _next_dict(best, nxt, hw) if nxt else None,
    }


def planning_quality(rec: CostRecord, metric: str) -> tuple[float, str | None]:
    """The quality ``plan`` ranks ``rec`` by, and a note when it is not the record's own.

    An LLM re-ranker's quality is the cheap stage's plus a change measured on a sample of
    users (``quality["llm_gain"]``: delta, its bootstrap 95% interval, users, cheap). A
    change whose interval reaches 0 or below is not shown: the configuration is planned at
    the cheap stage's quality, so it can only win by being cheaper, which it is not.
    """
    q = float(rec.quality[metric])
    gain = rec.quality.get("llm_gain")
    if not isinstance(gain, Mapping) or gain.get("metric") != metric:
        return q, None
    try:
        lo, hi = (float(x) for x in gain["ci95"])
        delta, cheap, users = float(gain["delta"]), float(gain["cheap"]), int(gain["users"])
    except (KeyError, TypeError, ValueError):
        return q, None
    if math.isfinite(lo) and lo > 0:
        return q, None
    label = metric_label(metric)
    return cheap, (
        f"its {label} change over the cheap stage, {delta:+.4f} [{lo:+.4f}, {hi:+.4f}] on "
        f"{users} users, is not shown above 0, so it is planned at the cheap stage's "
        f"{cheap:.3f}"
    )


def _peak_fp32(profile: Any) -> float | None:
    """fp32 peak FLOP/s of a profile (a HardwareProfile or a mapping), None if unknown."""
    raw = (
        profile.get("peak_flops")
        if isinstance(profile, Mapping)
        else getattr(profile, "peak_flops", None)
    )
    peak = raw.get("fp32") if isinstance(raw, Mapping) else None
    return float(peak) if peak and float(peak) > 0 else None


def _training_scale(measured_on: str, hw: str, profiles: Mapping[str, Any]) -> float | None:
    """Training seconds on ``hw`` per second measured on ``measured_on``: the ratio of their
    fp32 peak FLOP/s (training here runs in float32; compute-bound, so on an accelerator
    where kernel launches bind a small model this is a lower bound). 1.0 on the machine it
    was measured on; None where a peak is unknown."""
    if hw == measured_on:
        return 1.0
    a, b = _peak_fp32(profiles.get(measured_on)), _peak_fp32(profiles.get(hw))
    return a / b if a and b else None


def _training_cost(
    rec: CostRecord,
    usd_per_hour: float | None,
    retrain_days: float | None,
    scale: float | None = 1.0,
) -> dict[str, Any] | None:
    """One-off and monthly $ of a fine-tuned configuration's training (None if it has none).

    ``scale``: training seconds here per second measured on ``rec.hardware``
    (:func:`_training_scale`); None keeps the measured seconds, flagged as not projected."""
    if not rec.training:
        return None
    measured = float(rec.training["wall_seconds"])
    seconds = measured * (scale if scale is not None else 1.0)
    once = seconds / 3600.0 * usd_per_hour if usd_per_hour is not None else None
    per_month = 0.0
    if once is not None and retrain_days:
        per_month = once * (HOURS_PER_MONTH / 24.0) / retrain_days
    return {
        "seconds": seconds,
        "measured_seconds": measured,
        "seconds_basis": "measured"
        if scale == 1.0
        else "projected: fp32 peak FLOP/s ratio, compute-bound (a lower bound where launches bind)"
        if scale is not None
        else "measured elsewhere, not projected (no fp32 peak for one of the machines)",
        "measured_on": rec.hardware,
        "one_off_usd": once,
        "retrain_days": retrain_days,
        "usd_per_month": per_month,
    }


def _option(
    rec: CostRecord,
    cost: dict[str, Any],
    source: str,
    quality: float,
    usd_per_hour: float | None,
    hardware_mb: float | None,
    limits: _Limits,
    training_scale: float | None = 1.0,
) -> _Option:
    per_machine = qps_per_machine(cost)
    if limits.qps is None:
        machines = 1
    else:
        # The epsilon keeps 500 / 250.0000001-style float noise from buying a third machine.
        machines = max(1, math.ceil(limits.qps / per_machine - 1e-9))
    usd = machines * usd_per_hour * HOURS_PER_MONTH if usd_per_hour is not None else None
    training = _training_cost(rec, usd_per_hour, limits.retrain_days, training_scale)
    if usd is not None and training is not None:
        usd += training["usd_per_month"]
    memory = float(cost.get("peak_rss_mb") or 0.0)
    opt = _Option(rec, cost, source, quality, per_machine, machines, usd, memory)
    opt.training = training
    checks: list[tuple[str, float | None, float]] = [
        ("p99_ms", limits.p99_ms, opt.p99),
        ("max_memory_mb", limits.max_memory_mb, memory),
        ("hardware_memory", hardware_mb, memory),
    ]
    if usd is not None:
        checks.append(("budget_usd_month", limits.budget_usd_month, usd))
    for name, limit, value in checks:
        if limit is not None and value > limit:
            opt.violations.append(_Violation(name, limit, value))
    if limits.min_ndcg is not None and quality < limits.min_ndcg:
        opt.violations.append(_Violation("min_ndcg", limits.min_ndcg, quality))
    return opt


def qps_per_machine(cost: Mapping[str, Any]) -> float:
    """Requests/s one machine serves: the end-to-end capacity of the HTTP service
    (``service_qps``: scoring plus the calibrated per-request serving overhead) when the
    bench has it, else the scorer's own batch throughput (``qps``), which leaves out parsing,
    JSON, the store and uvicorn and overstates capacity several times."""
    svc = cost.get("service_qps")
    return float(svc) if svc else float(cost["qps"])


def _rank_key(o: _Option) -> tuple[float, float, float, str]:
    # Best quality; on a tie the cheaper, then the faster, then by name for determinism.
    usd = o.usd_per_month if o.usd_per_month is not None else 0.0
    return (-o.quality, usd, o.p99, o.name)


def _next_key(o: _Option) -> tuple[float, int, float, float, str]:
    # Smallest quality gain first: the "next step", not the biggest leap.
    usd = o.usd_per_month if o.usd_per_month is not None else 0.0
    return (o.quality, len(o.violations), usd, o.p99, o.name)


def _binding(
    options: list[_Option], hw: str, hardware_mb: float | None, limits: _Limits
) -> tuple[str, str]:
    """The constraint whose removal admits the most configs; else the closest config's worst."""
    violated = {v.constraint for o in options for v in o.violations}
    admits = {
        c: [o for o in options if {v.constraint for v in o.violations} == {c}] for c in violated
    }
    best_count = max(len(v) for v in admits.values())
    if best_count > 0:
        constraint = min(
            (c for c in violated if len(admits[c]) == best_count), key=CONSTRAINTS.index
        )
        message = _infeasible_message(
            constraint, options, admits[constraint], hw, hardware_mb, limits
        )
        winner = max(admits[constraint], key=lambda o: (o.quality, -_usd_or_zero(o)))
        v = next(v for v in winner.violations if v.constraint == constraint)
        n = best_count
        quality = f"{metric_label(limits.metric)} {winner.quality:.3f}"
        needs = _value_text(constraint, v.value)
        if n == 1:
            message += (
                f" Dropping this limit admits only `{winner.name}` ({quality}), "
                f"which needs {needs}."
            )
        else:
            message += (
                f" Dropping this limit admits {n} configurations; the best of them, "
                f"`{winner.name}` ({quality}), needs {needs}."
            )
        return constraint, message
    # Every config breaks two or more constraints: blame the closest config's worst breach.
    closest = min(options, key=lambda o: (sum(v.excess for v in o.violations), o.name))
    worst = max(closest.violations, key=lambda v: (v.excess, -CONSTRAINTS.index(v.constraint)))
    text = f"`{closest.name}`, {_breaches_text(closest.violations, hw)}"
    if all(any(v.constraint == worst.constraint for v in o.violations) for o in options):
        message = _infeasible_message(worst.constraint, options, options, hw, hardware_mb, limits)
        return worst.constraint, f"{message} No single limit binds: the closest, {text}."
    return worst.constraint, (
        f"no configuration meets every limit on {hw}, and no single limit binds: "
        f"the closest, {text}."
    )


def _infeasible_message(
    constraint: str,
    options: list[_Option],
    pool: list[_Option],
    hw: str,
    hardware_mb: float | None,
    limits: _Limits,
) -> str:
    """``no configuration meets <constraint> on <hw>: the best at it has <value>``.

    When some configuration does meet this limit but breaks another, the extreme is taken over
    ``pool`` (those that break only this limit), so the sentence stays true.
    """
    label = metric_label(limits.metric)
    if all(any(v.constraint == constraint for v in o.violations) for o in options):
        pool, tail, those = options, "", ""
    else:
        tail, those = " together with the other limits", " of those that meet them"
    if constraint == "p99_ms":
        o = min(pool, key=lambda o: (o.p99, o.name))
        return (
            f"no configuration meets p99 ≤ {_ms(limits.p99_ms)} on {hw}{tail}: the fastest"
            f"{those}, `{o.name}`, has p99 {_ms(o.p99)}."
        )
    if constraint in ("max_memory_mb", "hardware_memory"):
        o = min(pool, key=lambda o: (o.memory_mb, o.name))
        where = (
            f"in {_mb(limits.max_memory_mb)} per machine on {hw}"
            if constraint == "max_memory_mb"
            else f"in the {_gb(hardware_mb)} memory of {hw}"
        )
        return (
            f"no configuration fits {where}{tail}: the smallest{those}, `{o.name}`, "
            f"needs {_mb(o.memory_mb)}."
        )
    if constraint == "budget_usd_month":
        o = min(pool, key=lambda o: (_usd_or_zero(o), o.name))
        load = f"serves {_qps(limits.qps)} QPS" if limits.qps is not None else "runs"
        return (
            f"no configuration {load} within {_usd(limits.budget_usd_month)}/month on {hw}"
            f"{tail}: the cheapest{those}, `{o.name}`, needs {_machines(o.machines)} for "
            f"{_usd(o.usd_per_month)}/month."
        )
    if constraint == "min_ndcg":
        o = max(pool, key=lambda o: (o.quality, o.name))
        return (
            f"no configuration reaches {label} ≥ {limits.min_ndcg:.3f} on {hw}{tail}: the best"
            f"{those}, `{o.name}`, has {o.quality:.3f}."
        )
    return f"no configuration meets the {constraint} limit on {hw}{tail}."


def _reason(
    best: _Option, nxt: _Option | None, hw: str, hardware_mb: float | None, limits: _Limits
) -> str:
    label = metric_label(limits.metric)
    src = "measured" if best.source == MEASURED else f"projected from {best.record.hardware}"
    share = best.cost.get("launch_bound_share") if best.source != MEASURED else None
    if share is not None and share >= 0.5:
        src += (
            f"; {share:.0%} of it is {hw}'s host launching kernels one by one, which a "
            "CUDA-graph or batched runtime would cut"
        )
    text = (
        f"On {hw}, `{best.name}` gives {label} {best.quality:.3f} at p99 {_ms(best.p99)} "
        f"({src}), using {_mb(best.memory_mb)}"
    )
    if hardware_mb is not None:
        text += f" of {_gb(hardware_mb)}"
    text += " per machine; "
    price = f"{_usd(best.usd_per_month)}/month" if best.usd_per_month is not None else None
    if limits.qps is not None:
        verb = "serves" if best.machines == 1 else "serve"
        text += f"{_machines(best.machines)} {verb} {_qps(limits.qps)} QPS"
    else:
        text += f"one machine serves up to {_qps(best.qps_per_machine)} QPS"
    text += f" for {price}." if price else f" (no price known for {hw})."
    gain = best.record.quality.get("llm_gain")
    if isinstance(gain, Mapping) and best.quality_note is None and "ci95" in gain:
        lo, hi = gain["ci95"]
        kind = "fine-tuned" if gain.get("fine_tuned") else "zero-shot"
        text += (
            f" Its {kind} LLM re-ranker buys {float(gain['delta']):+.4f} {label} "
            f"[{float(lo):+.4f}, {float(hi):+.4f}] over the cheap stage ({gain['users']} users)."
        )
        if best.training:
            t = best.training
            where = "measured" if t["seconds_basis"] == "measured" else "projected"
            text += (
                f" Training: {t['seconds']:,.0f} s {where} on {hw} (measured"
                f" {t['measured_seconds']:,.0f} s on {t['measured_on']}),"
                f" {_usd(t['usd_per_month'])}/month with retraining."
            )
    if nxt is None:
        return text + f" No configuration with data on {hw} has higher {label}."
    text += f" The next step up, `{nxt.name}`, would add +{nxt.quality - best.quality:.3f} {label}"
    if nxt.usd_per_month is not None and best.usd_per_month is not None:
        delta = nxt.usd_per_month - best.usd_per_month
        if delta > 0:
            text += f" for {_usd(delta)}/month more"
        elif delta < 0:
            text += f" for {_usd(-delta)}/month less"
        else:
            text += " at the same monthly cost"
    breaks = _breaches_text(nxt.violations, hw)
    return text + (f" but {breaks}." if breaks else ".")


def _unshown_text(unshown: Sequence[_Option]) -> str:
    """Configurations whose raw quality beats the pick but whose LLM gain is not shown."""
    out = []
    for o in unshown:
        price = ""
        if o.usd_per_month is not None:
            price = f" (it would cost {_usd(o.usd_per_month)}/month"
            if o.training:
                price += f", {_usd(o.training['usd_per_month'])} of it retraining"
            price += ")"
        out.append(f" `{o.name}`: {o.quality_note}{price}.")
    return "".join(out)


def _next_dict(best: _Option, nxt: _Option, hw: str) -> dict[str, Any]:
    extra = (
        nxt.usd_per_month - best.usd_per_month
        if nxt.usd_per_month is not None and best.usd_per_month is not None
        else None
    )
    return {
        "config": dict(nxt.record.config),
        "quality": dict(nxt.record.quality),
        "cost": dict(nxt.cost),
        "cost_source": nxt.source,
        "machines": nxt.machines,
        "usd_per_month": nxt.usd_per_month,
        "quality_gain": nxt.quality - best.quality,
        "extra_usd_per_month": extra,
        "breaks": [
            {
                "constraint": v.constraint,
                "limit": v.limit,
                "value": v.value,
                "message": _breaches_text([v], hw),
            }
            for v in nxt.violations
        ],
    }


def _breaches_text(violations: Sequence[_Violation], hw: str) -> str:
    """``"breaks the 50 ms p99 budget (p99 420 ms) and the $2,000/month budget (...)"``."""
    broken: list[str] = []
    other: list[str] = []
    for v in violations:
        if v.constraint == "p99_ms":
            broken.append(f"the {_ms(v.limit)} p99 budget (p99 {_ms(v.value)})")
        elif v.constraint == "max_memory_mb":
            broken.append(f"the {_mb(v.limit)} memory limit (needs {_mb(v.value)})")
        elif v.constraint == "budget_usd_month":
            broken.append(f"the {_usd(v.limit)}/month budget (needs {_usd(v.value)}/month)")
        elif v.constraint == "hardware_memory":
            other.append(
                f"does not fit in the {_gb(v.limit)} memory of {hw} (needs {_mb(v.value)})"
            )
        elif v.constraint == "min_ndcg":
            other.append(f"falls below the quality floor {v.limit:.3f} ({v.value:.3f})")
        else:
            broken.append(v.constraint)
    phrases = [f"breaks {_and(broken)}"] if broken else []
    return _and(phrases + other)


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _usd_or_zero(o: _Option) -> float:
    return o.usd_per_month if o.usd_per_month is not None else 0.0


def _value_text(constraint: str, value: float) -> str:
    if constraint == "p99_ms":
        return _ms(value)
    if constraint in ("max_memory_mb", "hardware_memory"):
        return _mb(value)
    if constraint == "budget_usd_month":
        return f"{_usd(value)}/month"
    return f"{value:.3f}"


def _infeasible(constraint: str, message: str) -> dict[str, Any]:
    return {"infeasible": {"constraint": constraint, "message": message}}


def _profile_value(profile: Any, key: str) -> float | None:
    if profile is None:
        return None
    value = profile.get(key) if isinstance(profile, Mapping) else getattr(profile, key, None)
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def _constraints_summary(c: Mapping[str, Any], label: str) -> str:
    parts = []
    if c.get("p99_ms") is not None:
        parts.append(f"p99 ≤ {_ms(c['p99_ms'])}")
    if c.get("max_memory_mb") is not None:
        parts.append(f"memory ≤ {_mb(c['max_memory_mb'])}")
    if c.get("qps") is not None:
        parts.append(f"{_qps(c['qps'])} QPS")
    if c.get("budget_usd_month") is not None:
        parts.append(f"budget {_usd(c['budget_usd_month'])}/month")
    if c.get("min_ndcg") is not None:
        parts.append(f"{label} ≥ {c['min_ndcg']:.3f}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# number formatting shared with the report


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{_fmt_num(x)} ms"


def _fmt_num(x: Any, digits: int | None = None) -> str:
    """Readable number: ``3.1``, ``0.42``, ``1,200``; ``-`` for missing."""
    if x is None or isinstance(x, bool):
        return "-"
    x = float(x)
    if digits is None:
        ax = abs(x)
        if ax < 10:
            # Three significant digits: 3.1, 0.105, 2.35 (so 0.105 ms never prints as 0.10).
            return f"{x:.3g}"
        digits = 1 if ax < 100 and x != round(x) else 0
    return f"{x:,.{digits}f}"


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} MB"


def _gb(mb: float | None) -> str:
    return "-" if mb is None else f"{mb / MB_PER_GB:,.0f} GB"


def _qps(x: float | None) -> str:
    return _fmt_num(x) if x is None or x < 100 else f"{x:,.0f}"


def _usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def _machines(n: int) -> str:
    return "1 machine" if n == 1 else f"{n} machines"
