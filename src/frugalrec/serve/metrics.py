"""Prometheus metrics and the live latency windows behind the page's cost panel.

Each app has its own ``CollectorRegistry``, so several apps (tests) never collide.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_WINDOW = 2048


class ServiceMetrics:
    """Request latency per endpoint and tier, cache hits, events stored, model version."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "frugalrec_request_seconds",
            "Request latency by endpoint (route template) and tier",
            ["endpoint", "method", "tier", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "frugalrec_cache_requests",
            "Result-cache look-ups by outcome",
            ["result"],
            registry=self.registry,
        )
        self.cache_hit_ratio = Gauge(
            "frugalrec_cache_hit_ratio", "Result-cache hits / look-ups", registry=self.registry
        )
        self.events = Counter(
            "frugalrec_events_stored",
            "Events durably stored by this process",
            registry=self.registry,
        )
        self.events_in_store = Gauge(
            "frugalrec_events_in_store", "Events in the store", registry=self.registry
        )
        self.model_version = Gauge(
            "frugalrec_model_version", "Model version being served", registry=self.registry
        )
        self.retrains = Counter(
            "frugalrec_retrains",
            "Background retrains by outcome",
            ["result"],
            registry=self.registry,
        )
        self.llm_fallbacks = Counter(
            "frugalrec_llm_fallbacks",
            "Requests answered from the cheap stage because the LLM failed, by reason "
            "(worker_crash:SIGSEGV, timeout, oom, restarting, error:...)",
            ["reason"],
            registry=self.registry,
        )
        self._hits = 0
        self._lookups = 0
        self._windows: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=_WINDOW))
        self._lock = threading.Lock()

    def observe(self, endpoint: str, method: str, tier: str, status: int, seconds: float) -> None:
        self.latency.labels(endpoint, method, tier, str(status)).observe(seconds)
        if tier != "none" and status < 400:
            with self._lock:
                self._windows[tier].append(seconds * 1e3)

    def cache_lookup(self, hit: bool) -> None:
        self.cache.labels("hit" if hit else "miss").inc()
        with self._lock:
            self._lookups += 1
            self._hits += int(hit)
            self.cache_hit_ratio.set(self._hits / self._lookups)

    def latency_summary(self) -> dict[str, dict[str, float]]:
        """p50/p99/count (ms) per tier over the last requests (the page's cost panel)."""
        with self._lock:
            windows = {t: np.array(w, dtype=np.float64) for t, w in self._windows.items() if w}
        return {
            tier: {
                "p50_ms": float(np.percentile(w, 50)),
                "p99_ms": float(np.percentile(w, 99)),
                "count": len(w),
            }
            for tier, w in sorted(windows.items())
        }

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
