"""SASRec (Kang & McAuley, ICDM 2018) over item ids: the attention model's causal
``next`` objective with no text at all.

The network is :class:`~frugalrec.models.attention.AttentionRecommender`'s: causal pre-LN
transformer blocks with learned positions over the user's last ``max_len`` items (ordered by
timestamp when fit gets a Dataset with timestamps), every position predicting the next
item, full softmax over warm items by default. Here every item's text vector is the same
constant, so item identity lives in the ID embeddings alone: a model any catalogue can use,
with or without item text. With text vectors, use ``attention`` with ``objective="next"``.
On an external split without timestamps the order is by item index, which is no sequence:
use it where the data has times (``temporal``, ``leave-one-out``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from frugalrec.data.dataset import Dataset
from frugalrec.models.attention import AttentionConfig, AttentionRecommender
from frugalrec.models.registry import register_model


@dataclasses.dataclass(frozen=True, kw_only=True)
class SASRecConfig(AttentionConfig):
    """SASRec defaults (two blocks, 50 positions, dropout 0.2) on the attention config;
    ``id_embeddings`` must stay on (they are the only item representation here)."""

    objective: str = "next"
    layers: int = 2
    dropout: float = 0.2
    epochs: int = 40


class SASRecRecommender(AttentionRecommender):
    name = "sasrec"
    config_cls = SASRecConfig
    uses_item_vectors = False

    def _fit(
        self, X: sp.csr_matrix, dataset: Dataset | None, item_vectors: np.ndarray | None
    ) -> None:
        cfg: SASRecConfig = self.config  # type: ignore[assignment]
        if not cfg.id_embeddings:
            raise ValueError("sasrec: id_embeddings must be on (items have no other vectors)")
        # One constant "text" feature: the adaptor adds the same vector to every item.
        super()._fit(X, dataset, np.ones((X.shape[1], 1), dtype=np.float32))


# A fit takes about a minute on two cores on ml-100k; the defaults are SASRec's own.
register_model(SASRecRecommender, {})
