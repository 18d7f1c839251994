"""Model names -> classes, and the tuning grids used by ``frugalrec evaluate``."""

from __future__ import annotations

from typing import Any

from frugalrec.models.base import Recommender
from frugalrec.models.blend import BlendRecommender
from frugalrec.models.ease import DLAERecommender, EASERecommender, EDLAERecommender
from frugalrec.models.graph import GFCFRecommender, RP3BetaRecommender
from frugalrec.models.implicit_mf import ALSRecommender, BPRRecommender
from frugalrec.models.itemknn import ItemKNNRecommender
from frugalrec.models.pop import PopRecommender
from frugalrec.models.textmap import ContentRecommender, HybridRecommender, TextMapRecommender

_MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        PopRecommender,
        ItemKNNRecommender,
        EASERecommender,
        EDLAERecommender,
        DLAERecommender,
        GFCFRecommender,
        RP3BetaRecommender,
        ALSRecommender,
        BPRRecommender,
        ContentRecommender,
        TextMapRecommender,
        HybridRecommender,
        BlendRecommender,
    )
}

# Half-lives in interactions (0 = off). Dropped from a grid when the data has no
# timestamps (run_models), since recency then cannot be computed.
RECENCY_GRID: list[Any] = [0.0, 20.0, 80.0]

# Grids chosen on ml-100k's valid split; each stays small enough that tuning all five
# models fits the 2-minute budget on two cores. Library defaults are wrong for this data
# (ALS alpha=1, BPR 100 iterations), hence the ranges.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "pop": {},
    "itemknn": {
        "neighbors": [100, 200, 400],
        "shrink": [0.0, 10.0, 50.0],
        "alpha": [0.5],
        "recency_half_life": RECENCY_GRID,
    },
    "ease": {
        "l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0],
        "recency_half_life": RECENCY_GRID,
    },
    "edlae": {
        "dropout": [0.1, 0.25, 0.5],
        "l2": [50.0, 200.0],
        "recency_half_life": RECENCY_GRID,
    },
    "dlae": {"dropout": [0.1, 0.25, 0.5], "l2": [50.0, 200.0]},
    # Fewer singular vectors than the paper's 256 did better on ml-100k's valid (0.263 at
    # k=32-64 vs 0.232 at 256, random protocol).
    "gfcf": {"k": [32, 64, 128], "alpha": [0.3, 0.6]},
    "rp3beta": {
        "alpha": [0.6, 0.8, 1.0],
        "beta": [0.2, 0.35, 0.5],
        "neighbors": [100, 300],
        "recency_half_life": RECENCY_GRID,
    },
    "als": {
        "factors": [32, 64],
        "regularization": [20.0, 30.0, 50.0],
        "alpha": [2.0, 3.0, 5.0],
        "iterations": [15],
    },
    "bpr": {
        "factors": [64],
        "learning_rate": [0.005, 0.01],
        "regularization": [0.01, 0.02],
        "iterations": [50, 150],
    },
    "content": {"half_life_days": [0.0, 30.0, 180.0]},
    "textmap": {"l2": [1e3, 1e4, 1e5]},
    "hybrid": {
        "l2": [300.0],
        "text_l2": [1e3, 1e4, 1e5],
        "text_weight": [0.0, 0.1, 0.3, 0.5],
        "recency_half_life": RECENCY_GRID,
    },
    # Blends are searched on valid over the other models' tuned configs
    # (frugalrec.evaluate.blend), not over a grid of their own.
    "blend": {},
}


def register_model(cls: type[Recommender], grid: dict[str, list[Any]] | None = None) -> None:
    """Make a model available by name (for plug-ins and the text tier)."""
    _MODELS[cls.name] = cls
    if grid is not None:
        GRIDS[cls.name] = grid


def model_class(name: str) -> type[Recommender]:
    """Class for a model name; ValueError lists the valid names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}"
        ) from None


def available_models() -> list[str]:
    return sorted(_MODELS)
