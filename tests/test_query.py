"""Natural-language requests: constraints parsed by rules are honoured exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalrec.pipeline.query import constraint_mask, parse_query, score_query
from frugalrec.pipeline.query_eval import ndcg_at_k, query_set


@pytest.mark.parametrize(
    ("request_text", "include", "exclude", "years"),
    [
        (
            "a funny animated movie for kids",
            {"Comedy", "Animation", "Children's"},
            set(),
            (None, None),
        ),
        ("something exciting, no horror", set(), {"Horror"}, (None, None)),
        ("a western between 1950 and 1970", {"Western"}, set(), (1950, 1970)),
        ("comedies from the 80s", {"Comedy"}, set(), (1980, 1989)),
        ("thrillers before 1980 without romance", {"Thriller"}, {"Romance"}, (None, 1979)),
        ("sci-fi after 1990", {"Sci-Fi"}, set(), (1991, None)),
        ("older war films", {"War"}, set(), (None, 1960)),  # the older half of 1922-1998
        ("recent dramas", {"Drama"}, set(), (1995, None)),  # its newest twentieth
        # Everyday speech (the words of the category-word table, negations, year phrases).
        ("a tearjerker, nothing older than 1990", {"Drama"}, set(), (1990, None)),
        ("a whodunnit that isn't a comedy", {"Mystery"}, {"Comedy"}, (None, None)),
        ("a rom-com from the seventies", {"Comedy", "Romance"}, set(), (1970, 1979)),
        ("slasher flicks, not a sci-fi one", {"Horror"}, {"Sci-Fi"}, (None, None)),
        ("something spooky but not too gory", {"Horror"}, set(), (None, None)),
        ("no horror or romance, a cartoon", {"Animation"}, {"Horror", "Romance"}, (None, None)),
        ("sword fights, the late 80s", {"Adventure"}, set(), (1986, 1989)),
        ("a western from the forties or fifties", {"Western"}, set(), (1940, 1959)),
        ("a drama without any romance, 1970 or earlier", {"Drama"}, {"Romance"}, (None, 1970)),
        ("musicals from 1950 to 1965", {"Musical"}, set(), (1950, 1965)),
        ("a slasher, nothing before '80", {"Horror"}, set(), (1980, None)),
        ("war stories since 1990", {"War"}, set(), (1990, None)),
        ("a movie about family", set(), set(), (None, None)),  # a topic, not an audience
        ("fun for the whole family", {"Children's"}, set(), (None, None)),
    ],
)
def test_parse_query(request_text, include, exclude, years) -> None:  # type: ignore[no-untyped-def]
    intent = parse_query(request_text, catalogue_years=(1922, 1998))
    assert intent.include == include
    assert intent.exclude == exclude
    assert (intent.year_min, intent.year_max) == years


ITEMS = pd.DataFrame(
    {
        "title": ["Toy Story", "Scream", "Casablanca", "Aladdin", "Alien"],
        "year": pd.array([1995, 1996, 1942, 1992, None], dtype="Int64"),
        "genres": ["Animation|Children's|Comedy", "Horror|Thriller", "Drama|Romance|War",
                   "Animation|Children's|Comedy|Musical", "Horror|Sci-Fi"],
    }
)  # fmt: skip


def test_constraints_are_hard_filters() -> None:
    intent = parse_query("no horror from the 90s")
    mask = constraint_mask(intent, ITEMS)
    assert mask.tolist() == [True, False, False, True, False]  # unknown year fails
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 8)).astype(np.float32)
    scores = score_query(intent, vecs[1], vecs, ITEMS)  # query vector = Scream's
    assert np.isneginf(scores[[1, 2, 4]]).all() and np.isfinite(scores[[0, 3]]).all()


def test_genre_match_and_user_blend() -> None:
    intent = parse_query("a funny cartoon")
    vecs = np.zeros((5, 4), np.float32)  # an encoder that knows nothing
    s = score_query(intent, np.zeros(4, np.float32), vecs, ITEMS)
    assert set(np.argsort(-s)[:2]) == {0, 3}  # the rules still find the cartoons
    user = np.array([0, 0, 0, 10, 0], np.float32)
    s2 = score_query(intent, np.zeros(4, np.float32), vecs, ITEMS, user_scores=user)
    assert np.argmax(s2) == 3


def test_query_set_relevance_is_consistent_with_metadata(ml100k) -> None:  # type: ignore[no-untyped-def]
    qs = query_set(ml100k.items)
    assert len(qs) > 50
    for q, rel in qs:
        intent = parse_query(q)
        mask = constraint_mask(intent, ml100k.items)
        assert mask[rel].all(), q  # every relevant item satisfies the parsed constraints


def test_ndcg_at_k_known_answer() -> None:
    scores = np.array([0.9, 0.8, 0.7, -np.inf])
    assert ndcg_at_k(scores, np.array([0]), k=2) == pytest.approx(1.0)
    assert ndcg_at_k(scores, np.array([1]), k=2) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k(scores, np.array([3]), k=4) == 0.0


@pytest.mark.parametrize(
    ("request_text", "include", "exclude"),
    [
        ("sci-fi for kids, no cookbooks", {"Science Fiction", "Children"}, {"Cooking"}),
        ("a detective story, no romance", {"Mystery"}, {"Romance"}),
        ("biographies or self-help", {"Biography", "Self-Help"}, set()),
        ("something about cooking, not poetry", {"Cooking"}, {"Poetry"}),
        ("other things", set(), set()),  # a generic category name is not a request
    ],
)
def test_rules_read_the_catalogues_own_categories(request_text, include, exclude) -> None:  # type: ignore[no-untyped-def]
    cats = ("Biography", "Children", "Cooking", "Mystery", "Other", "Poetry", "Romance",
            "Science Fiction", "Self-Help")  # fmt: skip
    intent = parse_query(request_text, categories=cats)
    assert intent.include == include and intent.exclude == exclude


def test_scoring_rereads_a_reference_parse_against_the_catalogue() -> None:
    """A caller that parses without the vocabulary (as the service does) still gets the
    catalogue's categories applied, and sees them in the intent."""
    items = pd.DataFrame(
        {"title": ["A", "B", "C"], "genres": ["Cooking", "Cooking|Romance", "Poetry"]}
    )
    intent = parse_query("recipes, no romance")  # reference vocabulary: neither word
    mask = constraint_mask(intent, items)
    assert mask.tolist() == [True, False, True]
    assert intent.include == {"Cooking"} and intent.exclude == {"Romance"}
    s = score_query(intent, np.zeros(2, np.float32), np.zeros((3, 2), np.float32), items)
    assert int(np.argmax(s)) == 0


def test_category_words_pick_the_first_alternative_the_catalogue_has() -> None:
    """'rom-com' asks for comedy *and* romance where a catalogue has both, for its own
    'Romantic Comedy' where that is what it has; a catalogue with neither reads nothing."""
    assert parse_query("a rom-com", categories=("Comedy", "Drama", "Romance")).include == {
        "Comedy",
        "Romance",
    }
    only = parse_query("a rom-com", categories=("Romantic Comedy", "Drama", "Comedy"))
    assert only.include == {"Romantic Comedy"}
    assert parse_query("a rom-com", categories=("Drama", "Poetry")).include == set()


def test_a_catalogue_extends_and_overrides_the_category_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from frugalrec.pipeline.query import load_category_words

    cats = ("Crime", "Mystery", "Gardening")
    f = tmp_path / "words.json"
    f.write_text('{"words": {"whodunnit": [["crime"]], "Allotment": [["gardening"]]}}')
    words = load_category_words(f)
    assert words == {"whodunnit": (("crime",),), "allotment": (("gardening",),)}
    assert parse_query("a whodunnit", categories=cats).include == {"Mystery"}  # packaged
    got = parse_query("a whodunnit, no allotment books", categories=cats, words=words)
    assert got.include == {"Crime"} and got.exclude == {"Gardening"}
    for bad in ('{"words": {"x": "crime"}}', '{"words": {"x": [[]]}}', "[1, 2]"):
        f.write_text(bad)
        with pytest.raises(ValueError):
            load_category_words(f)


@pytest.mark.parametrize(
    ("request_text", "include"),
    [
        ("a time-travel story", {"Sci-Fi"}),  # the table says "time travel"
        ("a show-tune spectacular", {"Musical"}),  # the table says "show tunes"
        ("a coming of age story", {"Drama"}),  # the table says "coming-of-age"
        ("lots of fist fights and stunts", {"Action"}),
    ],
)
def test_phrases_match_with_hyphens_or_spaces(request_text, include) -> None:  # type: ignore[no-untyped-def]
    assert parse_query(request_text).include == include


@pytest.mark.parametrize(
    ("request_text", "include", "years"),
    [
        ("a horror film, but nothing from the nineties", {"Horror"}, (None, 1989)),
        ("not the 80s please, a comedy", {"Comedy"}, (None, 1979)),
        ("anything but the twenties", set(), (1930, None)),  # more of the span lies after
        ("a comedy from the nineties", {"Comedy"}, (1990, 1999)),  # not negated
        ("no horror from the 90s", set(), (1990, 1999)),  # the genre is negated, not the decade
    ],
)
def test_a_negated_decade_is_excluded(request_text, include, years) -> None:  # type: ignore[no-untyped-def]
    intent = parse_query(request_text, catalogue_years=(1922, 1998))
    assert intent.include == include and (intent.year_min, intent.year_max) == years


@pytest.mark.parametrize(
    ("request_text", "years"),
    [
        ("a crime movie from the seventies or later", (1970, None)),
        ("the 80s onwards, a comedy", (1980, None)),
        ("a western, the fifties or earlier", (None, 1959)),
        ("a mystery, nothing too modern, before 1980", (None, 1979)),  # a degree, not "recent"
        ("not too old, a drama", (None, None)),
        ("a recent comedy", (1995, None)),
    ],
)
def test_open_decades_and_time_degrees(request_text, years) -> None:  # type: ignore[no-untyped-def]
    intent = parse_query(request_text, catalogue_years=(1922, 1998))
    assert (intent.year_min, intent.year_max) == years
