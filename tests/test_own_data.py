"""Your own data, everywhere: every command, the service and the library on a generated
bookshop (string ids, ``user_id``/``item_id`` headers, ISO timestamps, a description and a
category column), never falling back to ml-100k, never talking about films."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frugalrec.cli import main
from serve_helpers import API_KEY, AUTH, retrain

FILM_WORDS = re.compile(r"\b(films?|movies?|viewers?)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from frugalrec.data.example import write_example

    d = tmp_path_factory.mktemp("bookshop")
    return write_example(d, n_items=160, n_users=120, n_interactions=2000)


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FRUGALREC_PSEUDONYM_KEY", base64.urlsafe_b64encode(b"o" * 32).decode("ascii")
    )


def src(shop: dict[str, Path]) -> list[str]:
    return ["--interactions", str(shop["interactions"]), "--items", str(shop["items"])]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], outputs: list[str]) -> tuple[int, str]:
    """Run the CLI; return (exit code, stdout) and keep stdout+stderr for the film check."""
    code = main(argv)
    cap = capsys.readouterr()
    outputs.append(cap.out + cap.err)
    return code, cap.out


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---- issue 13 item 8: a bad timestamp names its place ----------------------------------
def test_out_of_range_unix_timestamp_names_file_line_and_field(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = write(
        tmp_path, "ts.csv", "user,item,timestamp\nu,a,100\nu,b,99999999999999\nv,a,1600000000000\n"
    )
    assert main(["data", "validate", "--interactions", str(f)]) == 1
    err = capsys.readouterr().err
    assert "ts.csv:3 [timestamp]: timestamp out of range: '99999999999999'" in err
    assert "ts.csv:4 [timestamp]" in err and "milliseconds? divide by 1000" in err
    assert "cannot convert" not in err and "Traceback" not in err
    # The JSON report names the same places.
    assert main(["data", "validate", "--interactions", str(f), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["problems"]
    assert {(p["line"], p["field"]) for p in found} == {(3, "timestamp"), (4, "timestamp")}


def test_a_bad_year_names_its_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    inter = write(tmp_path, "r.csv", "user,item\nu,a\n")
    items = write(tmp_path, "i.csv", "item,title,year\na,A,1995\nb,B,\nc,C,19x5\n")
    assert main(["data", "validate", "--interactions", str(inter), "--items", str(items)]) == 1
    assert "i.csv:4 [year]: not a year: '19x5'" in capsys.readouterr().err


# ---- columns and formats ------------------------------------------------------------
def test_aliases_semicolons_and_category_separator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.data.columns import ColumnMap
    from frugalrec.data.loaders import load_interactions

    inter = write(
        tmp_path, "r.csv", "userId;movieId;ts\nu1;a;100\nu1;b;2020-01-01T00:00:00Z\nu2;a;300\n"
    )
    items = write(
        tmp_path,
        "it.csv",
        'item_id;name;tags\na;Alpha;"Crime, Mystery"\nb;Beta;Cooking\n',
    )
    ds = load_interactions(inter, items, columns=ColumnMap(category="tags", category_sep=","))
    assert ds.n_users == 2 and ds.n_items == 2 and ds.has_timestamps
    assert ds.timestamp.tolist() == [100, 1577836800, 300]
    a = ds.items_vocab.index(["a"])[0]
    assert ds.items.loc[a, "title"] == "Alpha" and ds.items.loc[a, "genres"] == "Crime|Mystery"


def test_parquet_with_aliases_and_numeric_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.data.sources import DataSource

    pd.DataFrame({"UserID": [1, 1, 2], "ItemId": [10, 11, 10], "time": [5, 6, 7]}).to_parquet(
        tmp_path / "r.parquet"
    )
    ds = DataSource(interactions=str(tmp_path / "r.parquet")).load()
    assert ds.n_users == 2 and ds.n_items == 2 and ds.timestamp.tolist() == [5, 6, 7]
    assert set(ds.items_vocab.ids) == {"10", "11"}


def test_column_flags_and_did_you_mean(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    inter = write(tmp_path, "o.csv", "customer,sku,stars\nc1,s1,5\nc1,s2,1\nc2,s1,4\n")
    assert main(["data", "validate", "--interactions", str(inter), "--json"]) == 1
    probs = json.loads(capsys.readouterr().out)["problems"]
    assert {p["field"] for p in probs} == {"user", "item"}
    assert all("--user-col" in p["message"] or "--item-col" in p["message"] for p in probs)
    ok = ["data", "validate", "--interactions", str(inter), "--user-col", "customer",
          "--item-col", "sku", "--rating-col", "stars", "--min-rating", "4", "--json"]  # fmt: skip
    assert main(ok) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["interactions"] == 2  # the 1-star row is not a like
    assert "ratings >= 4 are likes: 2 of 3" in report["ratings"]["positives"]
    typo = ["data", "validate", "--interactions", str(inter), "--user-col", "custmer",
            "--item-col", "sku"]  # fmt: skip
    assert main(typo) == 1
    assert "(did you mean 'customer'?)" in capsys.readouterr().err
    # An unknown text column names its flag.
    items = write(tmp_path, "i.csv", "sku,title,blurb\ns1,One,x\ns2,Two,y\n")
    bad = [*ok[:-3], "--items", str(items), "--text-cols", "blrb"]
    assert main(bad) == 1
    assert "--text-cols" in capsys.readouterr().err


def test_text_cols_choose_what_the_encoders_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.data.columns import ColumnMap
    from frugalrec.data.loaders import load_interactions
    from frugalrec.text import item_texts

    inter = write(tmp_path, "r.csv", "user,item\nu,a\n")
    items = write(
        tmp_path, "i.csv", "item,title,blurb,internal_note\na,Alpha,a tale,do not embed\n"
    )
    ds = load_interactions(inter, items, columns=ColumnMap(text=("blurb",)))
    (text,) = item_texts(ds.items)
    assert "a tale" in text and "do not embed" not in text


# ---- validation that protects results ----------------------------------------------------
def test_validate_reports_coverage_duplicates_and_fails_on_mismatched_ids(
    tmp_path, shop, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert main(["data", "validate", *src(shop), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    inter = pd.read_csv(shop["interactions"])
    items = pd.read_csv(shop["items"])
    interacted = set(inter["item_id"])
    assert rep["coverage"]["interacted_items"] == len(interacted)
    assert rep["coverage"]["interacted_items_with_metadata"] == len(
        interacted & set(items["item_id"])
    )
    assert rep["coverage"]["catalogue_items_without_interactions"] == len(
        set(items["item_id"]) - interacted
    )
    dups = int(inter.duplicated(["user_id", "item_id"]).sum())
    assert rep["duplicates"]["duplicate_interactions"] == dups > 0
    assert "--dedup keeps the latest" in rep["duplicates"]["what_happens"]
    # Items file ids in another spelling (bk-00001 vs BK-00001): coverage 0, a failure.
    lower = items.assign(item_id=items["item_id"].str.lower())
    bad = tmp_path / "items_lower.csv"
    lower.to_csv(bad, index=False)
    args = ["data", "validate", "--interactions", str(shop["interactions"]), "--items", str(bad)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"only 0 of {len(interacted)} interacted items" in err and "--min-coverage" in err
    assert main([*args, "--min-coverage", "0"]) == 0
    capsys.readouterr()
    # The commands that use the data warn about it too.
    assert main(["export-split", *args[2:], "--out", str(tmp_path / "x")]) == 0
    assert "check that both files use the same item ids" in capsys.readouterr().err


# ---- no silent fallbacks -----------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--quiet"],
        ["query", "a detective story"],
        ["recommend", "--user", "x"],
        ["chat", "--no-llm"],
        ["bench", "--quick"],
        ["bench-queries"],
        ["export-split", "--out", "unused"],
        ["batch-recommend", "--out", "unused.parquet"],
        ["serve"],
        ["forget", "--user", "x"],
        ["data", "validate"],
    ],
)
def test_no_command_falls_back_to_ml100k(argv, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == 2
    assert "no data given" in capsys.readouterr().err


def test_items_without_interactions_and_bad_flags_are_errors(shop, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["evaluate", "--items", str(shop["items"]), "--quiet"]) == 2
    assert "--items needs --interactions" in capsys.readouterr().err
    assert main(["evaluate", *src(shop), "--models", "", "--quiet"]) == 2
    assert "--models is empty" in capsys.readouterr().err
    assert main(["evaluate", *src(shop), "--bootstrap", "-5", "--quiet"]) == 2
    assert "--bootstrap must be >= 0" in capsys.readouterr().err
    bad_attr = ["evaluate", *src(shop), "--models", "textmap", "--attributes", "categroy",
                "--encoder", "static", "--quiet"]  # fmt: skip
    assert main(bad_attr) == 2
    err = capsys.readouterr().err
    assert "--attributes: no item column 'categroy'" in err and "did you mean" in err
    assert main(["query", "x", "--dataset", str(shop["items"])]) == 2
    assert "pass it as --interactions" in capsys.readouterr().err


# ---- every command on the bookshop --------------------------------------------------------
def test_every_command_runs_on_the_bookshop_and_never_says_film(
    tmp_path, shop, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    outs: list[str] = []
    s = [*src(shop), "--noun", "books"]
    code, _ = run(["data", "validate", *s, "--dedup", "--min-rating", "3"], capsys, outs)
    assert code == 0
    code, _ = run(
        ["export-split", *s, "--protocol", "temporal", "--out", str(tmp_path / "split")],
        capsys,
        outs,
    )
    assert code == 0 and (tmp_path / "split" / "test.csv").is_file()
    code, out = run(
        ["evaluate", *s, "--models", "pop,ease,textmap", "--encoder", "static", "--no-tune",
         "--bootstrap", "0", "--protocol", "cold-item", "--json", "-", "--quiet"],
        capsys, outs,
    )  # fmt: skip
    assert code == 0
    res = {r["model"]: r["metrics"]["ndcg@10"] for r in json.loads(out)["results"]}
    assert res["textmap"] > res["pop"]  # text scores cold books; popularity cannot
    code, out = run(
        ["query", "a detective story, no romance", *s, "--encoder", "static", "--json"],
        capsys,
        outs,
    )
    assert code == 0
    items = json.loads(out)["items"]
    cats = [set(it["categories"].split("|")) for it in items]
    assert len(items) == 10
    assert sum("Mystery" in c for c in cats) >= 8 and not any("Romance" in c for c in cats)
    code, out = run(["bench-queries", *s, "--tiers", "static/numpy", "--json"], capsys, outs)
    assert code == 0 and json.loads(out)[0]["queries"] > 0
    user = pd.read_csv(shop["interactions"])["user_id"].iloc[0]
    code, out = run(
        ["recommend", *s, "--user", user, "-k", "5", "--explain", "--json"], capsys, outs
    )
    assert code == 0
    rec = json.loads(out)
    assert not rec["user_cold_start"] and len(rec["items"]) == 5
    assert any("of your books" in it["explanation"] for it in rec["items"])
    code, out = run(
        ["recommend", *s, "--user", "new@example.com", "-k", "5", "--json"], capsys, outs
    )
    cold = json.loads(out)
    assert code == 0 and cold["user_cold_start"] and len(cold["items"]) == 5
    scores = [it["score"] for it in cold["items"]]
    # The average known user's scores: positive, ranked, not an empty history's ties.
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1] > 0
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("mystery please\nno romance\nmore like the second one\n")
    )
    code, out = run(["chat", *s, "--user", user, "--no-llm", "-k", "5", "--json"], capsys, outs)
    turns = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(turns) == 3
    assert "Mystery" in turns[0]["understood"]["want_genres"]
    assert "Romance" in turns[1]["understood"]["exclude_genres"]
    code, _ = run(
        [
            "batch-recommend",
            *s,
            "--model",
            "ease",
            "-k",
            "3",
            "--out",
            str(tmp_path / "b.parquet"),
            "--quiet",
        ],
        capsys,
        outs,
    )
    assert code == 0
    batch = pd.read_parquet(tmp_path / "b.parquet")
    assert set(batch["item"]) <= set(pd.read_csv(shop["items"])["item_id"])
    store = f"sqlite:///{tmp_path / 'forget.db'}"
    code, _ = run(
        [
            "forget",
            "--user",
            user,
            "--store",
            store,
            *s,
            "--model-dir",
            str(tmp_path / "m"),
            "--json",
        ],
        capsys,
        outs,
    )
    assert code == 0
    # bench (two configurations of the quick grid's kinds) and plan, end to end.
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"name": "ease", "model": "ease", "encoder": "none"},
        {"name": "textmap-static", "model": "textmap", "encoder": "static", "backend": "numpy"},
    ]))  # fmt: skip
    bench_dir = tmp_path / "bench"
    code, _ = run(
        ["bench", *s, "--quick", "--configs", str(configs), "--out", str(bench_dir)], capsys, outs
    )
    assert code == 0
    records = json.loads((bench_dir / "bench.json").read_text())
    assert len(records) == 2 and all(r["cost"]["n_items"] == 160 for r in records)
    assert "--interactions" in (bench_dir / "report.html").read_text()
    code, out = run(
        ["plan", "--bench", str(bench_dir / "bench.json"), "--hardware", "local,t4", "--json"],
        capsys,
        outs,
    )
    assert code == 0 and json.loads(out)["hardware"]["local"]["config"]
    for text in outs:
        assert not FILM_WORDS.search(text), FILM_WORDS.search(text)


def test_serve_parses_own_files_into_the_service_spec(shop) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.cli import build_parser
    from frugalrec.cli.source import source_spec
    from frugalrec.data.sources import DataSource

    args = build_parser().parse_args(["serve", *src(shop), "--category-sep", ";", "--dedup"])
    spec = source_spec(args)
    assert spec is not None
    src_back = DataSource.from_spec(spec)
    assert src_back.interactions == str(shop["interactions"]) and src_back.dedup
    assert src_back.columns.category_sep == ";"


def test_service_on_the_bookshop(tmp_path, shop) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from frugalrec.data.sources import DataSource
    from frugalrec.serve.app import create_app
    from frugalrec.serve.settings import ServeSettings

    spec = DataSource(
        interactions=str(shop["interactions"]), items=str(shop["items"]), noun="books"
    ).to_spec()
    settings = ServeSettings.from_environment(
        api_keys=[API_KEY], dataset=spec, store_url=f"sqlite:///{tmp_path / 's.db'}",
        model_dir=tmp_path / "models", max_loop_lag_ms=0,
    )  # fmt: skip
    with TestClient(create_app(settings)) as c:
        user = pd.read_csv(shop["interactions"])["user_id"].iloc[3]
        r = c.get(f"/v1/users/{user}/recommendations", params={"k": 10, "explain": "true"})
        assert r.status_code == 200, r.text
        body = r.json()
        ids = [it["item_id"] for it in body["items"]]
        assert len(ids) == 10 and all(i.startswith("BK-") for i in ids)
        assert not FILM_WORDS.search(r.text)
        q = c.post("/v1/query", json={"text": "a detective story, no romance", "k": 10})
        assert q.status_code == 200, q.text
        got = q.json()
        assert got["intent"]["include_genres"] == ["Mystery"]
        assert got["intent"]["exclude_genres"] == ["Romance"]
        assert got["items"] and all("Romance" not in it["genres"] for it in got["items"])
        # Live fold-in: liking the current top item changes the list at once.
        ev = c.post(
            "/v1/events", json={"user_id": user, "item_id": ids[0], "type": "like"}, headers=AUTH
        )
        assert ev.status_code == 201, ev.text
        after = [it["item_id"] for it in c.get(f"/v1/users/{user}/recommendations").json()["items"]]
        assert ids[0] not in after and after != ids
        # Retraining on the user's catalogue swaps in a new version that keeps the event.
        v0 = c.get("/readyz").json()["model_version"]
        retrain(c)
        assert c.get("/readyz").json()["model_version"] == v0 + 1
        again = c.get(f"/v1/users/{user}/recommendations").json()["items"]
        assert ids[0] not in [it["item_id"] for it in again]
        assert "describe what you would like" in c.get("/").text
        assert not FILM_WORDS.search(c.get("/").text)
        # The page's open stats never show the catalogue's real user ids (e-mail addresses).
        stats = c.get("/v1/stats")
        assert stats.status_code == 200 and stats.json()["sample_users"] == []
        raw = set(pd.read_csv(shop["interactions"])["user_id"].astype(str))
        assert not any(u in stats.text for u in raw)


# ---- the library facade ---------------------------------------------------------------------
def test_facade_in_the_users_own_ids(tmp_path, shop) -> None:  # type: ignore[no-untyped-def]
    import frugalrec
    from frugalrec.models import EASERecommender

    rec = frugalrec.Recommender.from_files(
        shop["interactions"], shop["items"], model="ease", noun="books"
    )
    inter = pd.read_csv(shop["interactions"])
    known = inter["user_id"].iloc[0]
    df = rec.recommend([known, "stranger@example.com"], k=5)
    assert list(df.columns) == ["user", "item", "rank", "score", "title", "cold_start"]
    assert df.groupby("user")["rank"].apply(list).to_dict() == {
        known: [1, 2, 3, 4, 5],
        "stranger@example.com": [1, 2, 3, 4, 5],
    }
    assert not df.loc[df["user"] == known, "cold_start"].any()
    assert df.loc[df["user"] != known, "cold_start"].all()
    seen = set(inter.loc[inter["user_id"] == known, "item_id"])
    assert not seen & set(df.loc[df["user"] == known, "item"])
    titles = dict(
        zip(pd.read_csv(shop["items"])["item_id"], pd.read_csv(shop["items"])["title"], strict=True)
    )
    assert all(titles[i] == t for i, t in zip(df["item"], df["title"], strict=True))
    # Independent check of the cold-start scale: EASE fitted here, scores of every known
    # user averaged; the facade's cold-start list is that average's top 5.
    ds = frugalrec.DataSource(
        interactions=str(shop["interactions"]), items=str(shop["items"])
    ).load()
    model = EASERecommender().fit(ds)
    users = np.flatnonzero(np.diff(model.history_.indptr) > 0)
    mean = model.score(users).mean(axis=0)
    cold = df[df["cold_start"]]
    assert cold["score"].to_numpy() == pytest.approx(np.sort(mean)[::-1][:5], rel=1e-4)
    top1_known = model.score(users).max(axis=1)
    assert top1_known.min() <= cold["score"].iloc[0] <= top1_known.max()  # same scale
    assert cold["score"].iloc[0] < model.item_popularity_.max()  # not raw counts
    # Save/load: npz + JSON, same answers, no raw user id on disk.
    out = rec.save(tmp_path / "rec")
    again = frugalrec.Recommender.load(out)
    pd.testing.assert_frame_equal(again.recommend([known, "stranger@example.com"], k=5), df)
    for f in out.rglob("*"):
        if f.is_file():
            assert b"@example.com" not in f.read_bytes(), f
            assert f.suffix in {".npz", ".json"}, f


def test_facade_takes_column_names_and_is_lazy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    import frugalrec

    f = write(tmp_path, "o.csv", "customer,sku\nc1,s1\nc1,s2\nc2,s1\nc2,s3\nc3,s2\n")
    cols = frugalrec.ColumnMap(user="customer", item="sku")
    rec = frugalrec.Recommender.from_files(f, columns=cols, model="itemknn")
    df = rec.recommend("c1", k=2)
    assert df["item"].tolist() == ["s3"] and not df["cold_start"].any()
    # ``import frugalrec`` alone loads neither pandas nor the models.
    code = "import sys, frugalrec; print('pandas' in sys.modules, 'frugalrec.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_facade_fits_text_models_with_their_vectors(shop) -> None:  # type: ignore[no-untyped-def]
    import frugalrec

    rec = frugalrec.Recommender.from_files(shop["interactions"], shop["items"], model="textmap")
    sim = rec.similar_items("BK-00001", k=5)
    assert len(sim) == 5 and "BK-00001" not in set(sim["similar"])
    items = pd.read_csv(shop["items"]).set_index("item_id")
    first = set(items.loc["BK-00001", "category"].split("|"))
    shared = [bool(first & set(items.loc[i, "category"].split("|"))) for i in sim["similar"]]
    assert sum(shared) >= 3  # the text model sees the description and category words


def test_llm_prompts_name_the_catalogues_items_not_films(shop) -> None:  # type: ignore[no-untyped-def]
    """The re-ranker's, chat's and enrichment's prompts on a bookshop say "book", never
    "film"/"movie" (the LLM would otherwise be told it recommends films)."""
    from frugalrec.data.sources import DataSource
    from frugalrec.llm.enrichment import Enricher
    from frugalrec.llm.fake import FakeLLM
    from frugalrec.llm.reranker import LLMReranker

    ds = DataSource(
        interactions=str(shop["interactions"]), items=str(shop["items"]), noun="books"
    ).load()
    prompt = LLMReranker(FakeLLM(), ds.items).prompt([0, 1, 2], [3, 4, 5])
    assert "book recommender" in prompt and "Books the user liked" in prompt
    assert not FILM_WORDS.search(prompt)
    enrich = Enricher(FakeLLM(), path=shop["items"].parent / "enrich.json", noun="book")
    assert "Describe this book" in enrich.prompt("A title") and not FILM_WORDS.search(
        enrich.prompt("A title")
    )
