"""Fine-tune the text encoder for one split: training interactions in, valid NDCG@10 decides.

The glue between :mod:`frugalrec.text.finetune` (which knows nothing of models or metrics)
and the evaluation protocol: the early-stopping criterion is the valid NDCG@10 of a
``textmap`` model (default ``l2``) fitted on the split's training interactions on the
candidate vectors, at the best ``l2`` of its tuning grid (so a fine-tuned and a frozen encoder
are compared as ``evaluate`` would tune them), measured on valid only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from frugalrec.data.splits import Split
from frugalrec.evaluate.protocol import evaluate_model
from frugalrec.text.features import attribute_block
from frugalrec.text.finetune import FinetuneConfig, FinetuneResult, finetune_encoder
from frugalrec.text.items import item_texts


def textmap_valid_score(
    split: Split, attributes: tuple[str, ...] = ("genres",)
) -> Callable[[np.ndarray], float]:
    """``score(text_vectors float32 [n_items, d]) -> valid NDCG@10`` of textmap fitted on
    ``split``'s training interactions, best over its ``l2`` grid (attribute blocks appended
    as in :func:`~frugalrec.text.features.item_features`)."""
    from frugalrec.models.registry import GRIDS
    from frugalrec.models.textmap import TextMapRecommender

    train = split.train_dataset()
    blocks = [b for b in (attribute_block(split.dataset, c) for c in attributes) if b is not None]

    def score(vectors: np.ndarray) -> float:
        feats = np.hstack([vectors, *blocks]).astype(np.float32)
        best = -np.inf
        for l2 in GRIDS.get("textmap", {}).get("l2", [None]):
            model = (TextMapRecommender() if l2 is None else TextMapRecommender(l2=l2)).fit(
                train, item_vectors=feats
            )
            ndcg = evaluate_model(model, split, "valid", n_boot=0).metrics["ndcg@10"]
            best = max(best, float(ndcg))
        return best

    return score


def finetune_for_split(
    split: Split,
    base: str = "minilm",
    attributes: tuple[str, ...] = ("genres",),
    config: FinetuneConfig | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``split.train`` only (valid picks the epoch) and register it;
    load it with ``load_encoder(result.name, backend)``."""
    return finetune_encoder(
        base,
        item_texts(split.dataset.items),
        split.train,
        config,
        valid_score=textmap_valid_score(split, attributes),
        progress=progress,
    )
