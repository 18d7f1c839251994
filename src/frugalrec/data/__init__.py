"""Data layer: loaders, validation, cleaning, splits, the immutable ``Dataset``."""

from frugalrec.data.dataset import Dataset, Vocabulary, build_dataset
from frugalrec.data.errors import DataValidationError, Problem
from frugalrec.data.splits import PROTOCOLS, Split, make_split

__all__ = [
    "PROTOCOLS",
    "DataValidationError",
    "Dataset",
    "Problem",
    "Split",
    "Vocabulary",
    "build_dataset",
    "make_split",
]
