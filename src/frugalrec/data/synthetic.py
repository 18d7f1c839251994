"""Seeded synthetic catalogues, item vectors and interaction streams for scaling benchmarks.

Everything here takes an ``rng`` (``np.random.Generator``) and is deterministic given it.
The shapes of the distributions follow what real catalogues look like, because cost curves
measured on unrealistic data mislead:

* item popularity is Zipf-like (a few items get most interactions);
* titles are 1-6 words and descriptions 10-80 words, log-normally distributed, with word
  frequencies that are themselves Zipf-like (so tokenisers and encoders see realistic lengths);
* vectors are a mixture of Gaussians with uneven cluster sizes and a low intrinsic dimension.
  Uniform random unit vectors are pathological for approximate nearest-neighbour search (all
  distances concentrate), so they would make ANN look far worse than on real embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

_SYLLABLES = (
    "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "da", "re", "po", "li", "an", "or", "el",
    "ba", "co", "fi", "ge", "hu", "jo", "ku", "ma", "ne", "pi", "qu", "ro", "sa", "ti", "ve",
)  # fmt: skip


def zipf_weights(n: int, alpha: float = 1.0) -> np.ndarray:
    """Normalised Zipf weights ``w[r] ∝ (r + 1) ** -alpha`` for ranks ``0..n-1`` (float64 [n])."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


def _vocabulary(n_words: int, rng: np.random.Generator) -> np.ndarray:
    """``n_words`` distinct pronounceable pseudo-words (object array of str)."""
    words: list[str] = []
    seen: set[str] = set()
    syl = np.asarray(_SYLLABLES)
    while len(words) < n_words:
        need = n_words - len(words)
        lengths = rng.integers(1, 5, size=need * 2)
        picks = rng.integers(0, len(syl), size=int(lengths.sum()))
        pos = 0
        for ln in lengths:
            w = "".join(syl[picks[pos : pos + ln]])
            pos += ln
            if w not in seen:
                seen.add(w)
                words.append(w)
                if len(words) == n_words:
                    break
    return np.asarray(words, dtype=object)


def _lognormal_lengths(
    n: int, rng: np.random.Generator, median: float, sigma: float, lo: int, hi: int
) -> np.ndarray:
    x = rng.lognormal(mean=np.log(median), sigma=sigma, size=n)
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def _texts(lengths: np.ndarray, word_ids: np.ndarray, vocab: np.ndarray) -> list[str]:
    # One join per text is unavoidable for Python strings; word sampling itself is vectorised.
    ends = np.cumsum(lengths)
    starts = ends - lengths
    words = vocab[word_ids]
    return [" ".join(words[s:e]) for s, e in zip(starts, ends, strict=True)]


def synthetic_catalogue(
    n_items: int,
    rng: np.random.Generator,
    *,
    vocab_size: int = 20_000,
    popularity_alpha: float = 1.0,
    word_alpha: float = 1.07,
    n_categories: int = 50,
) -> pd.DataFrame:
    """A synthetic item table with realistic text lengths and Zipf popularity.

    Returns a DataFrame indexed ``0..n_items-1`` with columns ``item`` (int64 id), ``title``
    (1-6 words, median 3), ``description`` (10-80 words, median 30), ``category`` (str,
    Zipf-sized) and ``popularity`` (float64 probabilities summing to 1, Zipf with exponent
    ``popularity_alpha`` over a random permutation of items, so popularity is not tied to id).
    """
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    vocab = _vocabulary(vocab_size, rng)
    word_p = zipf_weights(vocab_size, word_alpha)
    word_cdf = np.cumsum(word_p)

    title_len = _lognormal_lengths(n_items, rng, median=3.0, sigma=0.45, lo=1, hi=6)
    desc_len = _lognormal_lengths(n_items, rng, median=30.0, sigma=0.5, lo=10, hi=80)

    def draw(k: int) -> np.ndarray:
        ids = np.searchsorted(word_cdf, rng.random(k) * word_cdf[-1], side="right")
        return np.minimum(ids, vocab_size - 1)

    titles = _texts(title_len, draw(int(title_len.sum())), vocab)
    descriptions = _texts(desc_len, draw(int(desc_len.sum())), vocab)
    titles = [t[:1].upper() + t[1:] for t in titles]

    cat_p = zipf_weights(n_categories, 0.8)
    categories = rng.choice(n_categories, size=n_items, p=cat_p)
    popularity = np.empty(n_items, dtype=np.float64)
    popularity[rng.permutation(n_items)] = zipf_weights(n_items, popularity_alpha)
    return pd.DataFrame(
        {
            "item": np.arange(n_items, dtype=np.int64),
            "title": titles,
            "description": descriptions,
            "category": np.char.add("c", categories.astype(str)).astype(object),
            "popularity": popularity,
        }
    )


@dataclass(frozen=True)
class VectorMixture:
    """A mixture of Gaussians on the unit sphere with a low-rank within-cluster spread.

    A sample is ``normalise(centre[c] + spread * basis[c] @ z + noise * e)`` with cluster
    ``c ~ weights``, ``z ~ N(0, I_rank / rank)`` and ``e ~ N(0, I_d / d)``. ``basis`` holds one
    orthonormal ``[d, rank]`` basis per cluster, so each cluster is an elongated, low-dimensional
    blob like the local structure of real text embeddings.
    """

    centres: np.ndarray  # float32 [n_clusters, d], unit norm
    bases: np.ndarray  # float32 [n_clusters, d, rank]
    weights: np.ndarray  # float64 [n_clusters], sums to 1
    spread: float
    noise: float

    @property
    def d(self) -> int:
        return int(self.centres.shape[1])

    def sample(self, n: int, rng: np.random.Generator, *, chunk_size: int = 65_536) -> np.ndarray:
        """``n`` L2-normalised float32 vectors [n, d] (chunked to bound temporary memory)."""
        out = np.empty((n, self.d), dtype=np.float32)
        rank = self.bases.shape[2]
        cdf = np.cumsum(self.weights)
        for start in range(0, n, chunk_size):
            m = min(chunk_size, n - start)
            c = np.minimum(
                np.searchsorted(cdf, rng.random(m) * cdf[-1], side="right"), len(cdf) - 1
            )
            z = rng.standard_normal((m, rank), dtype=np.float32) / np.float32(np.sqrt(rank))
            x = out[start : start + m]
            # Group by cluster so the low-rank product is one batched matmul per cluster.
            order = np.argsort(c, kind="stable")
            cs = c[order]
            bounds = np.flatnonzero(np.diff(cs)) + 1
            for grp in np.split(np.arange(m), bounds):
                if grp.size == 0:
                    continue
                k = cs[grp[0]]
                rows = order[grp]
                x[rows] = z[rows] @ self.bases[k].T
            x *= np.float32(self.spread)
            x += self.centres[c]
            x += rng.standard_normal((m, self.d), dtype=np.float32) * np.float32(
                self.noise / np.sqrt(self.d)
            )
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        return out


def synthetic_vector_mixture(
    d: int,
    rng: np.random.Generator,
    *,
    n_clusters: int = 256,
    rank: int | None = None,
    spread: float = 0.9,
    noise: float = 0.35,
    cluster_alpha: float = 0.7,
) -> VectorMixture:
    """Draw the parameters of a :class:`VectorMixture` (cluster sizes Zipf(``cluster_alpha``)).

    ``rank`` defaults to ``d // 8`` (intrinsic dimension well below ``d``, as for real
    embeddings). ``spread`` and ``noise`` are relative to the unit-norm centres; the defaults give
    clusters that overlap enough that IVF with one probe recalls well under half the true top-10.
    """
    if d <= 0 or n_clusters <= 0:
        raise ValueError("d and n_clusters must be positive")
    rank = rank or max(2, d // 8)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    raw = rng.standard_normal((n_clusters, d, rank), dtype=np.float32)
    bases, _ = np.linalg.qr(raw)  # batched: one orthonormal basis per cluster
    weights = rng.permutation(zipf_weights(n_clusters, cluster_alpha))
    return VectorMixture(
        centres=centres,
        bases=np.ascontiguousarray(bases, dtype=np.float32),
        weights=weights,
        spread=float(spread),
        noise=float(noise),
    )


def synthetic_vectors(
    n_items: int,
    d: int,
    rng: np.random.Generator,
    *,
    n_clusters: int | None = None,
    **mixture_kw: float,
) -> np.ndarray:
    """Clustered L2-normalised float32 vectors [n_items, d] (see :class:`VectorMixture`).

    ``n_clusters`` defaults to ``clip(sqrt(n_items), 8, 1024)``. To draw queries from the same
    distribution, build the mixture with :func:`synthetic_vector_mixture` and call ``sample``.
    """
    if n_clusters is None:
        n_clusters = int(np.clip(np.sqrt(n_items), 8, 1024))
    mix = synthetic_vector_mixture(d, rng, n_clusters=n_clusters, **mixture_kw)  # type: ignore[arg-type]
    return mix.sample(n_items, rng)


def synthetic_interactions(
    n_users: int,
    n_items: int,
    n_interactions: int,
    rng: np.random.Generator,
    chunk_size: int = 1_000_000,
    *,
    item_popularity: np.ndarray | None = None,
    item_alpha: float = 1.0,
    user_alpha: float = 0.8,
    start_timestamp: int = 1_600_000_000,
    span_seconds: int = 365 * 24 * 3600,
) -> Iterator[pd.DataFrame]:
    """Yield interaction chunks (DataFrames of ``user`` int64, ``item`` int64, ``rating``
    float32, ``timestamp`` int64) totalling ``n_interactions`` rows.

    Users and items are drawn independently from Zipf activity/popularity (items from
    ``item_popularity`` if given, e.g. ``synthetic_catalogue(...)["popularity"]``). Timestamps
    increase across chunks, so chunks can be appended to a Parquet file in time order. Memory is
    ``O(chunk_size + n_users + n_items)``, independent of ``n_interactions``. Duplicate
    (user, item) pairs occur, as in real logs; dedupe downstream if needed.
    """
    if min(n_users, n_items, chunk_size) <= 0 or n_interactions < 0:
        raise ValueError("n_users, n_items, chunk_size must be positive, n_interactions >= 0")
    if item_popularity is None:
        item_p = np.empty(n_items, dtype=np.float64)
        item_p[rng.permutation(n_items)] = zipf_weights(n_items, item_alpha)
    else:
        item_p = np.asarray(item_popularity, dtype=np.float64)
        if item_p.shape != (n_items,):
            raise ValueError(f"item_popularity must have shape ({n_items},), got {item_p.shape}")
    user_p = np.empty(n_users, dtype=np.float64)
    user_p[rng.permutation(n_users)] = zipf_weights(n_users, user_alpha)
    item_cdf = np.cumsum(item_p)
    user_cdf = np.cumsum(user_p)
    done = 0
    while done < n_interactions:
        m = min(chunk_size, n_interactions - done)
        users = np.searchsorted(user_cdf, rng.random(m) * user_cdf[-1], side="right")
        items = np.searchsorted(item_cdf, rng.random(m) * item_cdf[-1], side="right")
        # Even spacing across the whole stream plus jitter keeps chunks time-ordered.
        base = start_timestamp + (done + np.arange(m)) * (span_seconds / max(n_interactions, 1))
        ts = np.sort(base + rng.random(m) * (span_seconds / max(n_interactions, 1)))
        ratings = rng.choice(
            np.array([1, 2, 3, 4, 5], dtype=np.float32), size=m, p=[0.06, 0.11, 0.27, 0.34, 0.22]
        )
        yield pd.DataFrame(
            {
                "user": np.minimum(users, n_users - 1).astype(np.int64),
                "item": np.minimum(items, n_items - 1).astype(np.int64),
                "rating": ratings,
                "timestamp": ts.astype(np.int64),
            }
        )
        done += m
