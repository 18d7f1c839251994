"""Explanations grounded by construction, and the independent checker that audits them.

The chooser (``ChoosingExplainer``) may only pick evidence facts by number; the checker
(``Guard``) shares no code with it. Property tests draw random catalogues (a bookshop's, not
films), random evidence and arbitrary model answers.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frugalrec.llm.evidence import Evidence
from frugalrec.llm.explainers import (
    ChoosingExplainer,
    TemplateExplainer,
    choice_grammar,
    facts,
    parse_choice,
)
from frugalrec.llm.fake import FakeLLM
from frugalrec.llm.guard import Guard

FILMS = pd.DataFrame(
    {
        "title": [
            "Spaceballs (1987)", "Star Wars (1977)", "Airplane! (1980)", "Fargo (1996)",
            "Godfather, The (1972)", "Jaws (1975)", "Usual Suspects, The (1995)",
            "Groundhog Day (1993)",
        ],
        "year": [1987, 1977, 1980, 1996, 1972, 1975, 1995, 1993],
        "genres": [
            "Comedy|Sci-Fi", "Action|Sci-Fi|War", "Comedy", "Crime|Drama|Thriller",
            "Action|Crime|Drama", "Action|Horror", "Crime|Thriller", "Comedy|Romance",
        ],
    }
)  # fmt: skip


def _ev() -> Evidence:
    return Evidence(
        item=0,
        title="Spaceballs (1987)",
        year=1987,
        genres=["Comedy", "Sci-Fi"],
        because=[(1, "Star Wars (1977)", 0.4), (2, "Airplane! (1980)", 0.3)],
        shared_genres=[("Comedy", 0.5), ("Sci-Fi", 0.25)],
        noun="films",
    )


ADVERSARIAL = {
    # lower-case titles outside the evidence, anywhere in the sentence
    "fans of fargo and the godfather will love this": "title",
    "if you liked star wars you will like jaws": "title",
    "Like the usual suspects, it keeps you guessing.": "title",
    # a person's name at the start of a sentence, and a role
    "Spielberg directed this Comedy.": "name",
    "Mel Brooks made this after Airplane!.": "name",
    # decades and years in words and digits
    "A comedy from the nineties.": "decade",
    "Pure sixties fun, like Star Wars.": "decade",
    "A 1984 classic for fans of Airplane!.": "year",
    "Made in the '90s for fans of Star Wars.": "decade",
    # award claims
    "An Oscar-winning comedy like Airplane!.": "award",
    "Nominated for three Academy Awards.": "award",
    "A critically acclaimed spoof of Star Wars.": "award",
    # genres and numbers outside the evidence
    "A horror spoof for fans of Star Wars.": "genre",
    "90% of your films are comedies.": "number",
    "": "empty",
}


@pytest.mark.parametrize(("text", "kind"), list(ADVERSARIAL.items()))
def test_the_checker_catches_adversarial_sentences(text: str, kind: str) -> None:
    res = Guard(FILMS).check(text, _ev())
    assert not res.ok
    assert any(v.startswith(kind) for v in res.violations), res.violations


@pytest.mark.parametrize(
    "text",
    [
        "Recommended because you liked Star Wars and Airplane!.",
        "Since you enjoyed Star Wars and Airplane!, this Comedy from 1987 should make you laugh.",
        "Fans of star wars will enjoy this sci-fi comedy.",
        "It is a Comedy, like 50% of your films.",
        "A film from the 1980s, like Airplane!.",
        "Spaceballs is a comedy for fans of Star Wars.",
    ],
)
def test_the_checker_accepts_sentences_that_only_say_the_evidence(text: str) -> None:
    res = Guard(FILMS).check(text, _ev())
    assert res.ok, res.violations


def test_the_chooser_asks_under_a_grammar_and_builds_the_sentence_from_its_choice() -> None:
    llm = FakeLLM(replies=["2,0"])
    ex = ChoosingExplainer(llm).explain(_ev(), TemplateExplainer())
    assert llm.grammars == [choice_grammar(4)]
    assert ex.chosen == [2, 0] and ex.explainer == "fake/choose"
    # Grouped by kind, in the order the first fact of each kind was chosen.
    assert ex.explanation == (
        "Recommended because it is Comedy (50% of your films); you liked Star Wars (1977)."
    )
    assert Guard(FILMS).check(ex.explanation, _ev()).ok


def test_choice_grammar_and_parser_agree() -> None:
    g = choice_grammar(3)
    assert g.splitlines()[0] == 'root ::= idx ("," idx)? ("," idx)?'
    assert g.splitlines()[1] == 'idx ::= "0" | "1" | "2"'
    assert choice_grammar(1).splitlines()[0] == "root ::= idx"
    assert parse_choice("1,1,0", 3) == [1, 0]
    assert parse_choice("3", 3) is None and parse_choice("one", 3) is None
    with pytest.raises(ValueError):
        choice_grammar(0)


# ---- properties over random bookshop catalogues -------------------------------------------

WORDS = [
    "Crimson", "Harbour", "Velvet", "Echo", "Lantern", "Orchard", "Granite", "Meadow", "Falcon",
    "Ember", "Quarry", "Willow", "Cobalt", "Saffron", "Tundra", "Marble", "Juniper", "Harp",
]  # fmt: skip
GENRES = ["Poetry", "Cookery", "Travel", "Biography", "Gardening", "Fantasy", "Mystery"]


@st.composite
def catalogue_and_evidence(draw: st.DrawFn) -> tuple[pd.DataFrame, Evidence]:
    n = draw(st.integers(4, 12))
    titles = draw(
        st.lists(
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
            min_size=n, max_size=n, unique=True,
        )
    )  # fmt: skip
    years = draw(st.lists(st.integers(1900, 2024), min_size=n, max_size=n))
    genres = draw(
        st.lists(st.lists(st.sampled_from(GENRES), min_size=1, max_size=3, unique=True),
                 min_size=n, max_size=n)
    )  # fmt: skip
    items = pd.DataFrame(
        {
            "title": [f"{t} ({y})" for t, y in zip(titles, years, strict=True)],
            "year": years,
            "genres": ["|".join(g) for g in genres],
        }
    )
    item = draw(st.integers(0, n - 1))
    others = [i for i in range(n) if i != item]
    because = draw(st.lists(st.sampled_from(others), max_size=3, unique=True))
    shared = draw(st.lists(st.sampled_from(genres[item]), max_size=2, unique=True))
    shares = draw(st.lists(st.floats(0.01, 1.0), min_size=len(shared), max_size=len(shared)))
    query = draw(st.lists(st.sampled_from(genres[item]), max_size=2, unique=True))
    ev = Evidence(
        item=item,
        title=items["title"][item],
        year=years[item],
        genres=genres[item],
        because=[(j, items["title"][j], 0.1) for j in because],
        shared_genres=list(zip(shared, shares, strict=True)),
        query_terms=query,
        popular=not because and not shared and not query,
    )
    return items, ev


ANSWERS = st.one_of(
    st.lists(st.integers(0, 8), min_size=1, max_size=4).map(lambda xs: ",".join(map(str, xs))),
    st.text(max_size=40),
    st.sampled_from(["Fargo, obviously", "0,1 and the Oscar winner", "  1 ", "1,,2"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=catalogue_and_evidence(), answer=ANSWERS)
def test_the_chooser_never_names_anything_outside_its_evidence(
    data: tuple[pd.DataFrame, Evidence], answer: str
) -> None:
    items, ev = data
    ex = ChoosingExplainer(FakeLLM(replies=[answer])).explain(ev, TemplateExplainer())
    text = ex.explanation.lower()
    # Checked here without the checker: no title outside the evidence, no number or year
    # that is not an evidence share or year, no genre the evidence does not hold.
    allowed = {ev.item, *(j for j, _, _ in ev.because)}
    for j, title in enumerate(items["title"]):
        bare = re.sub(r" \(\d{4}\)$", "", title).lower()
        if j not in allowed and not any(bare in items["title"][a].lower() for a in allowed):
            assert not re.search(rf"\b{re.escape(bare)}\b", text), (title, text)
    numbers = {int(x) for x in re.findall(r"\d+", text)}
    evidence_numbers = {round(100 * s) for _, s in ev.shared_genres}
    evidence_numbers |= {int(y) for y in re.findall(r"\d{4}", " ".join(ev.titles()))}
    assert numbers <= evidence_numbers, (numbers, evidence_numbers, text)
    for g in GENRES:
        if g.lower() in text:
            assert g in ev.genres, (g, text)
    # ... and the independent checker agrees.
    assert Guard(items).check(ex.explanation, ev).ok, (ex.explanation, ev)
    # A valid answer is served as the model's choice, anything else as the template.
    fs = facts(ev)
    choice = parse_choice(answer, len(fs)) if len(fs) > 1 else None
    if choice is None:
        assert ex.explainer == "template"
    else:
        assert ex.chosen == choice


@pytest.mark.slow
def test_real_model_choices_parse_under_the_grammar() -> None:
    """SmolLM2 under the choice grammar: every answer parses (the grammar admits nothing
    else), on several evidence shapes."""
    from frugalrec.llm.runtime import load_llm

    llm = load_llm("smollm2-135m")
    exp = ChoosingExplainer(llm)
    ev = _ev()
    for k in (2, 3, 4):
        ev_k = Evidence(**{**ev.__dict__, "shared_genres": ev.shared_genres[: max(0, k - 2)]})
        fs = facts(ev_k)
        answer = llm.generate(exp.prompt(ev_k, fs), exp.max_tokens, grammar=choice_grammar(len(fs)))
        assert parse_choice(answer, len(fs)) is not None, answer
