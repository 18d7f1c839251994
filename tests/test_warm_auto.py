"""Blends chosen on valid, and ``evaluate --models auto`` on a user's own catalogue."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from frugalrec.cli import main
from frugalrec.data.dataset import build_dataset
from frugalrec.data.splits import Split, make_split
from frugalrec.data.synthetic import synthetic_interactions
from frugalrec.evaluate.blend import search_blends, simplex_grid
from frugalrec.evaluate.run import auto_models, choose_auto, run_models
from frugalrec.models import model_class


def _garden_shop() -> pd.DataFrame:
    """A seeded garden-supply shop: e-mail customer ids, SKU item ids, taste groups (each
    customer mostly buys from one of four aisles) on top of Zipf popularity."""
    rng = np.random.default_rng(3)
    df = next(synthetic_interactions(120, 60, 2400, rng))
    aisle = df["user"] % 4
    keep = (df["item"] % 4 == aisle) | (rng.random(len(df)) < 0.25)
    df = df[keep].drop_duplicates(["user", "item"])
    return pd.DataFrame(
        {
            "customer": [f"c{u}@garden.example" for u in df["user"]],
            "sku": [f"SKU-{i:04d}" for i in df["item"]],
            "timestamp": df["timestamp"].to_numpy(),
        }
    )


@pytest.fixture
def shop_split() -> Split:
    df = _garden_shop()
    ds = build_dataset(
        "garden", df["customer"].to_numpy(), df["sku"].to_numpy(), None, df["timestamp"].to_numpy()
    )
    return make_split(ds, "random")


@dataclass(frozen=True)
class _NoTestSplit(Split):
    """A split whose test part must never be read (the blend search is valid-only)."""

    @property
    def test(self) -> sp.csr_matrix:
        raise AssertionError("the blend search read the test split")


def _no_test(split: Split) -> _NoTestSplit:
    return _NoTestSplit(
        split.dataset, split.protocol, split.train_mask, split.valid_mask, split.test_mask
    )


def test_simplex_grid() -> None:
    pairs = simplex_grid(2, 0.1)
    assert len(pairs) == 9 and all(abs(sum(w) - 1) < 1e-9 and min(w) > 0 for w in pairs)
    assert len(simplex_grid(3, 0.1)) == 36


def test_identical_members_never_make_a_kept_blend(shop_split) -> None:  # type: ignore[no-untyped-def]
    # EDLAE without dropout is EASE: any weighting ranks exactly like either member.
    ease = model_class("ease").config_cls(l2=20.0)
    same = model_class("edlae").config_cls(l2=20.0, dropout=0.0)
    found = search_blends(_no_test(shop_split), [("ease", ease, 0.3), ("edlae", same, 0.3)])
    assert found.config is None and "no blend beat" in found.reason
    assert found.trials and len({round(t["ndcg@10"], 9) for t in found.trials}) == 1


def test_a_kept_blend_beats_its_members_on_valid(shop_split) -> None:  # type: ignore[no-untyped-def]
    pool = [
        ("ease", model_class("ease").config_cls(l2=20.0), 0.3),
        ("pop", model_class("pop").config_cls(), 0.2),  # never blended
        ("rp3beta", model_class("rp3beta").config_cls(beta=0.0), 0.2),
        ("itemknn", model_class("itemknn").config_cls(neighbors=20), 0.1),
    ]
    found = search_blends(_no_test(shop_split), pool)
    names = {m for t in found.trials for m in t["members"]}
    assert names == {"ease", "rp3beta", "itemknn"}
    # The best blend's valid score is its trial's, and above each of its members'.
    best = max(found.trials, key=lambda t: t["ndcg@10"])
    if found.config is None:
        assert best["ndcg@10"] <= max(found.members_valid[m] for m in best["members"])
    else:
        members = [m["model"] for m in found.config.members]
        assert found.best_valid == pytest.approx(best["ndcg@10"])
        assert found.best_valid > max(found.members_valid[m] for m in members)
        # Refitted on train, the Recommender reproduces the searched valid score.
        from frugalrec.evaluate.protocol import evaluate_model
        from frugalrec.models.blend import BlendRecommender

        model = BlendRecommender(found.config).fit(shop_split.train_dataset())
        res = evaluate_model(model, shop_split, "valid", ks=(10,), n_boot=0)
        assert res.metrics["ndcg@10"] == pytest.approx(found.best_valid, abs=1e-9)


def test_auto_models_respect_the_protocol_candidates(shop_split) -> None:  # type: ignore[no-untyped-def]
    warm = auto_models(shop_split, text=False)
    assert {"ease", "edlae", "gfcf", "rp3beta", "als", "blend"} <= set(warm)
    assert not {"content", "textmap", "hybrid"} & set(warm)
    assert {"content", "textmap", "hybrid"} <= set(auto_models(shop_split, text=True))
    cold = make_split(shop_split.dataset, "cold-item")
    assert set(auto_models(cold, text=True)) - {"blend"} == {
        n for n in auto_models(cold, text=True) if model_class(n).uses_item_vectors
    } - {"blend"}
    assert "ease" not in auto_models(cold, text=True)


def test_choose_auto_picks_the_best_valid_not_the_best_test(shop_split) -> None:  # type: ignore[no-untyped-def]
    runs = run_models(shop_split, ["pop", "ease", "rp3beta"], do_tune=False, n_boot=0,
                      valid_for_all=True)  # fmt: skip
    assert all(r.best_valid is not None for r in runs)
    auto = choose_auto(runs)
    best = max(runs, key=lambda r: r.best_valid)  # type: ignore[arg-type, return-value]
    assert auto.model == "auto" and auto.chosen == best.model
    assert auto.result.metrics == best.result.metrics


def _fail_to_load(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise OSError("no encoder weights here")


@pytest.mark.parametrize(
    "text",
    [pytest.param(False), pytest.param(True, marks=pytest.mark.slow)],  # attention: ~1 min
)
def test_evaluate_models_auto_on_own_files(tmp_path, monkeypatch, capsys, text) -> None:  # type: ignore[no-untyped-def]
    if not text:
        monkeypatch.setattr("frugalrec.text.encoders.load_encoder", _fail_to_load)
    df = _garden_shop().rename(columns={"customer": "user", "sku": "item"})
    f = tmp_path / "orders.csv"
    df.to_csv(f, index=False)
    out, recs = tmp_path / "out.json", tmp_path / "recs.csv"
    code = main([
        "evaluate", "--interactions", str(f), "--protocol", "leave-one-out", "--models", "auto",
        "--no-tune", "--encoder", "static", "--json", str(out), "--recs-out", str(recs),
        "--quiet", "--bootstrap", "20",
    ])  # fmt: skip
    assert code == 0
    if not text:
        assert "text-aware models skipped" in capsys.readouterr().err
    payload = json.loads(out.read_text())
    assert payload["protocol"] == "leave-one-out"
    results = {r["model"]: r for r in payload["results"]}
    assert {"pop", "ease", "edlae", "dlae", "gfcf", "rp3beta", "als", "auto"} <= set(results)
    assert ("hybrid" in results) == text and ("attention" in results) == text
    assert "blend_search" in payload and "trials" in payload["blend_search"]
    scored = {m: r["tuning"]["best_valid"] for m, r in results.items() if m != "auto"}
    assert all(v is not None for v in scored.values())
    chosen = results["auto"]["chosen"]
    assert scored[chosen] == max(scored.values())
    assert results["auto"]["metrics"] == results[chosen]["metrics"]
    # One line per test user (leave-one-out: one test item each) in recs.auto.csv, the
    # same lists as the chosen model's file.
    auto_rows = list(csv.DictReader(open(tmp_path / "recs.auto.csv")))
    chosen_rows = list(csv.DictReader(open(tmp_path / f"recs.{chosen}.csv")))
    assert auto_rows == chosen_rows and auto_rows[0]["user"].endswith("@garden.example")
