"""LLM tier: guard, explainers, one-pass re-ranker, cascade fallback, chat session,
enrichment cache. A tiny deterministic FakeLLM stands in for the model; one slow test runs
the real SmolLM2 and a few run the real ml-100k."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from frugalrec.data.dataset import Dataset, Vocabulary
from frugalrec.llm.cascade import Cascade, CascadeConfig
from frugalrec.llm.chat import ChatSession
from frugalrec.llm.enrichment import Enricher
from frugalrec.llm.evidence import Evidence, EvidenceBuilder
from frugalrec.llm.explainers import LLMExplainer, TemplateExplainer, explain_all
from frugalrec.llm.fake import FakeLLM
from frugalrec.llm.guard import Guard, normalise_title
from frugalrec.llm.request import LLMTier
from frugalrec.llm.reranker import LLMReranker, RerankerConfig, blend
from frugalrec.models import EASERecommender

FILMS = [
    ("Alien (1979)", 1979, "Horror|Sci-Fi"),
    ("Aliens (1986)", 1986, "Action|Sci-Fi"),
    ("Toy Story (1995)", 1995, "Animation|Children's|Comedy"),
    ("Groundhog Day (1993)", 1993, "Comedy|Romance"),
    ("Airplane! (1980)", 1980, "Comedy"),
    ("Spaceballs (1987)", 1987, "Comedy|Sci-Fi"),
    ("Scream (1996)", 1996, "Horror|Thriller"),
    ("Star Wars (1977)", 1977, "Action|Adventure|Sci-Fi|War"),
    ("Casablanca (1942)", 1942, "Drama|Romance|War"),
    ("Young Frankenstein (1974)", 1974, "Comedy|Horror"),
    ("Ghostbusters (1984)", 1984, "Comedy|Sci-Fi"),
    ("Usual Suspects, The (1995)", 1995, "Crime|Thriller"),
    ("Duck Soup (1933)", 1933, "Comedy|War"),
    ("Bringing Up Baby (1938)", 1938, "Comedy|Romance"),
]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """40 users with seeded random histories of 3-7 films (two taste groups)."""
    rng = np.random.default_rng(0)
    users, items = [], []
    n = len(FILMS)
    for u in range(40):
        pool = np.arange(0, 8) if u % 2 else np.arange(6, n)
        for i in rng.choice(pool, size=rng.integers(3, 7), replace=False):
            users.append(u)
            items.append(int(i))
    m = len(users)
    table = pd.DataFrame(
        {
            "title": [f[0] for f in FILMS],
            "year": [f[1] for f in FILMS],
            "genres": [f[2] for f in FILMS],
        }
    )
    return Dataset(
        name="tiny",
        users_vocab=Vocabulary(np.array([str(u) for u in range(40)], dtype=object)),
        items_vocab=Vocabulary(np.array([str(i) for i in range(n)], dtype=object)),
        user=np.array(users, dtype=np.int32),
        item=np.array(items, dtype=np.int32),
        rating=np.ones(m, np.float32),
        timestamp=np.arange(m, dtype=np.int64),
        items=table,
        has_timestamps=True,
    )


@pytest.fixture(scope="module")
def model(tiny: Dataset) -> EASERecommender:
    return EASERecommender(l2=10.0).fit(tiny)


def hist(tiny: Dataset, u: int) -> np.ndarray:
    from frugalrec.llm.request import history_in_order

    return history_in_order(tiny, u)


def idx(title: str) -> int:
    return [f[0] for f in FILMS].index(title)


def evidence_for(item: str, because: list[str], shared: list[str]) -> Evidence:
    i = idx(item)
    return Evidence(
        item=i,
        title=item,
        year=FILMS[i][1],
        genres=FILMS[i][2].split("|"),
        because=[(idx(t), t, 0.5) for t in because],
        shared_genres=[(g, 0.5) for g in shared],
    )


# ---- guard ------------------------------------------------------------------------------


def test_normalise_title_moves_article_and_drops_year():
    assert normalise_title("Usual Suspects, The (1995)") == "the usual suspects"


def test_guard_accepts_evidence_only_and_rejects_each_invention(tiny: Dataset):
    guard = Guard(tiny.items)
    ev = evidence_for("Spaceballs (1987)", ["Star Wars (1977)", "Airplane! (1980)"], ["Comedy"])
    ok = "Since you enjoyed Star Wars and Airplane!, this Comedy from 1987 should make you laugh."
    assert guard.check(ok, ev).ok, guard.check(ok, ev).violations
    # "Star Wars" contains "War" but is a cited title, not the War genre.
    assert guard.check("You liked Star Wars (1977), so try Spaceballs.", ev).ok
    cases = {
        "You liked Airplane!, so you will love Ghostbusters too.": "title",
        "A parody directed by Mel Brooks, like Airplane!.": "name",
        "If you liked Airplane!, this horror spoof is for you.": "genre",
        "A 1984 classic for fans of Airplane!.": "year",
        "A great film from the 90s.": "decade",
        "": "empty",
    }
    for text, kind in cases.items():
        res = guard.check(text, ev)
        assert not res.ok and any(v.startswith(kind) for v in res.violations), (text, res)


def test_template_explanations_pass_the_guard(tiny: Dataset, model: EASERecommender):
    guard = Guard(tiny.items)
    builder = EvidenceBuilder(model, tiny.items)
    for u in range(tiny.n_users):
        h = hist(tiny, u)
        recs, _ = model.recommend(np.array([u]), k=5)
        evs = builder.build(h, recs[0][recs[0] >= 0])
        for ev, ex in zip(evs, explain_all(evs), strict=True):
            assert ex.explainer == "template"
            assert set(j for j, _, _ in ev.because) <= set(h.tolist())
            assert guard.check(ex.explanation, ev).ok, (ex.explanation, ev)


def test_evidence_weights_are_the_ease_terms(tiny: Dataset, model: EASERecommender):
    h = hist(tiny, 3)
    recs, _ = model.recommend(np.array([3]), k=3)
    ev = EvidenceBuilder(model, tiny.items, top=len(h)).build(h, recs[0])[0]
    for j, _, w in ev.because:
        assert w == pytest.approx(float(model.weights_[j, ev.item]))
    # The cited terms are the largest positive contributions.
    contrib = model.weights_[h, ev.item]
    assert max(w for _, _, w in ev.because) == pytest.approx(float(contrib.max()))


def test_llm_explainer_serves_grounded_text_and_falls_back_otherwise(tiny: Dataset):
    guard = Guard(tiny.items)
    ev = evidence_for("Spaceballs (1987)", ["Star Wars (1977)"], ["Comedy", "Sci-Fi"])
    good = "Fans of Star Wars will enjoy this Sci-Fi Comedy."
    bad = "Fans of Star Wars and Ghostbusters will enjoy this Sci-Fi Comedy."
    template = TemplateExplainer()
    served = LLMExplainer(FakeLLM(replies=[good]), guard).explain(ev, template)
    assert (served.explanation, served.explainer) == (good, "fake")
    rejected = LLMExplainer(FakeLLM(replies=[bad]), guard).explain(ev, template)
    assert rejected.explainer == "template"
    assert rejected.explanation == template.explain(ev)
    assert any("ghostbusters" in v.lower() for v in rejected.rejected)
    failed = LLMExplainer(FakeLLM(fail=True), guard).explain(ev, template)
    assert failed.explainer == "template" and failed.rejected == ["error: RuntimeError"]


# ---- re-ranker --------------------------------------------------------------------------


def test_reranker_scores_from_label_logits_and_returns_a_permutation(tiny: Dataset):
    cands = np.array([[idx("Airplane! (1980)"), idx("Scream (1996)"), idx("Casablanca (1942)")]])
    cheap = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    rr = LLMReranker(FakeLLM(favour="Casablanca"), tiny.items, RerankerConfig(candidates=3))
    p = rr.llm_scores([[0, 1]], cands)
    assert p.shape == (1, 3) and p.sum() == pytest.approx(1.0) and p[0].argmax() == 2
    ids, _, _ = rr.rerank([[0, 1]], cands, cheap, weight=1.0)
    assert ids[0, 0] == idx("Casablanca (1942)")
    assert sorted(ids[0]) == sorted(cands[0])
    ids0, _, _ = rr.rerank([[0, 1]], cands, cheap, weight=0.0)
    assert ids0.tolist() == cands.tolist()
    assert "A. Airplane! (1980), Comedy" in rr.prompt([0], cands[0])


def test_blend_keeps_empty_slots_last():
    ids, s = blend(
        np.array([[5, 7, -1]]), np.array([[1.0, 0.5, -np.inf]]), np.array([[0.1, 0.9, 0.0]]), 0.9
    )
    assert ids.tolist() == [[7, 5, -1]] and math.isinf(s[0, 2])


# ---- cascade ----------------------------------------------------------------------------


def _cascade(tiny, model, llm, **cfg) -> tuple[Cascade, np.ndarray, object]:
    tier = LLMTier(tiny, model, llm, RerankerConfig(candidates=5, weight=1.0), CascadeConfig(**cfg))
    import scipy.sparse as sp

    h = hist(tiny, 0)
    H = sp.csr_matrix((np.ones(len(h), np.float32), h, [0, len(h)]), shape=(1, tiny.n_items))
    cheap_ids, _ = tier.pipeline.recommend(H, k=5)
    return tier.cascade, cheap_ids[0], H


@pytest.mark.parametrize(
    ("llm", "cfg", "route", "why"),
    [
        (FakeLLM(favour="Ghostbusters"), {"budget_ms": 0.001}, "budget", None),
        (FakeLLM(favour="Ghostbusters"), {"budget_ms": 200.0, "prior_ms_per_token": 1e3},
         "budget", None),
        (FakeLLM(fail=True), {}, "fallback", "error:RuntimeError"),
        (FakeLLM(favour="Ghostbusters", sleep_ms=60.0),
         {"budget_ms": 50.0, "prior_ms_per_token": 1e-6}, "fallback", "timeout"),
        (FakeLLM(favour="Ghostbusters"), {"margin": 0.0}, "confident", None),
    ],
)  # fmt: skip
def test_cascade_falls_back_to_the_cheap_answer(tiny, model, llm, cfg, route, why):
    cascade, cheap, H = _cascade(tiny, model, llm, **cfg)
    ans = cascade.recommend(H, k=5)
    assert ans.reason == route and not ans.fired
    assert ans.fallback_reason == why
    assert ans.to_dict().get("fallback_reason") == why
    assert ans.ids.tolist() == cheap.tolist()


def test_cascade_fires_when_unsure_and_in_budget(tiny, model):
    cascade, cheap, H = _cascade(tiny, model, FakeLLM(favour="Ghostbusters"), budget_ms=10_000)
    ans = cascade.recommend(H, k=5)
    assert ans.fired and ans.reason == "llm" and "llm_ms" in ans.stage_ms
    assert sorted(ans.llm_candidates.tolist()) == sorted(cheap.tolist())
    assert sorted(ans.ids.tolist()) == sorted(cheap.tolist())
    if idx("Ghostbusters (1984)") in cheap:
        assert ans.ids[0] == idx("Ghostbusters (1984)")


def test_no_seen_or_out_of_catalogue_items_for_any_user(tiny, model):
    tier = LLMTier(tiny, model, FakeLLM(favour="Casablanca"), RerankerConfig(candidates=6))
    for u in range(tiny.n_users):
        h = hist(tiny, u)
        ans = tier.answer(h, k=8, explain=True)
        ids = tiny.items_vocab.index([r["item"] for r in ans["items"]])
        assert ((ids >= 0) & (ids < tiny.n_items)).all()
        assert not set(ids.tolist()) & set(h.tolist())
        assert len(set(ids.tolist())) == len(ids)
        assert all(r["grounded"] and r["explainer"] == "template" for r in ans["items"])
        probs = [r["llm_prob"] for r in ans["items"] if r.get("llm_prob") is not None]
        assert ans["route"]["route"] == "llm" and sum(probs) == pytest.approx(1.0, abs=1e-5)


# ---- chat -------------------------------------------------------------------------------


def _genres(tiny: Dataset, items: list[dict]) -> list[set[str]]:
    return [set(r["genres"].split("|")) for r in items]


def test_chat_session_state_is_honoured(tiny, model):
    tier = LLMTier(tiny, model)
    h = hist(tiny, 1)
    s = ChatSession(tier, h, llm=None, k=5)
    out = s.turn("something like Alien but funnier")
    assert out["parser"] == "rules"
    assert "Alien (1979)" in out["state"]["liked"] and "Comedy" in out["state"]["want_genres"]
    out = s.turn("no horror")
    assert out["state"]["exclude_genres"] == ["Horror"]
    assert all("Horror" not in g for g in _genres(tiny, out["items"]))
    second = out["items"][1]["title"]
    out = s.turn("more like the second one")
    assert second in out["state"]["liked"]
    out = s.turn("older films")
    assert out["state"]["year_max"] is not None
    assert all(r["year"] <= out["state"]["year_max"] for r in out["items"])
    liked = {idx(t) for t in out["state"]["liked"]}
    shown = set(tiny.items_vocab.index([r["item"] for r in out["items"]]).tolist())
    assert not shown & (set(h.tolist()) | liked)
    first = out["items"][0]["title"]
    out = s.turn("not that one")
    assert first in out["state"]["disliked"] and first not in [r["title"] for r in out["items"]]


def test_chat_uses_the_llm_only_where_rules_fail(tiny, model):
    tier = LLMTier(tiny, model)
    llm = FakeLLM()
    s = ChatSession(tier, hist(tiny, 2), llm=llm, k=3)
    assert s.turn("no horror")["parser"] == "rules" and not llm.timings
    out = s.turn("something for a rainy sunday")
    assert out["parser"] == "llm" and "parse_llm_ms" in out["cost_ms"] and len(llm.timings) == 1
    # The fake prefers the first label: the first genre of the catalogue.
    assert out["understood"] == {"want_genres": [s.genres[0]]}
    assert ChatSession(tier, None, llm=None).turn("hmm")["parser"] == "none"


# ---- enrichment -------------------------------------------------------------------------


def test_enrichment_is_cached_by_model_and_text(tiny, tmp_path):
    llm = FakeLLM(replies=lambda p: "A  film\nabout things.")
    path = tmp_path / "enrich.json"
    out = Enricher(llm, path).enrich(tiny.items)
    assert out["description"].iloc[0] == "A film about things."
    n_calls = len(llm.timings)
    assert n_calls == len(FILMS)
    again = Enricher(llm, path)
    again.enrich(tiny.items)
    assert len(llm.timings) == n_calls and again.stats["hits"] == len(FILMS)
    other = Enricher(FakeLLM(name="other", replies=["x"]), path)
    assert other.key("Alien") != again.key("Alien")
    assert json.loads(path.read_text())


# ---- real data / real model (slow) ------------------------------------------------------


@pytest.mark.slow
def test_recommend_cli_json_has_explanations_and_costs(capsys):
    from frugalrec.cli import main

    assert (
        main(
            ["recommend", "--dataset", "ml-100k", "--user", "196", "-k", "5", "--explain", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 5
    for r in out["items"]:
        assert {"explanation", "evidence", "explainer"} <= set(r) and r["grounded"]
    assert "cheap_ms" in out["cost_ms"] and out["route"]["route"] == "no_llm"


@pytest.mark.slow
def test_chat_cli_reads_turns_from_stdin(monkeypatch, capsys):
    import io

    from frugalrec.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("no horror\nolder films\n"))
    assert (
        main(["chat", "--dataset", "ml-100k", "--user", "196", "-k", "5", "--no-llm", "--json"])
        == 0
    )
    turns = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["parser"] for t in turns] == ["rules", "rules"]
    assert all("Horror" not in r["genres"] for r in turns[1]["items"])


@pytest.mark.slow
def test_real_smollm2_reranks_one_list(ml100k):
    from frugalrec.llm.request import fit_cheap_model, history_in_order
    from frugalrec.llm.runtime import load_llm

    # Through the worker process (the default): a native crash fails this test alone.
    llm = load_llm("smollm2-135m", n_ctx=1024)
    assert llm.info()["vocab"] == 49152 and llm.info()["worker"]
    model = fit_cheap_model(ml100k)
    u = int(ml100k.users_vocab.index(["196"])[0])
    h = history_in_order(ml100k, u)
    ids, scores = model.recommend(np.array([u]), k=5)
    rr = LLMReranker(llm, ml100k.items, RerankerConfig(candidates=5, history_items=5))
    new, _, info = rr.rerank([h], ids, scores)
    assert sorted(new[0].tolist()) == sorted(ids[0].tolist())
    assert info["llm_prob"].sum() == pytest.approx(1.0, abs=1e-4)
    assert llm.timings[-1].prompt_tokens > 50
    assert llm.generate(llm.chat_prompt("Say hello."), max_tokens=8)
    # A deadline already passed aborts llama.cpp inside the forward pass; the next call works.
    import time

    llm.deadline = time.perf_counter() - 1.0
    with pytest.raises(TimeoutError):
        llm.logits_for_next_token([rr.prompt(h, ids[0])])
    llm.deadline = None
    assert np.isfinite(llm.logits_for_next_token([rr.prompt(h, ids[0])])).all()
    llm.close()


def test_bench_llm_configs_are_opt_in_and_valid():
    from frugalrec.bench.configs import default_grid
    from frugalrec.pipeline.config import PipelineConfig

    assert all(c.reranker == "none" for c in default_grid(True))
    llm = [c for c in default_grid(True, llm=True) if c.reranker != "none"]
    assert llm and all(c.reranker.startswith("llm-") and c.candidates >= c.k for c in llm)
    for c in llm:
        c.validate()
        assert PipelineConfig.from_json(c.to_json()) == c
    # Every rung of the ladder (bench --llm), or the ones named (bench --llm NAMES).
    rungs = ["smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b"]
    assert [c.reranker for c in llm] == [f"llm-{r}" for r in rungs]
    named = [c for c in default_grid(True, llm=("qwen2.5-1.5b",)) if c.reranker != "none"]
    assert [c.reranker for c in named] == ["llm-qwen2.5-1.5b"]


def test_bench_llm_flag_reads_rungs_from_the_registry():
    from frugalrec.cli import UsageError
    from frugalrec.cli.bench import llm_rungs

    assert llm_rungs(None) is False and llm_rungs("all") is True
    assert llm_rungs("gemma3-270m, qwen2.5-0.5b") == ("gemma3-270m", "qwen2.5-0.5b")
    with pytest.raises(UsageError, match="gpt-9"):
        llm_rungs("gemma3-270m,gpt-9")


def test_cascade_calibration_replaces_the_prior(tiny, model):
    llm = FakeLLM(favour="Ghostbusters")
    cascade, cheap, H = _cascade(tiny, model, llm, budget_ms=10_000, prior_ms_per_token=1e6)
    assert cascade.recommend(H, k=5).reason == "budget"
    cascade.calibrate(hist(tiny, 0), cheap)
    assert cascade.recommend(H, k=5).fired


@pytest.mark.slow
def test_no_seen_or_out_of_catalogue_items_on_ml100k_for_every_user(ml100k):
    from frugalrec.llm.request import fit_cheap_model, history_in_order

    tier = LLMTier(ml100k, fit_cheap_model(ml100k), FakeLLM(favour="Fargo"), RerankerConfig())
    fired = 0
    for u in range(ml100k.n_users):
        h = history_in_order(ml100k, u)
        ans = tier.answer(h, k=10, explain=False)
        ids = ml100k.items_vocab.index([r["item"] for r in ans["items"]])
        assert len(ids) == 10 and ((ids >= 0) & (ids < ml100k.n_items)).all()
        assert not set(ids.tolist()) & set(h.tolist())
        fired += ans["route"]["llm_fired"]
    assert fired == ml100k.n_users


def test_every_rung_carries_its_measured_cpu_cost_into_the_cascade_prior():
    """The cascade's budget decision before calibration uses the rung's measured prompt
    rate on the reference CPU (llm_ladder_quiet.json), not one number for all rungs."""
    from frugalrec.llm.registry import llm_names, llm_spec, prior_ms_per_token

    rungs = ["smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b"]
    assert list(llm_names())[:4] == rungs
    priors = [prior_ms_per_token(r) for r in rungs]
    assert all(llm_spec(r).cpu_prompt_tokens_per_s for r in rungs)
    assert priors == pytest.approx([1e3 / 277.7, 1e3 / 480.2, 1e3 / 148.2, 1e3 / 73.9])
    assert priors[3] > priors[2] > priors[0] > priors[1]  # the 1.5B is the slowest
    assert prior_ms_per_token("not-registered") == 8.0
