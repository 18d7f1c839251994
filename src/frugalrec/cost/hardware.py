"""Hardware profiles: named machines with ceilings and prices, each figure with its source.

The shipped ``hardware.yaml`` lists this machine (``local``, ceilings measured), a 16-core CPU
server and NVIDIA T4, A10G, L4 and H100 cloud GPUs. Users add or override profiles with their
own YAML in the same format, passed as ``extra_path`` or listed in ``FRUGALREC_HARDWARE``
(``os.pathsep``-separated); later files override earlier ones by profile name.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from frugalrec.cost.ceilings import Ceilings, cached_ceilings, measure_ceilings

ENV_PATHS = "FRUGALREC_HARDWARE"
ENV_LOCAL_PRICE = "FRUGALREC_LOCAL_USD_PER_HOUR"
DTYPES = ("fp32", "fp16", "int8")
KINDS = ("cpu", "gpu")
_FIGURES = ("cores", "memory_gb", "mem_bandwidth_gbs", "peak_tflops", "usd_per_hour")
_OPTIONAL_FIGURES = ("cache_mb", "cache_bandwidth_gbs")
# Accelerators run kernels asynchronously from a host that launches them one by one: a small
# model in eager PyTorch is bound by the host's launch rate, not by the roofline.
_LAUNCH_FIGURES = ("launch_us", "kernel_us", "sync_us")
_ALLOWED = {
    *_OPTIONAL_FIGURES,
    *_LAUNCH_FIGURES,
    "kind",
    "description",
    "instance",
    "measured",
    "host_vcpus",
    "sources",
    *_FIGURES,
}


class HardwareProfileError(ValueError):
    """A hardware YAML file is invalid; the message names the file, profile and field."""


@dataclass(frozen=True)
class HardwareProfile:
    """One machine. ``peak_flops`` is in FLOP/s per dtype (``fp32``, ``fp16``, ``int8``;
    ``fp16`` stands for bf16 too), ``mem_bandwidth_gbs`` in 1e9 B/s, ``memory_gb`` in GiB,
    ``cores`` physical CPU cores (cpu) or SMs (gpu). ``sources`` maps each figure's name to
    where it comes from. ``cache_mb``/``cache_bandwidth_gbs`` (optional) describe the
    last-level cache; without them a projection treats every byte as coming from memory.

    ``launch_us``/``kernel_us``/``sync_us`` (optional, together) describe an accelerator
    driven by a host: host microseconds per eager kernel launch (framework dispatch
    included), the device's minimum microseconds per kernel, and the fixed microseconds of
    one synchronised call. With them, stages that count their kernel launches are projected
    as launch-bound or roofline-bound, whichever is slower (:func:`roofline.project`)."""

    name: str
    kind: str
    cores: int
    memory_gb: float
    mem_bandwidth_gbs: float
    peak_flops: dict[str, float]
    usd_per_hour: float
    sources: dict[str, str] = field(default_factory=dict)
    description: str = ""
    instance: str = ""
    host_vcpus: int | None = None
    measured: bool = False
    cache_mb: float | None = None
    cache_bandwidth_gbs: float | None = None
    launch_us: float | None = None
    kernel_us: float | None = None
    sync_us: float | None = None

    def peak(self, dtype: str = "fp32") -> float:
        """Peak FLOP/s for ``dtype`` (``bf16`` -> ``fp16``; unknown dtypes -> ``fp32``)."""
        key = "fp16" if dtype == "bf16" else dtype
        return float(self.peak_flops.get(key, self.peak_flops["fp32"]))

    @property
    def bandwidth(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.mem_bandwidth_gbs * 1e9

    def memory_seconds(
        self,
        bytes_moved: float,
        working_set_bytes: float = 0.0,
        hot_bytes: float = 0.0,
        streaming: bool = False,
    ) -> float:
        """Seconds to move ``bytes_moved`` at the ceilings, cache-aware.

        ``hot_bytes`` (small structures every call re-reads) come from cache. Of the rest, a
        working set that fits the last-level cache is served at cache bandwidth on repeated
        requests. A larger one hits the cache in proportion ``cache / working_set`` when
        accessed at random (the classic LRU-under-uniform-access estimate), and not at all
        when ``streaming`` (a sequential scan larger than an LRU cache evicts every line
        before its reuse). Without cache figures, or with an unknown working set (0) for the
        rest, bytes move at memory bandwidth.
        """
        if not (self.cache_mb and self.cache_bandwidth_gbs):
            return bytes_moved / self.bandwidth
        cache_bw = self.cache_bandwidth_gbs * 1e9
        hot = min(max(hot_bytes, 0.0), bytes_moved)
        cold = bytes_moved - hot
        if working_set_bytes <= 0:
            return hot / cache_bw + cold / self.bandwidth
        cache_bytes = self.cache_mb * 2**20
        if streaming:
            hit = 1.0 if working_set_bytes <= cache_bytes else 0.0
        else:
            hit = min(1.0, cache_bytes / working_set_bytes)
        return hot / cache_bw + cold * (hit / cache_bw + (1.0 - hit) / self.bandwidth)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def builtin_path() -> Path:
    """Path of the shipped ``hardware.yaml``."""
    return Path(str(resources.files("frugalrec.cost").joinpath("hardware.yaml")))


def load_profiles(
    extra_path: str | os.PathLike[str] | None = None,
    *,
    ceilings: Ceilings | None = None,
    measure_local: bool = True,
    local_usd_per_hour: float | None = None,
) -> dict[str, HardwareProfile]:
    """All profiles: the shipped YAML, then ``$FRUGALREC_HARDWARE`` files, then ``extra_path``.

    Profiles marked ``measured: true`` (``local``) take cores, memory, bandwidth and fp32
    FLOP/s from ``ceilings``, else from :func:`measure_ceilings` (cached; about 5 s the first
    time) when ``measure_local``, else from a cached measurement; without any measurement they
    are left out. ``local_usd_per_hour`` (or ``$FRUGALREC_LOCAL_USD_PER_HOUR``) overrides the
    price of measured profiles. Raises :class:`HardwareProfileError` naming file and field.
    """
    paths: list[Path] = [builtin_path()]
    env = os.environ.get(ENV_PATHS, "")
    paths += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    if extra_path is not None:
        paths.append(Path(extra_path))
    raw: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in paths:
        for name, entry in _read_file(path).items():
            raw[name] = (path, entry)

    price_override = local_usd_per_hour
    env_price = os.environ.get(ENV_LOCAL_PRICE)
    if price_override is None and env_price:
        try:
            price_override = float(env_price)
        except ValueError as exc:
            raise HardwareProfileError(
                f"{ENV_LOCAL_PRICE}={env_price!r}: usd_per_hour must be a number"
            ) from exc

    out: dict[str, HardwareProfile] = {}
    for name, (path, entry) in raw.items():
        if entry.get("measured"):
            c = ceilings or (measure_ceilings() if measure_local else cached_ceilings())
            if c is None:
                continue
            out[name] = measured_profile(name, entry, c, path, price_override)
        else:
            out[name] = _profile(name, entry, path)
    return out


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise HardwareProfileError(f"{path}: cannot read hardware profiles ({exc})") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HardwareProfileError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise HardwareProfileError(f"{path}: expected a top-level 'profiles:' mapping")
    profiles: dict[str, dict[str, Any]] = {}
    for name, entry in doc["profiles"].items():
        where = f"{path}: profiles.{name}"
        if not isinstance(entry, dict):
            raise HardwareProfileError(f"{where}: expected a mapping of fields")
        unknown = sorted(set(entry) - _ALLOWED)
        if unknown:
            raise HardwareProfileError(
                f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(_ALLOWED))})"
            )
        profiles[str(name)] = entry
    return profiles


def _number(entry: dict[str, Any], key: str, where: str, *, allow_zero: bool = False) -> float:
    if key not in entry or entry[key] is None:
        raise HardwareProfileError(f"{where}.{key}: missing")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HardwareProfileError(f"{where}.{key}: must be a number, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        sign = "non-negative" if allow_zero else "positive"
        raise HardwareProfileError(f"{where}.{key}: must be {sign}, got {value!r}")
    return float(value)


def _sources(entry: dict[str, Any], where: str, required: tuple[str, ...]) -> dict[str, str]:
    sources = entry.get("sources")
    if not isinstance(sources, dict):
        raise HardwareProfileError(f"{where}.sources: missing (every figure needs a source)")
    for key in required:
        text = sources.get(key)
        if not isinstance(text, str) or not text.strip():
            raise HardwareProfileError(f"{where}.sources.{key}: missing source for {key}")
    return {str(k): str(v) for k, v in sources.items()}


def _kind(entry: dict[str, Any], where: str) -> str:
    kind = entry.get("kind")
    if kind not in KINDS:
        raise HardwareProfileError(f"{where}.kind: must be one of {KINDS}, got {kind!r}")
    return str(kind)


def _profile(name: str, entry: dict[str, Any], path: Path) -> HardwareProfile:
    where = f"{path}: profiles.{name}"
    kind = _kind(entry, where)
    cores = _number(entry, "cores", where)
    if cores != int(cores):
        raise HardwareProfileError(f"{where}.cores: must be an integer, got {cores!r}")
    tflops = entry.get("peak_tflops")
    if not isinstance(tflops, dict):
        raise HardwareProfileError(f"{where}.peak_tflops: missing (a mapping fp32/fp16/int8)")
    bad = sorted(set(tflops) - set(DTYPES))
    if bad:
        raise HardwareProfileError(f"{where}.peak_tflops.{bad[0]}: unknown dtype (use {DTYPES})")
    peak = {"fp32": _number(tflops, "fp32", f"{where}.peak_tflops") * 1e12}
    for dt in ("fp16", "int8"):
        # A missing low-precision figure means "no faster than fp32", never "free".
        peak[dt] = (
            _number(tflops, dt, f"{where}.peak_tflops") * 1e12 if dt in tflops else peak["fp32"]
        )
    host = entry.get("host_vcpus")
    if host is not None:
        host = int(_number(entry, "host_vcpus", where))
    cache = {k: _number(entry, k, where) if k in entry else None for k in _OPTIONAL_FIGURES}
    if (cache["cache_mb"] is None) != (cache["cache_bandwidth_gbs"] is None):
        raise HardwareProfileError(
            f"{where}.cache_bandwidth_gbs: cache_mb and cache_bandwidth_gbs go together"
        )
    given = tuple(k for k in _OPTIONAL_FIGURES if cache[k] is not None)
    launch = {k: _number(entry, k, where, allow_zero=True) for k in _LAUNCH_FIGURES if k in entry}
    if launch and len(launch) != len(_LAUNCH_FIGURES):
        missing = next(k for k in _LAUNCH_FIGURES if k not in launch)
        raise HardwareProfileError(f"{where}.{missing}: {', '.join(_LAUNCH_FIGURES)} go together")
    given += tuple(launch)
    return HardwareProfile(
        name=name,
        kind=kind,
        cores=int(cores),
        memory_gb=_number(entry, "memory_gb", where),
        mem_bandwidth_gbs=_number(entry, "mem_bandwidth_gbs", where),
        peak_flops=peak,
        usd_per_hour=_number(entry, "usd_per_hour", where, allow_zero=True),
        sources=_sources(entry, where, _FIGURES + given),
        description=str(entry.get("description", "")),
        instance=str(entry.get("instance", "")),
        host_vcpus=host,
        measured=False,
        cache_mb=cache["cache_mb"],
        cache_bandwidth_gbs=cache["cache_bandwidth_gbs"],
        launch_us=launch.get("launch_us"),
        kernel_us=launch.get("kernel_us"),
        sync_us=launch.get("sync_us"),
    )


def measured_profile(
    name: str,
    entry: dict[str, Any],
    ceilings: Ceilings,
    path: Path | None = None,
    usd_per_hour: float | None = None,
) -> HardwareProfile:
    """A profile whose ceilings come from a measurement on this machine."""
    import psutil

    where = f"{path or '<memory>'}: profiles.{name}"
    kind = _kind(entry, where)
    sources = _sources(entry, where, () if usd_per_hour is not None else ("usd_per_hour",))
    if usd_per_hour is None:
        price = _number(entry, "usd_per_hour", where, allow_zero=True)
    else:
        price = float(usd_per_hour)
        sources["usd_per_hour"] = "user override (argument or $" + ENV_LOCAL_PRICE + ")"
    fp32 = ceilings.peak_flops_fp32
    int8_factor, int8_note = _int8_factor()
    cpu_note = f"{ceilings.cpu_model}, {ceilings.threads} threads, {ceilings.measured_at}"
    sources.update(
        {
            "cores": "threads in use (frugalrec._threads.thread_count)",
            "memory_gb": "psutil.virtual_memory().total",
            "mem_bandwidth_gbs": (
                f"measured: multi-threaded array copy, read+write bytes ({cpu_note})"
            ),
            "peak_tflops": (
                f"fp32 measured: numpy sgemm {ceilings.gemm_n}^2 ({cpu_note}); fp16 assumed equal "
                f"to fp32 (no fp16 arithmetic units on this CPU path); int8 {int8_note}"
            ),
        }
    )
    has_cache = ceilings.cache_gbs > 0 and ceilings.llc_bytes > 0
    if has_cache:
        sources["cache_mb"] = "sysfs /sys/devices/system/cpu/cpu0/cache (largest level)"
        sources["cache_bandwidth_gbs"] = (
            f"measured: repeated copy of arrays within the last-level cache ({cpu_note})"
        )
    return HardwareProfile(
        name=name,
        kind=kind,
        cores=int(ceilings.threads),
        memory_gb=psutil.virtual_memory().total / 2**30,
        mem_bandwidth_gbs=ceilings.mem_bandwidth_gbs,
        peak_flops={"fp32": fp32, "fp16": fp32, "int8": fp32 * int8_factor},
        usd_per_hour=price,
        sources=sources,
        description=str(entry.get("description", "")),
        instance=str(entry.get("instance", "")),
        host_vcpus=int(ceilings.threads),
        measured=True,
        cache_mb=ceilings.llc_bytes / 2**20 if has_cache else None,
        cache_bandwidth_gbs=ceilings.cache_gbs if has_cache else None,
    )


def _int8_factor() -> tuple[float, str]:
    """Assumed int8/fp32 throughput ratio from the CPU's instruction set (not measured)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "amx_int8" in flags:
        return 8.0, "assumed 8x fp32 (AMX int8 present; not measured)"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return 4.0, "assumed 4x fp32 (VNNI int8 dot products; not measured)"
    return 2.0, "assumed 2x fp32 (AVX2 vpmaddubsw; not measured)"
