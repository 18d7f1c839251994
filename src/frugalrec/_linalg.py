"""Small numeric helpers shared by every stage."""

from __future__ import annotations

import numpy as np


def normalise_rows(M: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float [n, d] -> same shape); zero rows stay zero."""
    n = np.linalg.norm(M, axis=1, keepdims=True)
    return np.divide(M, n, out=np.zeros_like(M), where=n > 0)
