"""The Ray engine: batch stages as Ray Data ``map_batches`` over actor pools.

Each actor holds one copy of what it needs (the encoder, or the fitted model shipped as its
``save`` artifact: ``model.json`` + ``arrays.npz`` bytes through the object store, never a
pickle) and runs with one BLAS/torch/ONNX thread, so ``workers`` actors use ``workers`` cores
and nothing is oversubscribed.

Why results are identical to the local engine:

* encoding: the int8 backends quantise activations per batch, so a text's vector depends on
  its batch-mates. The driver therefore sorts texts exactly as ``TextEncoder.encode`` does
  (longest first, stable) and cuts the sorted list into blocks that are whole multiples of
  the encoder batch, so every encoder batch on an actor holds the same texts as locally;
* recommendation: users are cut into shards that are whole multiples of the model's scoring
  chunk, so each actor scores the same user chunks as ``Recommender.recommend`` does locally.

Ray is started locally (``RAY_USAGE_STATS_ENABLED=0``, no dashboard, a modest object store)
unless ``address`` names an existing cluster; a Ray this engine started is shut down by
:meth:`RayEngine.close`.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalrec.engines.base import Engine
from frugalrec.models.base import CHUNK_USERS, Recommender

# One thread per actor: the env is inherited by worker processes before numpy loads there.
WORKER_ENV = {
    "FRUGALREC_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}
DEFAULT_OBJECT_STORE_MB = 500
_MAX_BLOCKS_PER_SHARD = 64


def _ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the ray extra is installed by make
        raise RuntimeError(
            "--engine ray needs the ray extra: pip install 'frugalrec[ray]'"
        ) from exc
    return ray


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
) -> bool:
    """Connect to ``address`` or start a local Ray; returns True when this call started it
    (and so should shut it down). An already-initialised Ray is reused as is."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": WORKER_ENV},
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(
            num_cpus=num_cpus or len(os.sched_getaffinity(0)),
            include_dashboard=False,
            object_store_memory=int(object_store_mb) * 2**20,
            **kwargs,
        )
    _quiet_ray_data()
    return True


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _one_thread() -> None:
    from frugalrec._threads import configure_threads

    for var, value in WORKER_ENV.items():
        os.environ.setdefault(var, value)
    configure_threads(1)


class _EncodeActor:
    """Holds one encoder; encodes one length-sorted block of texts per call."""

    def __init__(self, tier: str, backend: str | None, batch_size: int) -> None:
        t0 = time.perf_counter()
        _one_thread()
        from frugalrec.text.encoders import load_encoder

        self.encoder = load_encoder(tier, backend)
        self.batch_size = batch_size
        self.startup_s = time.perf_counter() - t0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        vecs = self.encoder.encode(batch["text"].tolist(), batch_size=self.batch_size)
        return _with_timing({"pos": batch["pos"], "vector": vecs}, time.perf_counter() - t0, self)


class _RecommendActor:
    """Holds one fitted model (loaded from its save artifact); ranks one user shard per call."""

    def __init__(
        self, artifact: list[Any], k: int, exclude_seen: bool, items: np.ndarray | None
    ) -> None:
        t0 = time.perf_counter()
        _one_thread()
        import ray

        from frugalrec.models.base import load_model

        files = artifact[0]
        if isinstance(files, ray.ObjectRef):
            files = ray.get(files)
        with tempfile.TemporaryDirectory(prefix="frugalrec-model-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            self.model = load_model(tmp)
        self.k, self.exclude_seen, self.items = k, exclude_seen, items
        self.startup_s = time.perf_counter() - t0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        ids, vals = self.model.recommend(
            batch["user"], k=self.k, exclude_seen=self.exclude_seen, items=self.items
        )
        return _with_timing(
            {"pos": batch["pos"], "items": ids, "scores": vals}, time.perf_counter() - t0, self
        )


def _with_timing(out: dict[str, np.ndarray], busy_s: float, actor: Any) -> dict[str, np.ndarray]:
    # Per-row shares of the busy time, and the actor's start-up once (on its first batch), so
    # the driver can split wall time into start-up, compute and the rest (scheduling, transfer).
    n = len(out["pos"])
    out["busy_s"] = np.full(n, busy_s / max(n, 1), dtype=np.float64)
    startup = np.zeros(n, dtype=np.float64)
    if n and actor.startup_s is not None:
        startup[0] = actor.startup_s
        actor.startup_s = None
    out["startup_s"] = startup
    return out


def _shard_size(n: int, unit: int, workers: int) -> int:
    """Rows per block: a whole multiple of ``unit``, about four blocks per worker."""
    per = math.ceil(n / (unit * workers * 4)) if n else 1
    return unit * int(np.clip(per, 1, _MAX_BLOCKS_PER_SHARD))


class RayEngine(Engine):
    """Batch stages on Ray actor pools (``workers`` actors of one CPU and one thread each)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
    ) -> None:
        t0 = time.perf_counter()
        self.address = address
        self._started = start_ray(address, workers, object_store_mb)
        ray = _ray()
        if not self._started:
            _quiet_ray_data()
        self.init_seconds = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(workers or cpus, cpus))
        self.last_run: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "workers": self.workers,
            "address": self.address or "local",
            "init_seconds": self.init_seconds,
        }

    def cluster_address(self) -> str:
        """The GCS address other processes pass to ``ray.init(address=...)`` to join."""
        return str(_ray().get_runtime_context().gcs_address)

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def _run(
        self,
        frames: list[pd.DataFrame],
        actor: type,
        ctor: dict[str, Any],
        batch_size: int,
    ) -> list[dict[str, np.ndarray]]:
        import ray.data

        t0 = time.perf_counter()
        ds = ray.data.from_pandas(frames).map_batches(
            actor,
            fn_constructor_kwargs=ctor,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(frames))),
            num_cpus=1,
        )
        out = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
        wall = time.perf_counter() - t0
        n = sum(len(b["pos"]) for b in out)
        self.last_run = {
            "rows": n,
            "blocks": len(frames),
            "block_rows": batch_size,
            "workers": min(self.workers, len(frames)),
            "wall_s": wall,
            "busy_s": float(sum(b["busy_s"].sum() for b in out)),
            "startup_s": [float(x) for b in out for x in b["startup_s"][b["startup_s"] > 0]],
        }
        return out

    def encode(
        self, texts: Sequence[str], tier: str, backend: str | None = None, batch_size: int = 64
    ) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        n = len(texts)
        arr = np.asarray(texts, dtype=object)
        lengths = np.fromiter(map(len, arr), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # the order TextEncoder.encode uses
        size = _shard_size(n, batch_size, self.workers)
        frames = [
            pd.DataFrame({"pos": order[s : s + size], "text": arr[order[s : s + size]]})
            for s in range(0, n, size)
        ]
        if not frames:
            from frugalrec.text.encoders import load_encoder

            return load_encoder(tier, backend).encode([], batch_size=batch_size)
        parts = self._run(
            frames,
            _EncodeActor,
            {"tier": tier, "backend": backend, "batch_size": batch_size},
            size,
        )
        out = np.empty((n, parts[0]["vector"].shape[1]), dtype=np.float32)
        for b in parts:
            out[b["pos"]] = b["vector"]
        return out

    def recommend(
        self,
        model: Recommender,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        model._check_fitted()
        ray = _ray()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        n = len(users)
        ids = np.full((n, k), -1, dtype=np.int64)
        vals = np.full((n, k), -np.inf, dtype=np.float32)
        if n == 0:
            return ids, vals
        with tempfile.TemporaryDirectory(prefix="frugalrec-model-") as tmp:
            model.save(tmp)
            files = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
        size = _shard_size(n, CHUNK_USERS, self.workers)
        pos = np.arange(n)
        frames = [
            pd.DataFrame({"pos": pos[s : s + size], "user": users[s : s + size]})
            for s in range(0, n, size)
        ]
        cand = None if items is None else np.asarray(items, dtype=np.int64)
        ctor = {"artifact": [ray.put(files)], "k": k, "exclude_seen": exclude_seen, "items": cand}
        for b in self._run(frames, _RecommendActor, ctor, size):
            ids[b["pos"]] = b["items"]
            vals[b["pos"]] = b["scores"]
        return ids, vals
