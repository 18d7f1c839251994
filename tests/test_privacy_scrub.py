"""PII scrubbing: a corpus of texts that must be scrubbed and texts that must survive."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frugalrec.privacy.scrub import (
    PLACEHOLDERS,
    contains_pii,
    find_pii,
    luhn_valid,
    scrub_text,
    scrub_texts,
)

# (text, the PII substring, the placeholder it must become)
POSITIVE = [
    ("mail me at jane.doe+movies@example.co.uk please", "jane.doe+movies@example.co.uk", "[EMAIL]"),
    ("Contact: J_Smith99@mail-server.org.", "J_Smith99@mail-server.org", "[EMAIL]"),
    ("call me on +44 20 7946 0958 tonight", "+44 20 7946 0958", "[PHONE]"),
    ("my number is (555) 123-4567", "(555) 123-4567", "[PHONE]"),
    ("reach me 555-123-4567 after 6", "555-123-4567", "[PHONE]"),
    ("or 555.123.4567", "555.123.4567", "[PHONE]"),
    ("appelle-moi au 06 12 34 56 78", "06 12 34 56 78", "[PHONE]"),
    ("office 020 7946 0958 ext", "020 7946 0958", "[PHONE]"),
    ("+1-202-555-0173 is my cell", "+1-202-555-0173", "[PHONE]"),
    ("phone: 5551234567", "5551234567", "[PHONE]"),
    ("text me at 0151 496 0123", "0151 496 0123", "[PHONE]"),
    ("card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111", "[CARD]"),
    ("paid with 5500-0000-0000-0004", "5500-0000-0000-0004", "[CARD]"),
    ("amex 3782 822463 10005 ok", "3782 822463 10005", "[CARD]"),
    ("number 4012888888881881 thanks", "4012888888881881", "[CARD]"),
    ("new mastercard 2221000000000009", "2221000000000009", "[CARD]"),
    ("ssn 123-45-6789", "123-45-6789", "[SSN]"),
    ("IBAN GB82 WEST 1234 5698 7654 32 for refunds", "GB82 WEST 1234 5698 7654 32", "[IBAN]"),
    ("DE89370400440532013000", "DE89370400440532013000", "[IBAN]"),
    (
        "reset at https://example.com/reset?token=abc123XYZ&u=1 now",
        "https://example.com/reset?token=abc123XYZ&u=1",
        "[URL]",
    ),
    (
        "see https://bob:hunter2@files.example.com/x.csv.",
        "https://bob:hunter2@files.example.com/x.csv",
        "[URL]",
    ),
    (
        "(https://s3.amazonaws.com/b/k?X-Amz-Signature=deadbeef00)",
        "https://s3.amazonaws.com/b/k?X-Amz-Signature=deadbeef00",
        "[URL]",
    ),
    (
        "link www.site.io/dl/9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee1234/file",
        "www.site.io/dl/9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee1234/file",
        "[URL]",
    ),
    (
        "https://api.example.com/cb#access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "https://api.example.com/cb#access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "[URL]",
    ),
    ("I live at 221B Baker Street, London", "221B Baker Street", "[ADDRESS]"),
    ("ship to 1600 Pennsylvania Ave NW", "1600 Pennsylvania Ave", "[ADDRESS]"),
    ("deliver: 42 W. Maple Dr., Apt 5", "42 W. Maple Dr., Apt 5", "[ADDRESS]"),
    ("send to P.O. Box 1234", "P.O. Box 1234", "[ADDRESS]"),
]

NEGATIVE = [
    "Toy Story (1995)",
    "Se7en (1995)",
    "Apollo 13 (1995)",
    "2001: A Space Odyssey (1968)",
    "12 Angry Men (1957)",
    "Miracle on 34th Street (1994)",
    "42nd Street (1933)",
    "The 39 Steps (1935)",
    "Ocean's 11",
    "Star Wars: Episode IV",
    "movies from 1995-1998 or 2001-2003 please",
    "films of 1990 1991 1992 1993 like Heat",
    "It costs $19.99, or 1,299.00 for the box set (€12,50)",
    "ISBN 978-0-306-40615-7",
    "ISBN-13: 9780306406157",
    "ISBN 0-306-40615-2",
    "released 1997-12-19 at 10:30",
    "rated 4.5 out of 5 by 1,234 users",
    "something like Alien but funnier, 90 minutes max",
    "https://www.imdb.com/title/tt0114709/",
    "see http://example.com/movies?page=2&sort=year",
    "the user @moviefan liked it",
    "my zip is gone, I watch 3 films a week",
    "sci-fi from the 80s with 2 leads",
    "version 3.14.159 of the player",
    "IP 192.168.1.1 is down",
    "Top 10 thrillers of 2023",
    "order #1234567",
    "1 2 3 4 5 6 7 8 9 10",
    "",
    "no digits at all here",
]


@pytest.mark.parametrize(("text", "pii", "placeholder"), POSITIVE)
def test_positive_examples_are_scrubbed(text: str, pii: str, placeholder: str) -> None:
    out = scrub_text(text)
    assert pii not in out
    assert out == text.replace(pii, placeholder)
    assert contains_pii(text)


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_examples_survive(text: str) -> None:
    assert scrub_text(text) == text
    assert find_pii(text) == []


def test_several_kinds_in_one_text_and_batch_order() -> None:
    text = "I'm ann@x.org, +33 6 12 34 56 78, card 4111111111111111, loved Heat (1995)"
    out = scrub_text(text)
    assert out == "I'm [EMAIL], [PHONE], card [CARD], loved Heat (1995)"
    kinds = [s.kind for s in find_pii(text)]
    assert kinds == ["email", "phone", "card"]
    assert scrub_texts(["a@b.io", "Se7en", text]) == ["[EMAIL]", "Se7en", out]


def test_luhn_rejects_one_digit_change() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    # A Luhn-invalid number in card layout is not a card (and not scrubbed as one).
    assert "[CARD]" not in scrub_text("ref 4111 1111 1111 1112")


def test_scrubbing_is_idempotent_and_placeholders_are_clean() -> None:
    for text, _, _ in POSITIVE:
        once = scrub_text(text)
        assert scrub_text(once) == once
    for placeholder in PLACEHOLDERS.values():
        assert not contains_pii(placeholder)


def test_non_string_is_refused() -> None:
    with pytest.raises(TypeError):
        scrub_text(12345)  # type: ignore[arg-type]


def test_item_texts_are_scrubbed_before_any_encoder() -> None:
    import pandas as pd

    from frugalrec.text.items import item_texts

    items = pd.DataFrame(
        {
            "item": ["a", "b"],
            "title": ["Se7en", "Heat"],
            "year": [1995, 1995],
            "description": ["dark thriller", "seller: bob@films.example, call 555-123-4567"],
        }
    )
    texts = item_texts(items)
    assert texts[0] == "Se7en (1995). Description: dark thriller."
    assert "bob@films.example" not in texts[1] and "555-123-4567" not in texts[1]
    assert "[EMAIL]" in texts[1] and "[PHONE]" in texts[1]


def test_queries_are_scrubbed_before_parsing() -> None:
    from frugalrec.pipeline.query import parse_query

    intent = parse_query("funny movies from the 90s, mail me at ann@x.org or +1 202 555 0173")
    assert "ann@x.org" not in intent.raw and "ann@x.org" not in intent.text
    assert "555" not in intent.text
    assert intent.include == {"Comedy"}
    assert (intent.year_min, intent.year_max) == (1990, 1999)


def test_chat_turns_are_scrubbed_before_the_llm_prompt() -> None:
    from frugalrec.llm.chat import ChatSession
    from frugalrec.llm.fake import FakeLLM
    from frugalrec.llm.request import LLMTier
    from frugalrec.models import EASERecommender
    from frugalrec.serve.catalogue import synthetic_dataset

    prompts: list[str] = []

    class RecordingLLM(FakeLLM):
        def logits_for_next_token(self, batch):  # type: ignore[no-untyped-def]
            prompts.extend(batch)
            return super().logits_for_next_token(batch)

    ds = synthetic_dataset()
    session = ChatSession(LLMTier(ds, EASERecommender().fit(ds)), None, llm=RecordingLLM())
    out = session.turn("something for a rainy day, text me on +1 202 555 0173 or ann@x.org")
    assert out["parser"] == "llm" and prompts
    for leaked in ("555 0173", "ann@x.org"):
        assert all(leaked not in p for p in prompts) and leaked not in out["turn"]
    assert "[PHONE]" in out["turn"] and "[EMAIL]" in out["turn"]


@pytest.mark.slow
def test_ml100k_item_texts_are_untouched(ml100k) -> None:
    from frugalrec.text.items import item_texts

    texts = item_texts(ml100k.items)  # scrubbed on the way out
    assert len(texts) == 1682
    assert [t for t in texts if any(p in t for p in PLACEHOLDERS.values())] == []
    assert [t for t in ml100k.items["title"].astype(str) if find_pii(t)] == []


_PIECES = [
    *"0123456789 -.()+@:/?=&#abcXYZ",
    "call ",
    " Street",
    "https://",
    "token",
    ".com",
    "4111",
]


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.text(max_size=80), st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
)
def test_scrubbed_text_is_clean_and_stable(text: str) -> None:
    out = scrub_text(text)
    assert find_pii(out) == []
    assert scrub_text(out) == out
