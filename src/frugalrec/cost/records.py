"""``CostRecord``: the measured quality and cost of one ``PipelineConfig`` on one machine.

``frugalrec bench`` writes a list of these to ``bench.json``; the planner and the report read
them back with :func:`load_bench`. Validation names the record and the field, so a hand-edited
or truncated file fails with ``bench.json record 3: cost.p99_ms missing`` rather than a
``KeyError`` deep inside a chart.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Cost fields every record must carry as numbers; the planner cannot work without them.
REQUIRED_TRAINING = ("wall_seconds",)
OPTIONAL_TRAINING = ("cpu_seconds", "examples", "examples_per_second", "peak_rss_mb")
REQUIRED_COST = ("p50_ms", "p99_ms", "qps", "peak_rss_mb")
# Cost fields that may be absent or null (e.g. no price known for the measuring machine).
OPTIONAL_COST = (
    "p95_ms",
    "rss_increment_mb",
    "baseline_rss_mb",
    "service_qps",
    "serving_overhead_ms",
    "model_mb",
    "build_seconds",
    "flops_per_request",
    "usd_per_million_requests",
)
REQUIRED_PROJECTION = ("p50_ms", "p99_ms", "qps")
OPTIONAL_PROJECTION = (
    "p95_ms",
    "service_qps",
    "usd_per_million_requests",
    "launch_bound_share",
)
# Memory is a property of the configuration, not of the machine's speed, so a projection
# inherits these from the measurement.
CARRIED_TO_PROJECTION = ("peak_rss_mb", "model_mb", "flops_per_request")
REQUIRED_QUALITY = ("ndcg@10",)
_METRIC_KEY = re.compile(r"^[A-Za-z_]+@\d+$")

MEASURED = "measured"
PROJECTED = "projected"


class BenchFormatError(ValueError):
    """A bench file or record is missing, unreadable or has an invalid field."""


@dataclass
class CostRecord:
    """Quality and cost of one configuration, measured on ``hardware``.

    ``projections`` maps other hardware profile names to projected
    ``p50_ms``/``p99_ms``/``qps``/``usd_per_million_requests``.
    """

    config: dict[str, Any]
    quality: dict[str, Any]
    cost: dict[str, Any]
    hardware: str = "local"
    projections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One-off training of a fine-tuned configuration, measured on ``hardware`` (issue #17):
    # wall_seconds (required in the block), cpu_seconds, examples, examples_per_second,
    # peak_rss_mb. Empty for configurations that train nothing beyond the model fit.
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The configuration's name (``config["name"]``)."""
        return str(self.config["name"])

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> CostRecord:
        """Validate and build a record; errors read ``"{where}: cost.p99_ms missing"``."""
        if not isinstance(data, Mapping):
            raise BenchFormatError(f"{where}: expected a JSON object, got {_kind(data)}")
        config = _require_mapping(data, "config", where)
        name = config.get("name")
        if name is None:
            raise BenchFormatError(f"{where}: config.name missing")
        if not isinstance(name, str) or not name.strip():
            raise BenchFormatError(f"{where}: config.name must be a non-empty string")

        quality_in = _require_mapping(data, "quality", where)
        quality: dict[str, Any] = {}
        for key, value in quality_in.items():
            # Metrics ("ndcg@10") must be numbers; other keys (intervals, notes) pass through.
            if _METRIC_KEY.match(str(key)):
                quality[str(key)] = _number(value, f"quality.{key}", where, nullable=True)
            else:
                quality[str(key)] = value
        for key in REQUIRED_QUALITY:
            if key not in quality_in:
                raise BenchFormatError(f"{where}: quality.{key} missing")
            if quality[key] is None:
                raise BenchFormatError(f"{where}: quality.{key} is null; expected a number")

        cost_in = _require_mapping(data, "cost", where)
        cost = _numbers(cost_in, "cost", REQUIRED_COST, OPTIONAL_COST, where)
        if cost["qps"] is not None and cost["qps"] <= 0:
            raise BenchFormatError(f"{where}: cost.qps must be > 0, got {cost['qps']}")

        hardware = data.get("hardware")
        if hardware is None:
            raise BenchFormatError(f"{where}: hardware missing")
        if not isinstance(hardware, str) or not hardware.strip():
            raise BenchFormatError(f"{where}: hardware must be a non-empty string")

        projections: dict[str, dict[str, Any]] = {}
        proj_in = data.get("projections")
        if proj_in is not None:
            if not isinstance(proj_in, Mapping):
                raise BenchFormatError(
                    f"{where}: projections must be an object, got {_kind(proj_in)}"
                )
            for hw, block in proj_in.items():
                label = f"projections.{hw}"
                if not isinstance(block, Mapping):
                    raise BenchFormatError(
                        f"{where}: {label} must be an object, got {_kind(block)}"
                    )
                proj = _numbers(block, label, REQUIRED_PROJECTION, OPTIONAL_PROJECTION, where)
                if proj["qps"] is not None and proj["qps"] <= 0:
                    raise BenchFormatError(f"{where}: {label}.qps must be > 0, got {proj['qps']}")
                projections[str(hw)] = proj

        training: dict[str, Any] = {}
        train_in = data.get("training")
        if train_in is not None:
            if not isinstance(train_in, Mapping):
                raise BenchFormatError(
                    f"{where}: training must be an object, got {_kind(train_in)}"
                )
            training = _numbers(train_in, "training", REQUIRED_TRAINING, OPTIONAL_TRAINING, where)
            if training["wall_seconds"] is None or training["wall_seconds"] < 0:
                raise BenchFormatError(f"{where}: training.wall_seconds must be a number >= 0")

        return cls(
            config=dict(config),
            quality=quality,
            cost=cost,
            hardware=hardware,
            projections=projections,
            training=training,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``from_dict`` reads (``projections`` omitted when empty)."""
        out: dict[str, Any] = {
            "config": dict(self.config),
            "quality": dict(self.quality),
            "cost": dict(self.cost),
            "hardware": self.hardware,
        }
        if self.projections:
            out["projections"] = {hw: dict(p) for hw, p in self.projections.items()}
        if self.training:
            out["training"] = dict(self.training)
        return out


def load_bench(path: str | os.PathLike[str]) -> list[CostRecord]:
    """Read and validate ``bench.json``: a JSON list of records.

    Raises :class:`BenchFormatError` naming the file (and the 0-based record index, as
    ``jq '.[3]'`` counts) when the file is missing, not JSON, or a record is invalid.
    """
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise BenchFormatError(f"{name}: file not found (run `frugalrec bench` first)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BenchFormatError(f"{name}: not valid UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise BenchFormatError(
            f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(data, list):
        raise BenchFormatError(f"{name}: expected a JSON list of records, got {_kind(data)}")
    return [CostRecord.from_dict(item, where=f"{name} record {i}") for i, item in enumerate(data)]


def dump_bench(records: Iterable[CostRecord]) -> str:
    """Serialise records as the JSON text ``load_bench`` reads."""
    return json.dumps([r.to_dict() for r in records], indent=2) + "\n"


QUANTILE_KEYS = ("p50_ms", "p95_ms", "p99_ms")


def order_quantiles(block: dict[str, Any]) -> dict[str, Any]:
    """Make the latency quantiles present in ``block`` non-decreasing (p50 <= p95 <= p99), in
    place, by a running maximum; returns ``block``. For figures derived from separately
    scaled or fitted quantiles: a quantile below a lower one is no latency at all."""
    floor = 0.0
    for key in QUANTILE_KEYS:
        if block.get(key) is not None:
            floor = max(floor, float(block[key]))
            block[key] = floor
    return block


def cost_on(record: CostRecord, hardware: str) -> dict[str, Any] | None:
    """The record's cost on ``hardware``: measured if it was measured there, else projected.

    A projection keeps the measured memory fields (``peak_rss_mb``, ``model_mb``,
    ``flops_per_request``). Returns ``None`` when there is neither.
    """
    if record.hardware == hardware:
        return dict(record.cost)
    proj = record.projections.get(hardware)
    if proj is None:
        return None
    out: dict[str, Any] = {k: record.cost.get(k) for k in CARRIED_TO_PROJECTION}
    out.update(proj)
    return out


def records_on(
    records: Iterable[CostRecord], hardware: str
) -> list[tuple[CostRecord, dict[str, Any], str]]:
    """One ``(record, cost, source)`` per config name that has data on ``hardware``.

    ``source`` is ``"measured"`` or ``"projected"``. When several records share a config name
    (a merged bench file), a measurement beats a projection and a later record beats an
    earlier one of the same source; order follows first appearance.
    """
    chosen: dict[str, tuple[CostRecord, dict[str, Any], str]] = {}
    for rec in records:
        cost = cost_on(rec, hardware)
        if cost is None:
            continue
        source = MEASURED if rec.hardware == hardware else PROJECTED
        prev = chosen.get(rec.name)
        if prev is not None and prev[2] == MEASURED and source == PROJECTED:
            continue
        chosen[rec.name] = (rec, cost, source)
    return list(chosen.values())


_METRIC_NAMES = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "mrr": "MRR",
    "hr": "HR",
    "precision": "Precision",
    "auc": "AUC",
    "map": "MAP",
}


def metric_label(key: str) -> str:
    """Human name of a quality key: ``"ndcg@10"`` -> ``"NDCG@10"``, ``"cold_ndcg@10"`` ->
    ``"cold NDCG@10"``."""
    prefix = ""
    base = key
    if base.startswith("cold_"):
        prefix, base = "cold ", base[len("cold_") :]
    head, sep, k = base.partition("@")
    return prefix + _METRIC_NAMES.get(head.lower(), head) + sep + k


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _require_mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    if key not in data or data[key] is None:
        raise BenchFormatError(f"{where}: {key} missing")
    value = data[key]
    if not isinstance(value, Mapping):
        raise BenchFormatError(f"{where}: {key} must be an object, got {_kind(value)}")
    return value


def _number(value: Any, label: str, where: str, *, nullable: bool) -> float | None:
    if value is None:
        if nullable:
            return None
        raise BenchFormatError(f"{where}: {label} is null; expected a number")
    # bool is an int subclass; `true` as a latency is a bug upstream, not a 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BenchFormatError(f"{where}: {label} must be a number, got {_kind(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise BenchFormatError(f"{where}: {label} must be finite, got {value}")
    if x < 0 and not label.startswith("quality."):
        raise BenchFormatError(f"{where}: {label} must be >= 0, got {value}")
    return x


def _numbers(
    block: Mapping[str, Any],
    label: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    where: str,
) -> dict[str, Any]:
    """Validate the known numeric fields; keep unknown fields as they are (forward-compatible)."""
    for key in required:
        if key not in block:
            raise BenchFormatError(f"{where}: {label}.{key} missing")
    out: dict[str, Any] = {}
    for key, value in block.items():
        key = str(key)
        if key in required or key in optional:
            out[key] = _number(value, f"{label}.{key}", where, nullable=key not in required)
        else:
            out[key] = value
    return out
