"""Explainers turn :class:`~frugalrec.llm.evidence.Evidence` into one sentence.

``TemplateExplainer`` costs nothing and can only say what the evidence says. ``LLMExplainer``
asks the model to rephrase the same evidence; every LLM sentence passes the
:class:`~frugalrec.llm.guard.Guard`, and a rejected one is replaced by the template sentence
(``explainer`` then says "template" and ``rejected`` lists what was wrong).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from frugalrec.llm.evidence import Evidence
from frugalrec.llm.guard import Guard
from frugalrec.llm.runtime import LLM


def _display(title: str) -> str:
    """``"Usual Suspects, The (1995)"`` -> ``"The Usual Suspects (1995)"``."""
    m = re.match(r"^(.*?), (The|A|An)( \(.*)?$", title)
    return f"{m.group(2)} {m.group(1)}{m.group(3) or ''}" if m else title


def _singular(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") and len(noun) > 3 else noun


# Who "people like you" are, per domain noun (a neutral word for any other).
_AUDIENCE = {"films": "viewers", "movies": "viewers", "books": "readers"}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class TemplateExplainer:
    name = "template"

    def explain(self, ev: Evidence) -> str:
        """One sentence from the evidence alone (zero model cost)."""
        parts = []
        if ev.because:
            parts.append("you liked " + _join([_display(t) for _, t, _ in ev.because]))
        if ev.shared_genres:
            parts.append(
                "it is "
                + _join([f"{g} ({round(100 * w)}% of your {ev.noun})" for g, w in ev.shared_genres])
            )
        if ev.query_terms:
            parts.append("it matches your request (" + ", ".join(ev.query_terms) + ")")
        if not parts:
            who = _AUDIENCE.get(ev.noun, "people")
            return f"{_display(ev.title)} is popular with {who} like you."
        return f"Recommended because {'; '.join(parts)}."


@dataclass
class Explained:
    explanation: str
    explainer: str
    evidence: dict[str, Any]
    rejected: list[str] = field(default_factory=list)
    ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "explanation": self.explanation,
            "explainer": self.explainer,
            "evidence": self.evidence,
        }
        if self.rejected:
            out["rejected_llm_explanation"] = self.rejected
        return out


class LLMExplainer:
    """The LLM rephrases the evidence; the guard decides whether the sentence is served."""

    def __init__(self, llm: LLM, guard: Guard, max_tokens: int = 40) -> None:
        self.llm = llm
        self.guard = guard
        self.max_tokens = max_tokens
        self.name = llm.name

    def prompt(self, ev: Evidence) -> str:
        one = _singular(ev.noun)
        facts = [f"Recommended {one}: {_display(ev.title)}"]
        if ev.because:
            facts.append("The user liked: " + "; ".join(_display(t) for _, t, _ in ev.because))
        if ev.shared_genres:
            facts.append("Genres in common: " + ", ".join(g for g, _ in ev.shared_genres))
        if ev.query_terms:
            facts.append("Matches the request: " + ", ".join(ev.query_terms))
        return self.llm.chat_prompt(
            f"Write one short sentence telling the user why this {one} is recommended. "
            f"Use only these facts; do not mention any other {one}, person, genre or year.\n"
            + "\n".join(facts)
        )

    def explain(self, ev: Evidence, fallback: TemplateExplainer) -> Explained:
        t0 = time.perf_counter()
        try:
            text = self.llm.generate(self.prompt(ev), self.max_tokens)
        except Exception as exc:  # a failing model must not fail the request
            text, err = "", f"error: {type(exc).__name__}"
        else:
            err = ""
        text = text.strip().split("\n")[0].strip()
        verdict = self.guard.check(text, ev)
        ms = (time.perf_counter() - t0) * 1e3
        if verdict.ok and not err:
            return Explained(text, self.name, ev.to_dict(), ms=ms)
        return Explained(
            fallback.explain(ev), "template", ev.to_dict(), [err] if err else verdict.violations, ms
        )


def explain_all(
    evidence: list[Evidence], llm_explainer: LLMExplainer | None = None
) -> list[Explained]:
    """Template explanations, or LLM ones guarded with the template as fallback."""
    template = TemplateExplainer()
    if llm_explainer is None:
        return [Explained(template.explain(ev), "template", ev.to_dict()) for ev in evidence]
    return [llm_explainer.explain(ev, template) for ev in evidence]


def explained_rows(
    evidence: list[Evidence],
    guard: Guard,
    llm_explainer: LLMExplainer | None = None,
    check_template: bool = True,
) -> list[dict[str, Any]]:
    """Per item, the fields every served explanation carries: ``explanation``,
    ``explainer``, ``evidence`` (and ``rejected_llm_explanation``), plus ``grounded``: the
    guard's verdict on the sentence actually served. Shared by the CLI, chat and service.

    ``check_template=False`` skips the guard for template sentences (grounded by
    construction: they say only what the evidence says; tested) - the guard
    costs ~0.2 ms per sentence, which a service's explain path need not pay."""
    rows = []
    for ex, ev in zip(explain_all(evidence, llm_explainer), evidence, strict=True):
        row = ex.to_dict()
        if check_template or ex.explainer != "template":
            row["grounded"] = guard.check(ex.explanation, ev).ok
        else:
            row["grounded"] = True
        rows.append(row)
    return rows
