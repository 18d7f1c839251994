"""Resize a measured configuration to a catalogue size nobody measured it at.

``bench`` measures every configuration on the dataset's own catalogue (1,682 items for
ml-100k); a team planning for 100k or 10M items needs the same numbers at *their* size.
Each online stage grows by a measured curve (:mod:`frugalrec.cost.scaling` fits
``a * n**b + c`` to retrieval latency from 1k to 1M items): exact scoring and top-k follow
the exact-search curve, ANN retrieval its index's curve, and the per-request overhead and
user-vector stages do not depend on the catalogue. Memory grows with what the model stores
per item (quadratically for EASE's item x item weights), build time with what fitting costs.

Quality is *not* resized: it stays the value measured on the bench dataset, and every
resized record says so (``cost["catalogue"]``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from frugalrec.cost.records import order_quantiles
from frugalrec.cost.scaling import ScalingModel

# Catalogue sizes of the built-in datasets (for bench files that predate cost.n_items).
DATASET_ITEMS = {"ml-100k": 1682}
# Exponent of model bytes in the number of items: EASE keeps an item x item matrix; the
# others keep a row (vector, factors or neighbour list) per item.
MEMORY_EXPONENT = {"ease": 2.0, "hybrid": 2.0}
# Exponent of fitting time: EASE inverts an item x item Gram matrix.
FIT_EXPONENT = {"ease": 3.0, "hybrid": 3.0}


def load_fits(path: str | Path | None = None) -> dict[str, ScalingModel]:
    """Scaling fits from a ``scaling.json`` (``{"fits": {name: ScalingModel dict}}``), or the
    ones shipped with frugalrec (measured on the reference 2-core machine)."""
    if path is None:
        text = resources.files("frugalrec.cost").joinpath("scaling_fits.json").read_text()
        where = "frugalrec/cost/scaling_fits.json"
    else:
        text, where = Path(path).read_text(), str(path)
    try:
        raw = json.loads(text)["fits"]
        return {name: ScalingModel.from_dict(f) for name, f in raw.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a scaling file with a 'fits' object ({exc})") from exc


def stage_curve(kind: str) -> str | None:
    """Name of the scaling curve a stage kind follows, or None for size-independent stages."""
    if kind.endswith(":user_vector"):  # a fold-in from the history: no per-item work
        return None
    if kind.startswith("score:") or kind == "topk":
        return "exact"
    if kind.startswith("retrieve:"):
        return kind.split(":", 1)[1]
    return None


def _growth(fits: Mapping[str, ScalingModel], curve: str | None, n0: float, n: float) -> float:
    if curve is None:
        return 1.0
    if curve not in fits:
        raise ValueError(f"no scaling curve {curve!r}; fitted curves: {sorted(fits)}")
    fit = fits[curve]
    return float(fit.predict(n)) / float(fit.predict(n0))


def measured_items(raw: Mapping[str, Any], dataset: str | None = None) -> int:
    """The catalogue size a bench record was measured at."""
    n = raw.get("cost", {}).get("n_items")
    if n:
        return int(n)
    if dataset in DATASET_ITEMS:
        return DATASET_ITEMS[str(dataset)]
    raise ValueError(
        f"{raw.get('config', {}).get('name')}: cost.n_items missing (bench file predates it); "
        "re-run `frugalrec bench` or pass --dataset"
    )


def resize_record(
    raw: Mapping[str, Any],
    n_items: int,
    fits: Mapping[str, ScalingModel],
    n0: int,
) -> dict[str, Any]:
    """A copy of one bench record (``bench.json`` entry) with its cost resized to ``n_items``.

    Latency percentiles scale by the stage-weighted growth of the batch-1 stages; QPS by
    that of the batch-16 stages; memory and build time by the exponents above. Projections
    onto other hardware scale by the same ratios (growth is measured here).
    """
    if n_items < 1:
        raise ValueError(f"catalogue size must be >= 1, got {n_items}")
    out = copy.deepcopy(dict(raw))
    cost = out["cost"]
    stages = out.get("stages") or []
    ratios: dict[str, float] = {}
    for bs, stat, key in ((1, "p99_ms", "p99"), (1, "p50_ms", "p50"), (16, "p50_ms", "qps")):
        rows = [s for s in stages if s.get("batch_size") == bs and s.get(stat)]
        base = sum(float(s[stat]) for s in rows)
        grown = sum(float(s[stat]) * _growth(fits, stage_curve(s["kind"]), n0, n_items)
                    for s in rows)  # fmt: skip
        # Without stage data the whole request follows the exact-search curve.
        ratios[key] = grown / base if base > 0 else _growth(fits, "exact", n0, n_items)
    for k in ("p50_ms", "p95_ms"):
        cost[k] = float(cost[k]) * ratios["p50" if k == "p50_ms" else "p99"]
    cost["p99_ms"] = float(cost["p99_ms"]) * ratios["p99"]
    order_quantiles(cost)  # p50 and the tail grow by different curves
    cost["qps"] = float(cost["qps"]) / ratios["qps"]
    if cost.get("usd_per_million_requests") is not None:
        cost["usd_per_million_requests"] = float(cost["usd_per_million_requests"]) * ratios["qps"]
    cost.pop("qps_by_batch", None)  # measured at the bench size only
    _resize_service(cost, cost.get("serving_overhead_ms"), ratios["p50"])

    model = str(out["config"].get("model", ""))
    size = n_items / n0
    parts = cost.get("model_bytes") or {}
    model_b = float(parts.get("model", 0.0)) * size ** MEMORY_EXPONENT.get(model, 1.0)
    index_b = float(parts.get("index", 0.0)) * size
    encoder_b = float(parts.get("encoder", 0.0))
    old_total = float(cost.get("model_mb", 0.0)) * 2**20
    new_total = model_b + index_b + encoder_b
    cost["model_bytes"] = {"model": model_b, "index": index_b, "encoder": encoder_b}
    cost["model_mb"] = new_total / 2**20
    cost["peak_rss_mb"] = float(cost["peak_rss_mb"]) + (new_total - old_total) / 2**20
    offline = dict(cost.get("offline") or {})
    for k, v in offline.items():
        if k == "fit_seconds":
            offline[k] = float(v) * size ** FIT_EXPONENT.get(model, 1.0)
        elif k != "encoder_load_seconds":
            offline[k] = float(v) * size
    if offline:
        cost["offline"] = offline
        cost["build_seconds"] = sum(float(v) for v in offline.values())

    for proj in (out.get("projections") or {}).values():
        for k in ("p50_ms", "p95_ms", "p99_ms"):
            if proj.get(k) is not None:
                proj[k] = float(proj[k]) * ratios["p50" if k == "p50_ms" else "p99"]
        order_quantiles(proj)
        if proj.get("qps"):
            proj["qps"] = float(proj["qps"]) / ratios["qps"]
        _resize_service(proj, cost.get("serving_overhead_ms"), ratios["p50"])
        if proj.get("usd_per_million_requests") is not None:
            proj["usd_per_million_requests"] = (
                float(proj["usd_per_million_requests"]) * ratios["qps"]
            )
    lo, hi = min(f.n_range[0] for f in fits.values()), max(f.n_range[1] for f in fits.values())
    cost["catalogue"] = {
        "items": int(n_items),
        "measured_items": int(n0),
        "latency_growth_p99": ratios["p99"],
        "extrapolated": not (lo <= n_items <= hi),
        "note": f"cost resized with fitted scaling curves; quality as measured at {n0} items",
    }
    return out


def _resize_service(block: dict[str, Any], overhead_ms: Any, growth: float) -> None:
    """Resize ``service_qps`` in place: the serving overhead stays, the scoring part of a
    request (``1 / service_qps - overhead``) grows like the batch-1 latency."""
    svc = block.get("service_qps")
    if not svc or overhead_ms is None:
        return
    overhead_s = float(overhead_ms) / 1e3
    scoring_s = max(1.0 / float(svc) - overhead_s, 0.0)
    block["service_qps"] = 1.0 / (overhead_s + scoring_s * growth)
