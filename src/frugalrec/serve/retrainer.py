"""Model versions: the first one served, background retrains with an atomic swap, and the
clean-up a forget asks of later versions (purging older artifacts, compacting the store).

A retrain fits a new version on the dataset plus every stored event and hands it to
``swap`` (one assignment of the serving version): requests hold a reference to the version
they started with, so none is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from frugalrec.data.dataset import Dataset
from frugalrec.models.base import ModelArtifactError
from frugalrec.models.registry import model_class
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.serve.errors import ApiError
from frugalrec.serve.history import UserHistory
from frugalrec.serve.metrics import ServiceMetrics
from frugalrec.serve.settings import ServeSettings
from frugalrec.serve.store import Store
from frugalrec.serve.training import TrainedModel, fit_model, load_version, save_version

log = logging.getLogger("frugalrec.serve")


@dataclass
class RetrainJob:
    state: str = "idle"
    started_at: float | None = None
    finished_at: float | None = None
    new_version: int | None = None
    error: str | None = None


class Retrainer:
    """Fits, registers and swaps in model versions; at most one retrain at a time."""

    def __init__(
        self,
        settings: ServeSettings,
        config: PipelineConfig,
        dataset: Dataset,
        dataset_pseudonyms: np.ndarray,
        item_vectors: np.ndarray | None,
        store: Store,
        history: UserHistory,
        metrics: ServiceMetrics,
        swap: Callable[[TrainedModel], Any],
    ) -> None:
        self.settings, self.config, self.dataset = settings, config, dataset
        self.dataset_pseudonyms, self.item_vectors = dataset_pseudonyms, item_vectors
        self.store, self.history, self.metrics, self.swap = store, history, metrics, swap
        # A store whose deleted rows linger until rewritten (PostgreSQL) is compacted after
        # the first retrain that follows a forget; one that may hold rows from before a
        # restart counts as pending.
        self._compacted_at_forget = (
            -1 if store.needs_compaction_after_forget and history.forgotten else 0
        )
        self._lock = threading.Lock()
        self.job = RetrainJob()

    def initial_model(self) -> TrainedModel:
        """The newest registered version that matches the config and loads intact, else a
        fresh fit on the dataset plus stored events."""
        cls = model_class(self.config.model)
        wanted = cls.config_cls.from_dict(self.config.model_config)
        for entry in reversed(self.store.models()):
            if entry.model != self.config.model:
                continue
            try:
                trained = load_version(entry)
            except (ModelArtifactError, OSError, ValueError, KeyError) as exc:
                log.warning("model version %d refused: %s", entry.version, exc)
                continue
            if trained.model.config == wanted and trained.model.n_items_ == self.dataset.n_items:
                return trained
        return self.fit_and_register()

    def fit_and_register(self) -> TrainedModel:
        for _ in range(3):
            seen_forgets = self.history.forget_count
            trained = fit_model(
                self.config,
                self.dataset,
                self.dataset_pseudonyms,
                self.store.all_events(),
                self.store.forgotten_users(),
                self.item_vectors,
            )
            # A user forgotten while we trained must not live on in the new version.
            if seen_forgets == self.history.forget_count:
                break
        return save_version(trained, self.settings.resolved_model_dir(), self.store)

    def start(self) -> RetrainJob:
        """Start a background retrain (409 while one runs)."""
        with self._lock:
            if self.job.state == "running":
                raise ApiError(409, "conflict", "a retrain is already running")
            self.job = RetrainJob(state="running", started_at=time.time())
        threading.Thread(target=self._run, name="frugalrec-retrain", daemon=True).start()
        return self.job

    def _run(self) -> None:
        job = self.job
        try:
            trained = self.fit_and_register()
            self.swap(trained)  # the atomic swap
            self.history.results.clear()
            self._purge_forgotten_versions(trained.version)
            self._compact_after_forget()
            job.new_version = trained.version
            job.state = "done"
            self.metrics.retrains.labels("done").inc()
        except Exception as exc:  # reported through the job status, the old model serves on
            log.exception("retrain failed")
            job.error = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
            self.metrics.retrains.labels("failed").inc()
        finally:
            job.finished_at = time.time()

    def _purge_forgotten_versions(self, current: int) -> None:
        """Delete the files of older model versions that still hold a forgotten user's
        history (the new version, fitted without them, is serving now)."""
        from frugalrec.serve.forget import purge_versions, versions_holding

        forgotten = self.store.forgotten_users()
        if not forgotten:
            return
        holding = versions_holding(self.store, forgotten)
        purge_versions(self.store, [v for v in holding if v != current])

    def _compact_after_forget(self) -> None:
        """Rewrite the store once per retrain that follows a forget, where deleted rows
        linger (PostgreSQL; SQLite zeroes them at the forget already). A failure is logged
        and retried at the next retrain: the new model already serves."""
        if not self.store.needs_compaction_after_forget:
            return
        seen = self.history.forget_count
        if seen == self._compacted_at_forget:
            return
        try:
            if self.store.compact():
                self._compacted_at_forget = seen
            else:
                log.warning("store compaction after forget deferred (busy); next retrain retries")
        except Exception as exc:  # never fail a retrain whose model is already serving
            log.warning("store compaction after forget failed (%s); next retrain retries", exc)
