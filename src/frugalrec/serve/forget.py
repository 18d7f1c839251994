"""Forget a user completely, against the store (``frugalrec forget`` and offline use).

Steps: (1) delete the user's events and user row and mark the pseudonym forgotten, in one
transaction; (2) fit and register a new model version without them (the dataset's own rows
of a forgotten pseudonym are left out of every later fit); (3) delete the files of older
model versions that still hold the user's history (their registry rows stay, and a service
starting later skips them as unloadable); (4) rewrite the store so the deleted rows do not
linger in its files (:meth:`Store.compact`: SQLite ``VACUUM`` with ``secure_delete`` and a
truncating checkpoint; PostgreSQL ``VACUUM FULL`` and a ``CHECKPOINT``). A running service
keeps its in-memory caches: use
``DELETE /v1/users/{id}`` there (it invalidates them at once), or restart it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

from frugalrec.data.dataset import Dataset
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.privacy.pseudonyms import Pseudonymiser
from frugalrec.serve.store import Store
from frugalrec.serve.training import catalogue_vectors, fit_model, save_version


@dataclass
class ForgetReport:
    """What forgetting one user did (never carries the raw id)."""

    pseudonym: str
    events_deleted: int
    new_version: int | None = None
    purged_versions: list[int] = field(default_factory=list)
    versions_still_holding_user: list[int] = field(default_factory=list)
    store_compacted: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def versions_holding(store: Store, pseudonyms: str | Collection[str]) -> list[int]:
    """Registered model versions whose saved artifact lists any of ``pseudonyms`` with a
    non-empty training history (an empty row is harmless: it carries no interactions).
    Each version's files are read once, however many pseudonyms are asked about."""
    import numpy as np

    wanted = {pseudonyms} if isinstance(pseudonyms, str) else set(pseudonyms)
    out = []
    for entry in store.models():
        path = Path(entry.path)
        try:
            rows = json.loads((path / "users.json").read_text())["rows"]
        except (OSError, ValueError, KeyError):
            continue  # gone or unreadable: holds nothing that can be served
        held = [i for i, p in enumerate(rows) if p in wanted]
        if not held:
            continue
        try:
            with np.load(path / "arrays.npz", allow_pickle=False) as z:
                indptr = z["history_indptr"]
        except (OSError, ValueError, KeyError):
            continue
        if any(row + 1 < len(indptr) and indptr[row + 1] > indptr[row] for row in held):
            out.append(entry.version)
    return out


def purge_versions(store: Store, versions: Collection[int]) -> None:
    """Delete the files of these registered versions (their registry rows stay; a service
    starting later skips them as unloadable)."""
    by_version = {m.version: m for m in store.models()}
    for v in versions:
        shutil.rmtree(by_version[v].path, ignore_errors=True)


def forget_user(
    store: Store,
    pseudonymiser: Pseudonymiser,
    user_id: str,
    *,
    dataset: Dataset | None = None,
    config: PipelineConfig | None = None,
    model_dir: Path | None = None,
    purge_old_versions: bool = True,
    compact: bool = True,
) -> ForgetReport:
    """Forget raw ``user_id``: events, then (with ``dataset``/``config``/``model_dir``) a new
    model version without them, then older artifacts holding their history, then (with
    ``compact``, :meth:`Store.compact`) the deleted rows' bytes."""
    p = pseudonymiser.pseudonym(user_id)
    report = ForgetReport(p, store.forget_user(p))
    if dataset is not None and config is not None and model_dir is not None:
        trained = fit_model(
            config,
            dataset,
            pseudonymiser.pseudonyms(dataset.users_vocab.ids),
            store.all_events(),
            store.forgotten_users(),
            # A text-aware model refits on the same item vectors the service uses.
            catalogue_vectors(config, dataset)[1],
        )
        report.new_version = save_version(trained, Path(model_dir), store).version
    holding = versions_holding(store, p)
    if purge_old_versions and report.new_version is not None:
        purge_versions(store, holding)
        report.purged_versions.extend(holding)
        holding = versions_holding(store, p)
    report.versions_still_holding_user = holding
    if compact:
        report.store_compacted = store.compact()
    return report
