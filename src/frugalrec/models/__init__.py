"""Recommenders behind one interface: ``fit / score / recommend / fold_in / similar_items``."""

from frugalrec.models.base import Recommender, RecommenderConfig, load_model, top_k
from frugalrec.models.ease import EASEConfig, EASERecommender
from frugalrec.models.implicit_mf import ALSConfig, ALSRecommender, BPRConfig, BPRRecommender
from frugalrec.models.itemknn import ItemKNNConfig, ItemKNNRecommender
from frugalrec.models.pop import PopConfig, PopRecommender
from frugalrec.models.registry import GRIDS, available_models, model_class, register_model

__all__ = [
    "GRIDS",
    "ALSConfig",
    "ALSRecommender",
    "BPRConfig",
    "BPRRecommender",
    "EASEConfig",
    "EASERecommender",
    "ItemKNNConfig",
    "ItemKNNRecommender",
    "PopConfig",
    "PopRecommender",
    "Recommender",
    "RecommenderConfig",
    "available_models",
    "load_model",
    "model_class",
    "register_model",
    "top_k",
]

# Registers "attention" (torch is imported lazily, only when it is fitted or loaded).
from frugalrec.models import attention as _attention  # noqa: F401

# Registers "sasrec" (the attention network over item ids only).
from frugalrec.models import sasrec as _sasrec  # noqa: F401
