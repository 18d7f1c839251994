"""Embedding cache: encode each distinct text once per encoder, keep the vectors on disk.

Layout under ``<root>/<tier>__<backend>[__<variant>]/`` (``root`` defaults to
``cache_dir("embeddings")``; the variant, e.g. the int8 recipe, keeps artefacts apart)::

    manifest.json          {"encoder": ..., "dims": d, "shards": [{"file", "sha256", "rows"}]}
    shard-<n>-<id>.npz     keys: |S32 sha256 digests [m], vectors: float32 [m, d]

Shards are append-only and written atomically before the manifest that lists them, so a crash
leaves at worst an orphan shard that nobody reads. A shard whose checksum does not match is
skipped with a warning (its texts are simply encoded again) and dropped from the manifest at
the next write. No pickles: ``np.load(..., allow_pickle=False)``.

Vectors are keyed by the exact text, so whitespace or case changes are new texts. Two
processes appending to the same cache at once can lose each other's manifest entry (the texts
become misses later, never wrong vectors).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._io import atomic_path, cache_dir, sha256_file, write_json_atomic
from frugalrec.text.encoders import TextEncoder

_KEY_DTYPE = np.dtype("S32")
_FORMAT = 1
_SHARD_NAME = re.compile(r"shard-\d+-[0-9a-f]{8}\.npz")


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha256 digests of the UTF-8 texts -> |S32 [n]."""
    digests = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
    return np.array(digests, dtype=_KEY_DTYPE) if digests else np.empty(0, dtype=_KEY_DTYPE)


class EmbeddingCache:
    """Cached ``encoder.encode``: only texts never seen by this encoder are encoded.

    Counters (see :meth:`stats`): ``hits``/``misses`` count requested texts found / not found,
    ``encoded`` the distinct texts sent to the encoder, ``encoder_calls`` the calls made to
    ``encoder.encode`` (at most one per :meth:`encode`).
    """

    def __init__(self, encoder: TextEncoder, root: Path | None = None) -> None:
        self.encoder = encoder
        base = Path(root) if root is not None else cache_dir("embeddings")
        variant = getattr(encoder, "variant", "")
        name = encoder.key.replace("/", "__") + (f"__{variant}" if variant else "")
        self.path = base / name
        self.hits = 0
        self.misses = 0
        self.encoded = 0
        self.encoder_calls = 0
        self.skipped_shards = 0
        self._bad_files: set[str] = set()
        self._shards: list[dict[str, Any]] = []
        # Sorted digests and their vectors, so lookups are one vectorised searchsorted.
        self._keys = np.empty(0, dtype=_KEY_DTYPE)
        self._vecs = np.empty((0, encoder.dims), dtype=np.float32)
        self._load()

    def __len__(self) -> int:
        return len(self._keys)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Vectors for ``texts`` -> float32 [n, d] in input order; misses are encoded (once
        each, in one encoder call) and appended to the cache."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        keys = text_keys(texts)
        pos, found = self._lookup(keys)
        n_found = int(found.sum())
        self.hits += n_found
        self.misses += len(keys) - n_found
        out = np.empty((len(keys), self.encoder.dims), dtype=np.float32)
        out[found] = self._vecs[pos[found]]
        if n_found < len(keys):
            miss_idx = np.flatnonzero(~found)
            uniq, first, inverse = np.unique(keys[miss_idx], return_index=True, return_inverse=True)
            # Encode new texts in order of first appearance (np.unique sorts by digest).
            appear = np.argsort(first)
            rank = np.empty_like(appear)
            rank[appear] = np.arange(len(appear))
            new_texts = [texts[i] for i in miss_idx[first[appear]]]
            vecs = np.asarray(
                self.encoder.encode(new_texts, batch_size=batch_size, show_progress=show_progress),
                dtype=np.float32,
            )
            self.encoder_calls += 1
            self.encoded += len(new_texts)
            out[miss_idx] = vecs[rank[inverse.reshape(-1)]]
            self._append(uniq[appear], vecs)
        return out

    def stats(self) -> dict[str, Any]:
        """Counters since construction plus the cache's size on disk."""
        return {
            "encoder": self.encoder.key,
            "hits": self.hits,
            "misses": self.misses,
            "encoded": self.encoded,
            "encoder_calls": self.encoder_calls,
            "entries": len(self._keys),
            "shards": len(self._shards),
            "skipped_shards": self.skipped_shards,
            "path": str(self.path),
        }

    def compact(self) -> None:
        """Rewrite all shards as one (fewer files to open and checksum on load)."""
        if len(self._shards) <= 1:
            return
        old = [self.path / s["file"] for s in self._shards]
        entry = self._write_shard(self._keys, self._vecs)
        self._shards = [entry]
        self._write_manifest(replace=True)
        for f in old:
            f.unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------------------

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._keys) == 0:
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return pos, self._keys[pos] == keys

    def _merge(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        # New rows first: np.unique keeps the first occurrence, so they win on a duplicate.
        all_keys = np.concatenate([keys, self._keys])
        uniq, first = np.unique(all_keys, return_index=True)
        self._vecs = np.concatenate([vecs, self._vecs])[first]
        self._keys = uniq

    def _append(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        self._shards.append(self._write_shard(keys, vecs))
        self._write_manifest()
        self._merge(keys, vecs)

    def _write_shard(self, keys: np.ndarray, vecs: np.ndarray) -> dict[str, Any]:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"shard-{len(self._shards):05d}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_path(self.path / name) as tmp, open(tmp, "wb") as f:
            # A file object, not a path: np.savez would append ".npz" to the temp name.
            np.savez(f, keys=keys.astype(_KEY_DTYPE), vectors=vecs.astype(np.float32))
        return {"file": name, "sha256": sha256_file(self.path / name), "rows": len(keys)}

    def _manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def _read_manifest(self, quiet: bool = False) -> dict[str, Any] | None:
        path = self._manifest_path()
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("shards"), list):
                raise ValueError("no shard list")
        except (OSError, ValueError) as exc:
            if quiet:  # already reported when this cache was opened
                return None
            warnings.warn(
                f"embedding cache manifest {path} unreadable ({exc}); starting empty",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        if data.get("encoder") != self.encoder.key or data.get("dims") != self.encoder.dims:
            if quiet:
                return None
            warnings.warn(
                f"embedding cache {self.path} belongs to {data.get('encoder')!r} "
                f"(d={data.get('dims')}), not {self.encoder.key!r}; ignoring it",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return data

    def _write_manifest(self, replace: bool = False) -> None:
        shards = list(self._shards)
        if not replace:
            # Keep shards another process listed since we loaded (best effort, see module doc).
            disk = self._read_manifest(quiet=True) or {"shards": []}
            ours = {s["file"] for s in shards}
            bad = self._bad_files
            shards += [s for s in disk["shards"] if s["file"] not in ours | bad]
        write_json_atomic(
            self._manifest_path(),
            {
                "format": _FORMAT,
                "encoder": self.encoder.key,
                "dims": self.encoder.dims,
                "shards": shards,
            },
        )
        # Corrupt shards are out of the manifest now; remove them so they stop costing space.
        for name in self._bad_files:
            if _SHARD_NAME.fullmatch(name):  # never follow an odd path out of the cache
                (self.path / name).unlink(missing_ok=True)
        self._bad_files.clear()

    def _load(self) -> None:
        data = self._read_manifest()
        if data is None:
            return
        keys_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        for entry in data["shards"]:
            loaded = self._load_shard(entry)
            if loaded is None:
                self.skipped_shards += 1
                self._bad_files.add(str(entry.get("file")))
                continue
            keys_parts.append(loaded[0])
            vec_parts.append(loaded[1])
            self._shards.append(entry)
        if keys_parts:
            # Later shards win on a duplicate digest, as they would have when appended.
            self._merge(np.concatenate(keys_parts[::-1]), np.concatenate(vec_parts[::-1]))

    def _load_shard(self, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        name = str(entry.get("file", ""))
        path = self.path / name
        try:
            if not _SHARD_NAME.fullmatch(name):
                raise ValueError("not a shard file name")
            if sha256_file(path) != entry.get("sha256"):
                raise ValueError("checksum mismatch")
            with np.load(path, allow_pickle=False) as npz:
                keys, vecs = npz["keys"], npz["vectors"]
            if (
                keys.dtype != _KEY_DTYPE
                or vecs.dtype != np.float32
                or vecs.shape != (len(keys), self.encoder.dims)
            ):
                raise ValueError(f"unexpected arrays {keys.dtype} {vecs.dtype} {vecs.shape}")
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(
                f"embedding cache shard {path} skipped ({exc}); its texts will be re-encoded",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        return keys, vecs
