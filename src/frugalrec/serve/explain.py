"""Template explanations grounded in evidence the model's item representation provides.

"Because you liked A and B": the history items most similar (cosine of the model's item
vectors) to each recommended item. Only catalogue items the user actually has are cited.
"""

from __future__ import annotations

import numpy as np

from frugalrec.models.base import Recommender


def item_representation(model: Recommender) -> np.ndarray | None:
    """Row-normalised float32 [n_items, d] item vectors, or None when the model has none."""
    from frugalrec._linalg import normalise_rows

    try:
        rep = model._item_representation()
    except NotImplementedError:
        return None
    return normalise_rows(np.asarray(rep, dtype=np.float32))


def explain(
    rep: np.ndarray | None,
    recommended: np.ndarray,
    history: np.ndarray,
    titles: list[str],
    item_ids: np.ndarray,
    n_evidence: int = 2,
) -> list[tuple[str, list[dict[str, object]]]]:
    """One (sentence, evidence) per recommended item index (int64 [k])."""
    if rep is None or len(history) == 0:
        reason = (
            "Popular with many users; like a few items to personalise this list."
            if len(history) == 0
            else "Ranked by the model's score for your history."
        )
        return [(reason, []) for _ in recommended]
    sims = rep[recommended] @ rep[history].T  # [k, h]
    m = min(n_evidence, sims.shape[1])
    top = np.argsort(-sims, axis=1, kind="stable")[:, :m]
    out = []
    for r in range(len(recommended)):
        ev = [
            {
                "item_id": str(item_ids[history[j]]),
                "title": titles[history[j]],
                "similarity": round(float(sims[r, j]), 4),
            }
            for j in top[r]
            if sims[r, j] > 0
        ]
        if ev:
            names = " and ".join(f"“{e['title']}”" for e in ev)
            out.append((f"Because you liked {names}.", ev))
        else:
            out.append(("Ranked by the model's score for your history.", []))
    return out
