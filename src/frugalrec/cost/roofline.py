"""Roofline projection: from costs measured here to latency on another machine.

Each stage is modelled as a cache-aware roofline::

    seconds = overhead + max(flops / (eff_compute * peak_flops),
                             memory_seconds(bytes, working_set, hot, streaming) / eff_memory)

``flops``, ``bytes`` and the working set come from the analytic counts in
:mod:`frugalrec.opcount`; ``peak_flops`` and ``memory_seconds`` (DRAM bandwidth, or the
cache bandwidth for the part of the working set that stays cached) from a
:class:`~frugalrec.cost.hardware.HardwareProfile`. :func:`calibrate` fits ``overhead``,
``eff_compute`` and ``eff_memory`` per stage kind (and per kind and batch size) on measurements
from one machine (``local``); :func:`project` applies them to another profile's ceilings. The
transfer assumes the other machine's software reaches the same fraction of *its* ceilings as
ours did of ours, and carries the fixed overhead (Python, dispatch, allocation) over unchanged;
both are first-order assumptions, so projections are estimates, and :func:`projection_error`
says how good they are where we can check (held-out local points).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from frugalrec.cost.hardware import HardwareProfile
from frugalrec.opcount import StageCost

# Efficiencies above 1 are allowed: an analytic byte count can overstate real traffic.
_EFF_COARSE = np.logspace(-5, math.log10(8.0), 61)
_LOG_EFF_MIN, _LOG_EFF_MAX = math.log(1e-5), math.log(8.0)
_STEP = float(_EFF_COARSE[1] / _EFF_COARSE[0])
_OVERHEAD_FRACTIONS = np.concatenate([[0.0], np.linspace(0.02, 0.98, 25)])
ALL_KINDS = "*"
# Weight of the prior toward efficiencies near 1, in units of mean |log error| per e-fold.
_PRIOR = 0.01


@dataclass
class KindCalibration:
    """Fitted roofline parameters of one stage kind (seconds, fractions of the ceilings)."""

    overhead_s: float
    eff_compute: float
    eff_memory: float
    n_records: int = 0
    train_median_abs_error: float = 0.0

    def seconds(self, flops: float, memory_s: float, peak_flops: float) -> float:
        """Modelled seconds of one call: ``memory_s`` is the data movement time at the
        machine's full ceilings (:meth:`HardwareProfile.memory_seconds`)."""
        return self.overhead_s + max(
            flops / (self.eff_compute * peak_flops), memory_s / self.eff_memory
        )


@dataclass
class Calibration:
    """Roofline efficiencies per stage kind, fitted on ``profile``'s measurements.

    Keys of ``kinds`` are ``kind`` or ``kind/b<batch>`` (a batch-specific fit);
    ``kinds["family:*"]`` fits every kind of one family (the part before the last ``:``, so
    ``score:sparse`` falls back on all ``score:*`` records); ``kinds[ALL_KINDS]`` is a fit
    over every record, used for kinds whose family was never seen in calibration.
    """

    profile: str
    quantile: float
    kinds: dict[str, KindCalibration] = field(default_factory=dict)

    def for_kind(self, kind: str, batch_size: int | None = None) -> KindCalibration:
        """The most specific fit: ``kind/b<batch>``, then ``kind``, then all kinds."""
        keys = [f"{kind}/b{batch_size}"] if batch_size is not None else []
        for key in [*keys, kind, *_families(kind), ALL_KINDS]:
            if key in self.kinds:
                return self.kinds[key]
        raise KeyError(f"no calibration for stage kind {kind!r} and no fallback")

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "quantile": self.quantile,
            "kinds": {k: asdict(v) for k, v in self.kinds.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            profile=str(d["profile"]),
            quantile=float(d["quantile"]),
            kinds={k: KindCalibration(**v) for k, v in d["kinds"].items()},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, s: str) -> Calibration:
        return cls.from_dict(json.loads(s))


def _loss(
    t: np.ndarray, tc1: np.ndarray, tm1: np.ndarray, o: np.ndarray, ec: np.ndarray, em: np.ndarray
) -> np.ndarray:
    """Mean |log(pred / t)| over records for every (o, ec, em): shape [O, EC, EM]."""
    out = np.empty((len(o), len(ec), len(em)))
    tc = tc1[:, None, None] / ec[None, :, None]  # [n, EC, 1]
    tm = tm1[:, None, None] / em[None, None, :]  # [n, 1, EM]
    base = np.maximum(tc, tm)  # [n, EC, EM]
    for i, oi in enumerate(o):
        out[i] = np.abs(np.log((oi + base) / t[:, None, None])).mean(axis=0)
    # Where the data cannot tell whether compute or memory binds (every record on one side
    # of the ridge), an efficiency far below 1 on the other side fits just as well and then
    # explodes on a machine with a different FLOP/byte balance (a CPU-calibrated LLM
    # prefill "memory-bound at 0.01 %" projected 27 s on an H100). A small prior toward
    # physically plausible efficiencies (near 1) and toward a small fixed overhead breaks
    # the tie without moving a fit the data pins down.
    pen_o = _PRIOR * o / float(t.min())
    pen_c = _PRIOR * np.maximum(0.0, -np.log(ec))
    pen_m = _PRIOR * np.maximum(0.0, -np.log(em))
    return out + pen_o[:, None, None] + pen_c[None, :, None] + pen_m[None, None, :]


def _families(kind: str) -> list[str]:
    """``"a:b:c"`` -> ``["a:b:*", "a:*"]``: the fallbacks of a kind, nearest first."""
    parts = kind.split(":")
    return [":".join(parts[:i]) + ":*" for i in range(len(parts) - 1, 0, -1)]


def _clip_log(v: float) -> float:
    # Efficiencies stay within the grid's range; a stage with no analytic work (pure
    # overhead) leaves them unconstrained and the simplex would walk off to exp(800).
    return min(max(float(v), _LOG_EFF_MIN), _LOG_EFF_MAX)


def _polish(
    t: np.ndarray, tc1: np.ndarray, tm1: np.ndarray, o: float, ec: float, em: float
) -> tuple[float, float, float]:
    """Refine a grid optimum continuously (Nelder-Mead on overhead fraction and log
    efficiencies). The grid alone leaves ~1 % steps that a spurious overhead can fill: with
    two records, "0.76 ms overhead + 1 % less compute" fitted as well as the true "no
    overhead", and the overhead is what carries unchanged to a 1000x faster machine."""
    from scipy.optimize import minimize

    t_min = float(t.min())

    def loss(x: np.ndarray) -> float:
        # The grid's own loss (fit + prior) at one point, so both stages minimise the same.
        o_x = np.array([min(max(float(x[0]), 0.0), 0.999) * t_min])
        ec_x, em_x = np.exp([_clip_log(x[1])]), np.exp([_clip_log(x[2])])
        return float(_loss(t, tc1, tm1, o_x, ec_x, em_x)[0, 0, 0])

    # Where flops and bytes grow together the two explanations (compute-bound at a low
    # efficiency, memory-bound at a high one) are a flat valley between two basins: start
    # from the grid optimum and from each pure explanation, keep the best after the prior.
    rest = np.maximum(t - o, 1e-12)
    starts = [(o / t_min, math.log(ec), math.log(em))]
    if np.all(tm1 > 0):
        starts.append((o / t_min, 0.0, math.log(float(np.median(tm1 / rest)))))
    if np.all(tc1 > 0):
        starts.append((o / t_min, math.log(float(np.median(tc1 / rest))), 0.0))
    best_x, best_f = np.array(starts[0]), loss(np.array(starts[0]))
    for start in starts:
        res = minimize(loss, np.array(start), method="Nelder-Mead",
                       options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})  # fmt: skip
        if res.fun < best_f:
            best_x, best_f = res.x, float(res.fun)
    x = best_x
    frac = min(max(float(x[0]), 0.0), 0.999)
    return frac * t_min, math.exp(_clip_log(x[1])), math.exp(_clip_log(x[2]))


def _fit(
    flops: np.ndarray, memory_s: np.ndarray, t: np.ndarray, peak: np.ndarray
) -> KindCalibration:
    """Minimise mean |log(pred / measured)| (robust to a few noisy points): a coarse grid
    over (overhead, eff_compute, eff_memory), then a fine grid around the best point."""
    tc1 = flops / peak  # compute seconds at 100 % of peak
    tm1 = memory_s  # memory seconds at 100 % of the ceilings
    o = _OVERHEAD_FRACTIONS * float(t.min())
    loss = _loss(t, tc1, tm1, o, _EFF_COARSE, _EFF_COARSE)
    i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
    do = float(t.min()) * 0.04
    o_fine = np.clip(np.linspace(o[i] - do, o[i] + do, 11), 0.0, 0.999 * float(t.min()))
    ec_fine = _EFF_COARSE[j] * _STEP ** np.linspace(-1, 1, 21)
    em_fine = _EFF_COARSE[k] * _STEP ** np.linspace(-1, 1, 21)
    loss = _loss(t, tc1, tm1, o_fine, ec_fine, em_fine)
    i, j, k = np.unravel_index(int(np.argmin(loss)), loss.shape)
    o_best, ec_best, em_best = _polish(t, tc1, tm1, o_fine[i], ec_fine[j], em_fine[k])
    cal = KindCalibration(
        overhead_s=o_best,
        eff_compute=ec_best,
        eff_memory=em_best,
        n_records=len(t),
    )
    pred = np.array([cal.seconds(f, m, p) for f, m, p in zip(flops, memory_s, peak, strict=True)])
    cal.train_median_abs_error = float(np.median(np.abs(pred / t - 1.0)))
    return cal


def _memory_seconds(profile: HardwareProfile, r: StageCost) -> float:
    return profile.memory_seconds(r.bytes_moved, r.working_set_bytes, r.hot_bytes, r.streaming)


def calibrate(
    records: Sequence[StageCost],
    profile: HardwareProfile | None = None,
    *,
    quantile: float = 0.99,
) -> Calibration:
    """Fit roofline parameters per stage kind (and per kind and batch size) to measurements.

    ``records`` are :class:`StageCost` with seconds samples measured on ``profile`` (default:
    the ``local`` profile, measured). The fitted latency is the ``quantile`` of each record's
    samples (p99 by default). A ``kind/b<batch>`` fit is made where a kind has at least two
    records at that batch size and other batch sizes too. Kinds with records on both
    sides of the ridge point pin both efficiencies, others pin one and leave the other at its
    best-fitting (unconstrained, hence optimistic) value.
    """
    if not records:
        raise ValueError("calibrate needs at least one record")
    if profile is None:
        from frugalrec.cost.hardware import load_profiles

        profile = load_profiles()["local"]
    groups: dict[str, list[StageCost]] = {}
    for r in records:
        groups.setdefault(r.kind, []).append(r)
        # Batch sizes get their own fit: a batch can switch kernels (GEMV -> GEMM) or
        # parallelism (one query per thread), which changes the reachable efficiency.
        groups.setdefault(f"{r.kind}/b{r.batch_size}", []).append(r)
    groups = {
        key: recs
        for key, recs in groups.items()
        if "/b" not in key or (len(recs) >= 2 and len(recs) < len(groups[key.split("/b")[0]]))
    }
    # Families: an unseen kind is projected from its relatives (another scoring primitive)
    # before falling back on every record (pop's vector copy priced like an HNSW search).
    for r in records:
        for fam in _families(r.kind):
            groups.setdefault(fam, []).append(r)
    groups[ALL_KINDS] = list(records)
    cal = Calibration(profile=profile.name, quantile=quantile)
    for kind, recs in groups.items():
        flops = np.array([r.flops for r in recs], dtype=np.float64)
        mem_s = np.array([_memory_seconds(profile, r) for r in recs])
        t = np.array([r.quantile_s(quantile) for r in recs], dtype=np.float64)
        peak = np.array([profile.peak(r.dtype) for r in recs], dtype=np.float64)
        if np.any(t <= 0):
            raise ValueError(f"stage kind {kind!r} has a non-positive latency")
        cal.kinds[kind] = _fit(flops, mem_s, t, peak)
    return cal


def project(
    stage_cost: StageCost,
    calibration: Calibration,
    profile: HardwareProfile,
    *,
    cuda_graph: bool = False,
) -> float:
    """Projected seconds of one call of ``stage_cost`` (its batch size) on ``profile``.

    Onto another machine whose profile has a launch model (an accelerator driven by a host)
    and for a stage that counted its kernel launches, the calibrated fixed overhead (this
    machine's Python and dispatch per call) is replaced by the target's own::

        sync + max(host: launches * launch, device: roofline + launches * kernel)

    since the host enqueues kernels while the device runs earlier ones. ``cuda_graph``
    replays the whole call in one launch (host cost ``launch``). On the calibration's own
    machine (the same profile *name*: ``calibration.profile == profile.name``) the fitted
    overhead already holds its launch costs and the plain roofline is used.
    """
    return project_with_bound(stage_cost, calibration, profile, cuda_graph=cuda_graph)[0]


def launch_bound(stage_cost: StageCost, calibration: Calibration, profile: HardwareProfile) -> bool:
    """Whether :func:`project` puts ``stage_cost`` on ``profile`` at the host's kernel-launch
    rate (eager launches slower than the device runs them), not at the roofline."""
    return project_with_bound(stage_cost, calibration, profile)[1]


def project_with_bound(
    stage_cost: StageCost,
    calibration: Calibration,
    profile: HardwareProfile,
    *,
    cuda_graph: bool = False,
) -> tuple[float, bool]:
    """(:func:`project`'s seconds, :func:`launch_bound`) of one call, computed once."""
    k = calibration.for_kind(stage_cost.kind, stage_cost.batch_size)
    if profile.launch_us is None or stage_cost.launches <= 0 or calibration.profile == profile.name:
        mem_s = _memory_seconds(profile, stage_cost)
        return k.seconds(stage_cost.flops, mem_s, profile.peak(stage_cost.dtype)), False
    assert profile.kernel_us is not None and profile.sync_us is not None
    n = stage_cost.launches
    seconds, bound = launch_model_seconds(
        roofline_seconds(stage_cost, k, profile), n, 1 if cuda_graph else n,
        profile.launch_us, profile.kernel_us, profile.sync_us,
    )  # fmt: skip
    return float(seconds), bool(bound)


def launch_model_seconds(
    roof_s: Any, launches: Any, host_launches: Any, launch_us: Any, kernel_us: Any, sync_us: Any
) -> tuple[Any, Any]:
    """The launch model, elementwise over numpy-broadcastable arguments: (seconds, whether
    the host's launches bind) for a call whose device work takes ``roof_s`` seconds at the
    roofline, ``launches`` kernels of which the host launches ``host_launches`` (1 for a
    CUDA graph), at ``launch_us`` / ``kernel_us`` / ``sync_us`` microseconds."""
    host_s = np.multiply(host_launches, launch_us) * 1e-6
    device_s = roof_s + np.multiply(launches, kernel_us) * 1e-6
    return np.multiply(sync_us, 1e-6) + np.maximum(host_s, device_s), host_s > device_s


def roofline_seconds(stage_cost: StageCost, k: KindCalibration, profile: HardwareProfile) -> float:
    """Seconds of one call at ``k``'s efficiencies of ``profile``'s ceilings, no overhead."""
    mem_s = _memory_seconds(profile, stage_cost)
    flops_s = stage_cost.flops / (k.eff_compute * profile.peak(stage_cost.dtype))
    return max(flops_s, mem_s / k.eff_memory)


QUANTILES = (0.5, 0.95, 0.99)


def project_latency(
    stages: Sequence[StageCost],
    calibrations: Mapping[float, Calibration],
    profile: HardwareProfile,
) -> dict[str, Any]:
    """Projected ``p50_ms``/``p95_ms``/``p99_ms`` of a request made of ``stages`` (batch-1
    calls, summed) on ``profile``, each quantile from the calibration fitted at it, plus
    ``launch_bound_ms`` (the p50 share at the host's launch rate).

    Each quantile has its own fit, and two fits can cross (a p99 fit that found the stages
    cheaper than the p50 fit did): a quantile is never below the one under it, so the
    projection keeps p50 <= p95 <= p99 by construction (a running maximum).
    """
    out: dict[str, Any] = {}
    floor = 0.0
    for q in sorted(calibrations):
        parts = [project_with_bound(s, calibrations[q], profile) for s in stages]
        ms = sum(t for t, _ in parts) * 1e3
        if q == 0.5:
            out["launch_bound_ms"] = sum(t for t, bound in parts if bound) * 1e3
        floor = max(floor, ms)
        out[f"p{round(q * 100)}_ms"] = floor
    return out


def project_throughput(
    stage_cost: StageCost, calibration: Calibration, profile: HardwareProfile
) -> float:
    """Projected requests per second on ``profile`` at ``stage_cost.batch_size``."""
    return stage_cost.batch_size / project(stage_cost, calibration, profile)


def split_half(records: Sequence[StageCost]) -> tuple[list[StageCost], list[StageCost]]:
    """Two halves for calibrate-on-one, check-on-the-other.

    Records are grouped by configuration (``meta["config"]``, else the name up to ``@``),
    kind and batch size; within each group, ordered by size (``meta["n_items"]``) and work,
    they alternate between the halves, so every configuration is checked at sizes it was not
    calibrated on (a split by configuration would test transfer to unseen configurations).
    """
    groups: dict[tuple[str, str, int], list[StageCost]] = {}
    for r in records:
        label = str(r.meta.get("config", r.name.split("@")[0]))
        groups.setdefault((r.kind, label, r.batch_size), []).append(r)
    halves: tuple[list[StageCost], list[StageCost]] = ([], [])
    flip = 0
    for key in sorted(groups):
        ordered = sorted(
            groups[key], key=lambda r: (r.meta.get("n_items", 0), r.flops + r.bytes_moved)
        )
        for i, r in enumerate(ordered):
            halves[(i + flip) % 2].append(r)
        flip += len(groups[key]) % 2  # odd groups take turns giving the extra record
    return halves


def projection_error(
    train_records: Sequence[StageCost],
    test_records: Sequence[StageCost],
    profile: HardwareProfile | None = None,
    *,
    quantile: float = 0.99,
) -> dict[str, Any]:
    """Calibrate on ``train_records``, project ``test_records`` back onto the same machine.

    Returns ``{"median_abs_error", "mean_abs_error", "max_abs_error", "per_record": [{name,
    kind, measured_s, projected_s, rel_error}], "calibration": dict}``; errors are
    ``|projected / measured - 1|`` of the ``quantile`` latency (p99 by default).
    """
    if profile is None:
        from frugalrec.cost.hardware import load_profiles

        profile = load_profiles()["local"]
    cal = calibrate(train_records, profile, quantile=quantile)
    rows: list[dict[str, Any]] = []
    for r in test_records:
        measured = r.quantile_s(quantile)
        projected = project(r, cal, profile)
        rows.append(
            {
                "name": r.name,
                "kind": r.kind,
                "batch_size": r.batch_size,
                "measured_s": measured,
                "projected_s": projected,
                "rel_error": projected / measured - 1.0,
            }
        )
    errs = np.abs(np.array([float(row["rel_error"]) for row in rows] or [math.nan]))
    return {
        "median_abs_error": float(np.median(errs)),
        "mean_abs_error": float(np.mean(errs)),
        "max_abs_error": float(np.max(errs)),
        "per_record": rows,
        "calibration": cal.to_dict(),
    }
