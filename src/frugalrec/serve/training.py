"""Model versions for serving: fold stored events into the training data, fit, save, load.

Training rows are the dataset's users (by pseudonym; forgotten users left out) followed by
users that exist only in stored events. Per (user, item) the latest signal wins: a like after
a dislike re-adds the item, a dislike removes it, even from the dataset's own history.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from frugalrec._io import write_json_atomic
from frugalrec.data.dataset import Dataset
from frugalrec.models.base import ModelArtifactError, Recommender, load_model
from frugalrec.models.registry import model_class
from frugalrec.pipeline.config import PipelineConfig
from frugalrec.serve.store import ModelVersion, Store, StoredEvent

# Ratings at or above this value count as positive feedback, below it as a dislike.
POSITIVE_RATING = 3.0


def is_positive(event_type: str, value: float | None) -> bool:
    """Whether an event adds its item to the user's history (else it removes it)."""
    if event_type == "dislike":
        return False
    if event_type == "rate":
        return value is not None and value >= POSITIVE_RATING
    return True


@dataclass
class TrainedModel:
    """A fitted model plus the pseudonym of each of its history rows."""

    model: Recommender
    user_rows: dict[str, int]
    n_events: int
    version: int = 0
    sha256: str = ""
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def training_matrix(
    dataset: Dataset,
    dataset_pseudonyms: np.ndarray,
    events: Sequence[StoredEvent],
    forgotten: set[str],
) -> tuple[sp.csr_matrix, list[str]]:
    """Binary CSR [n_rows, n_items] and the pseudonym of each row."""
    rows: list[str] = list(dataset_pseudonyms)
    keep_user = np.array([p not in forgotten for p in rows], dtype=bool)
    base_mask = keep_user[dataset.user]
    frames = [
        pd.DataFrame(
            {
                "row": dataset.user[base_mask].astype(np.int64),
                "col": dataset.item[base_mask].astype(np.int64),
                "pos": True,
            }
        )
    ]
    if events:
        row_of = {p: i for i, p in enumerate(rows)}
        for e in events:
            if e.user not in row_of:
                row_of[e.user] = len(rows)
                rows.append(e.user)
        ev = pd.DataFrame(
            {
                "row": [row_of[e.user] for e in events],
                "col": dataset.items_vocab.index([e.item for e in events]),
                "pos": [is_positive(e.type, e.value) for e in events],
            }
        )
        frames.append(ev[ev["col"] >= 0])
    pairs = pd.concat(frames, ignore_index=True)
    # Later rows are later signals: events follow the dataset and are in commit order.
    pairs = pairs.drop_duplicates(["row", "col"], keep="last")
    pairs = pairs[pairs["pos"]]
    X = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
        shape=(len(rows), dataset.n_items),
        dtype=np.float32,
    )
    return X, rows


def catalogue_vectors(config: PipelineConfig, dataset: Dataset) -> tuple[Any, np.ndarray | None]:
    """(encoder, item vectors float32 [n_items, d]) of ``config``'s encoder tier through the
    embedding cache, or (None, None) when the config has no encoder."""
    if config.encoder == "none":
        return None, None
    from frugalrec.text import load_encoder
    from frugalrec.text.features import encode_items

    name = config.encoder
    if config.finetune:
        # As bench measures it: fine-tuned on a seeded random split's training rows, valid
        # picks the epoch; cached by data and config, so a restart reuses the weights.
        from frugalrec.data.splits import make_split
        from frugalrec.evaluate.finetune import finetune_for_split
        from frugalrec.text.finetune import FinetuneConfig

        split = make_split(dataset, "random", seed=42)
        fcfg = FinetuneConfig.from_dict(config.finetune)
        name = finetune_for_split(split, config.encoder, config=fcfg).name
    encoder = load_encoder(name, None if config.backend == "none" else config.backend)
    return encoder, encode_items(dataset, encoder=encoder)


def fit_model(
    config: PipelineConfig,
    dataset: Dataset,
    dataset_pseudonyms: np.ndarray,
    events: Sequence[StoredEvent],
    forgotten: set[str],
    item_vectors: np.ndarray | None = None,
) -> TrainedModel:
    """Fit ``config.model`` on the dataset plus stored events."""
    X, rows = training_matrix(dataset, dataset_pseudonyms, events, forgotten)
    cls = model_class(config.model)
    model = cls(cls.config_cls.from_dict(config.model_config))
    if X.nnz == 0:
        raise ValueError("nothing to train on: the dataset and the event store are empty")
    model.fit(X, item_vectors=item_vectors)
    return TrainedModel(model, {p: i for i, p in enumerate(rows)}, len(events))


def save_version(trained: TrainedModel, model_dir: Path, store: Store) -> TrainedModel:
    """Save the model and its row pseudonyms, register a new version in the store."""
    target = model_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    trained.model.save(target)
    rows = sorted(trained.user_rows, key=trained.user_rows.__getitem__)
    write_json_atomic(target / "users.json", {"rows": rows})
    meta = json.loads((target / "model.json").read_text())
    sha = str(meta["arrays_sha256"])
    trained.version = store.register_model(str(target), sha, trained.model.name, trained.n_events)
    trained.sha256, trained.path = sha, str(target)
    return trained


def load_version(entry: ModelVersion) -> TrainedModel:
    """Load one registered version, verifying its checksum against the registry."""
    path = Path(entry.path)
    model = load_model(path)  # verifies arrays.npz against model.json
    meta = json.loads((path / "model.json").read_text())
    if meta.get("arrays_sha256") != entry.sha256:
        raise ModelArtifactError(
            f"{path}: checksum differs from the registry (version {entry.version})"
        )
    try:
        rows = json.loads((path / "users.json").read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelArtifactError(f"{path}/users.json: missing or corrupted ({exc})") from exc
    if len(rows) != model.n_users_:
        raise ModelArtifactError(f"{path}/users.json: {len(rows)} rows, model has {model.n_users_}")
    return TrainedModel(
        model,
        {p: i for i, p in enumerate(rows)},
        entry.n_events,
        version=entry.version,
        sha256=entry.sha256,
        path=str(path),
    )
