"""Explainers turn :class:`~frugalrec.llm.evidence.Evidence` into one sentence.

* ``TemplateExplainer`` costs nothing: every evidence fact, in a fixed order.
* ``ChoosingExplainer`` (grounded by construction, the default LLM explainer): the evidence
  is written as numbered facts (history items, shared genres, request terms); the LLM answers
  only with up to three fact numbers, most convincing first, under a GBNF grammar that admits
  nothing else; the sentence is then built from the chosen facts by the same phrases as the
  template. The model never writes a word of the sentence, so it cannot name anything outside
  the evidence.
* ``LLMExplainer`` (free text): the LLM writes the sentence; it is served only where the
  independent checker (:class:`~frugalrec.llm.guard.Guard`) finds every claim in the evidence,
  otherwise the template sentence is served.

Served rows carry ``grounded``: the checker's verdict on the sentence actually served.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from frugalrec.data.dataset import singular
from frugalrec.llm.evidence import Evidence
from frugalrec.llm.guard import Guard
from frugalrec.llm.runtime import LLM

MAX_CHOSEN = 3


def _display(title: str) -> str:
    """``"Usual Suspects, The (1995)"`` -> ``"The Usual Suspects (1995)"``."""
    m = re.match(r"^(.*?), (The|A|An)( \(.*)?$", title)
    return f"{m.group(2)} {m.group(1)}{m.group(3) or ''}" if m else title


# Who "people like you" are, per domain noun (a neutral word for any other).
_AUDIENCE = {"films": "viewers", "movies": "viewers", "books": "readers"}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass(frozen=True)
class Fact:
    """One evidence item an explanation may cite: ``kind`` is ``liked`` (a history item),
    ``genre`` (a shared genre with its share of the history) or ``request`` (a query term)."""

    kind: str
    text: str
    share: float = 0.0

    def prompt_line(self) -> str:
        if self.kind == "liked":
            return f"the user liked {self.text}"
        if self.kind == "genre":
            return f"it is {self.text}, like {round(100 * self.share)}% of the user's history"
        return f"it matches the user's request: {self.text}"


def facts(ev: Evidence) -> list[Fact]:
    """The evidence as facts, in the template's order (history, genres, request terms)."""
    out = [Fact("liked", _display(t)) for _, t, _ in ev.because]
    out += [Fact("genre", g, s) for g, s in ev.shared_genres]
    out += [Fact("request", t) for t in ev.query_terms]
    return out


def sentence(ev: Evidence, chosen: list[Fact]) -> str:
    """The sentence for ``chosen`` facts, grouped by kind in the order the first fact of each
    kind was chosen (so "most convincing first" survives grouping)."""
    if not chosen:
        who = _AUDIENCE.get(ev.noun, "people")
        return f"{_display(ev.title)} is popular with {who} like you."
    kinds = list(dict.fromkeys(f.kind for f in chosen))
    parts = []
    for kind in kinds:
        group = [f for f in chosen if f.kind == kind]
        if kind == "liked":
            parts.append("you liked " + _join([f.text for f in group]))
        elif kind == "genre":
            parts.append(
                "it is "
                + _join([f"{f.text} ({round(100 * f.share)}% of your {ev.noun})" for f in group])
            )
        else:
            parts.append("it matches your request (" + ", ".join(f.text for f in group) + ")")
    return f"Recommended because {'; '.join(parts)}."


class TemplateExplainer:
    name = "template"

    def explain(self, ev: Evidence) -> str:
        """One sentence from the evidence alone (zero model cost)."""
        return sentence(ev, facts(ev))


@dataclass
class Explained:
    explanation: str
    explainer: str
    evidence: dict[str, Any]
    rejected: list[str] = field(default_factory=list)
    ms: float = 0.0
    chosen: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "explanation": self.explanation,
            "explainer": self.explainer,
            "evidence": self.evidence,
        }
        if self.rejected:
            out["rejected_llm_explanation"] = self.rejected
        if self.chosen is not None:
            out["chosen_facts"] = self.chosen
        return out


def choice_grammar(n_facts: int, max_chosen: int = MAX_CHOSEN) -> str:
    """GBNF admitting 1..``max_chosen`` comma-separated fact numbers in ``0..n_facts-1``."""
    if n_facts < 1:
        raise ValueError("a choice needs at least one fact")
    idx = " | ".join(f'"{i}"' for i in range(n_facts))
    more = ' ("," idx)?' * (min(max_chosen, n_facts) - 1)
    return f"root ::= idx{more}\nidx ::= {idx}\n"


def parse_choice(text: str, n_facts: int, max_chosen: int = MAX_CHOSEN) -> list[int] | None:
    """Fact numbers from the model's answer, deduplicated, in order; None if it is not a
    comma-separated list of valid numbers."""
    parts = [p.strip() for p in text.strip().split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        return None
    out: list[int] = []
    for p in parts:
        i = int(p)
        if i >= n_facts:
            return None
        if i not in out:
            out.append(i)
    return out[:max_chosen] or None


class ChoosingExplainer:
    """The LLM chooses and orders evidence facts under a grammar; the sentence is built from
    its choice. Nothing the model could write reaches the user except fact numbers."""

    def __init__(self, llm: LLM, max_chosen: int = MAX_CHOSEN, max_tokens: int = 12) -> None:
        self.llm = llm
        self.max_chosen = max_chosen
        self.max_tokens = max_tokens
        self.name = f"{llm.name}/choose"

    def prompt(self, ev: Evidence, fs: list[Fact]) -> str:
        lines = "\n".join(f"{i}. {f.prompt_line()}" for i, f in enumerate(fs))
        return self.llm.chat_prompt(
            f"We recommend {_display(ev.title)} to a user. Facts:\n{lines}\n"
            f"Which facts explain the recommendation best? Answer with up to "
            f"{self.max_chosen} fact numbers separated by commas, most convincing first "
            "(for example: 1,0)."
        )

    def explain(self, ev: Evidence, fallback: TemplateExplainer) -> Explained:
        t0 = time.perf_counter()
        fs = facts(ev)
        if len(fs) <= 1:  # nothing to choose: no model call
            return Explained(fallback.explain(ev), "template", ev.to_dict())
        err = ""
        try:
            answer = self.llm.generate(
                self.prompt(ev, fs),
                self.max_tokens,
                grammar=choice_grammar(len(fs), self.max_chosen),
            )
        except Exception as exc:  # a failing model must not fail the request
            answer, err = "", f"error: {type(exc).__name__}"
        chosen = parse_choice(answer, len(fs), self.max_chosen)
        ms = (time.perf_counter() - t0) * 1e3
        if chosen is None:
            why = [err or f"unparsable choice: {answer[:40]!r}"]
            return Explained(fallback.explain(ev), "template", ev.to_dict(), why, ms)
        text = sentence(ev, [fs[i] for i in chosen])
        return Explained(text, self.name, ev.to_dict(), ms=ms, chosen=chosen)


class LLMExplainer:
    """Free text: the LLM rephrases the evidence; the independent checker decides whether the
    sentence is served (else the template sentence is)."""

    def __init__(self, llm: LLM, guard: Guard, max_tokens: int = 40) -> None:
        self.llm = llm
        self.guard = guard
        self.max_tokens = max_tokens
        self.name = llm.name

    def prompt(self, ev: Evidence) -> str:
        one = singular(ev.noun)
        lines = [f"Recommended {one}: {_display(ev.title)}"]
        if ev.because:
            lines.append("The user liked: " + "; ".join(_display(t) for _, t, _ in ev.because))
        if ev.shared_genres:
            lines.append("Genres in common: " + ", ".join(g for g, _ in ev.shared_genres))
        if ev.query_terms:
            lines.append("Matches the request: " + ", ".join(ev.query_terms))
        return self.llm.chat_prompt(
            f"Write one short sentence telling the user why this {one} is recommended. "
            f"Use only these facts; do not mention any other {one}, person, genre or year.\n"
            + "\n".join(lines)
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


Explainer = ChoosingExplainer | LLMExplainer


def explain_all(
    evidence: list[Evidence], llm_explainer: Explainer | None = None
) -> list[Explained]:
    """Template explanations, or LLM ones with the template as fallback."""
    template = TemplateExplainer()
    if llm_explainer is None:
        return [Explained(template.explain(ev), "template", ev.to_dict()) for ev in evidence]
    return [llm_explainer.explain(ev, template) for ev in evidence]


def explained_rows(
    evidence: list[Evidence],
    guard: Guard,
    llm_explainer: Explainer | None = None,
    check_template: bool = True,
) -> list[dict[str, Any]]:
    """Per item, the fields every served explanation carries: ``explanation``,
    ``explainer``, ``evidence`` (and ``rejected_llm_explanation``, ``chosen_facts``), plus
    ``grounded``: the independent checker's verdict on the sentence actually served. Shared
    by the CLI, chat and service.

    ``check_template=False`` skips the check for template sentences (grounded by
    construction, tested) - the check costs a fraction of a millisecond per sentence, which
    a service's explain path need not pay."""
    rows = []
    for ex, ev in zip(explain_all(evidence, llm_explainer), evidence, strict=True):
        row = ex.to_dict()
        if check_template or ex.explainer != "template":
            row["grounded"] = guard.check(ex.explanation, ev).ok
        else:
            row["grounded"] = True
        rows.append(row)
    return rows
