"""The independent grounding checker on ml-100k: served explanations and adversarial ones.

    python scripts/bench_grounding.py [--old-guard PATH]

1. Served, grounded by construction: for every test user, the cheap stage's top 10 with
   evidence; explained by the template and by the choosing explainer driven by a seeded
   random chooser (any fact numbers a model could emit, including invalid ones); each served
   sentence audited by the checker (``frugalrec.llm.guard.Guard``), which shares no code
   with the explainers.
2. Adversarial free text written to slip past a capitalised-word regex (lower-case titles,
   names at a sentence start, decades in words, award claims) plus faithful paraphrases that
   must pass; checked by the checker and, with ``--old-guard``, by an older guard module.

Writes ``docs/bench/grounding.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_intent import machine  # noqa: E402

# On a fixed evidence: The Princess Bride (1987), because Star Wars (1977) and The Blues
# Brothers (1980), shared genres Comedy 50% and Adventure 25%.
ADVERSARIAL = [
    "fans of fargo and the godfather will love this",
    "if you liked star wars you will like jaws",
    "like the usual suspects, it keeps you guessing.",
    "Spielberg directed this Comedy.",
    "Rob Reiner made this after The Blues Brothers.",
    "Hitchcock would have loved this one.",
    "A comedy from the nineties.",
    "Pure sixties fun, like Star Wars.",
    "A 1984 classic for fans of Star Wars.",
    "Made in the '90s for fans of Star Wars.",
    "An Oscar-winning comedy like The Blues Brothers.",
    "Nominated for three Academy Awards.",
    "A critically acclaimed adventure like Star Wars.",
    "A horror spoof for fans of Star Wars.",
    "90% of your films are comedies.",
    "starring cary elwes, like star wars.",
    "a cult classic from the director of this is spinal tap",
    "like casablanca, only funnier.",
]
FAITHFUL = [
    "Recommended because you liked Star Wars and The Blues Brothers.",
    "Since you enjoyed Star Wars and The Blues Brothers, this Comedy from 1987 should make you "
    "laugh.",
    "Fans of star wars will enjoy this romantic adventure comedy.",
    "It is a Comedy, like 50% of your films.",
    "A film from the 1980s, like The Blues Brothers.",
    "The Princess Bride is a comedy for fans of Star Wars.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old-guard", default="", help="path of an older guard.py to compare")
    ap.add_argument("--out", default=str(ROOT / "docs/bench/grounding.json"))
    args = ap.parse_args(argv)

    from frugalrec.data.sources import load_dataset
    from frugalrec.data.splits import make_split
    from frugalrec.llm.evidence import Evidence, EvidenceBuilder
    from frugalrec.llm.explainers import ChoosingExplainer, TemplateExplainer
    from frugalrec.llm.fake import FakeLLM
    from frugalrec.llm.guard import Guard
    from frugalrec.llm.request import DEFAULT_EASE_L2, history_in_order
    from frugalrec.models import EASERecommender

    ds = load_dataset("ml-100k")
    split = make_split(ds, "random")
    model = EASERecommender(l2=DEFAULT_EASE_L2).fit(split.train_dataset(with_valid=True))
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    top, _ = model.recommend(users, k=10)
    mask = split.train_mask | split.valid_mask
    guard, builder, template = (
        Guard(ds.items),
        EvidenceBuilder(model, ds.items),
        TemplateExplainer(),
    )
    rng = np.random.default_rng(0)

    def random_choice(prompt: str) -> str:
        n = prompt.count("\n") + 3  # about the number of facts, plus invalid numbers
        k = int(rng.integers(1, 5))
        return ",".join(str(int(x)) for x in rng.integers(0, n, size=k))

    chooser = ChoosingExplainer(FakeLLM(replies=random_choice, name="random-chooser"))
    counts = {"template": [0, 0], "chooser": [0, 0], "chooser_llm_choice": 0}
    bad: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for r, u in enumerate(users):
        for ev in builder.build(history_in_order(ds, int(u), mask), top[r]):
            for kind, text in (
                ("template", template.explain(ev)),
                ("chooser", (ex := chooser.explain(ev, template)).explanation),
            ):
                counts[kind][0] += 1
                verdict = guard.check(text, ev)
                if not verdict.ok:
                    counts[kind][1] += 1
                    bad.append({"kind": kind, "text": text, "violations": verdict.violations})
            counts["chooser_llm_choice"] += ex.explainer != "template"
    served_s = time.perf_counter() - t0

    t = ds.items["title"].astype(str).tolist()
    i = {x: t.index(x) for x in ("Princess Bride, The", "Star Wars", "Blues Brothers, The")}
    ev = Evidence(item=i["Princess Bride, The"], title="Princess Bride, The", year=1987,
                  genres=["Action", "Adventure", "Comedy", "Romance"],
                  because=[(i["Star Wars"], "Star Wars", 0.4),
                           (i["Blues Brothers, The"], "Blues Brothers, The", 0.3)],
                  shared_genres=[("Comedy", 0.5), ("Adventure", 0.25)])  # fmt: skip
    guards: dict[str, Any] = {"checker": guard}
    if args.old_guard:
        spec = importlib.util.spec_from_file_location("old_guard", args.old_guard)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules["old_guard"] = mod
        spec.loader.exec_module(mod)
        guards["old_guard"] = mod.Guard(ds.items)
    adversarial: dict[str, Any] = {}
    for name, g in guards.items():
        caught = [s for s in ADVERSARIAL if not g.check(s, ev).ok]
        passed = [s for s in FAITHFUL if g.check(s, ev).ok]
        adversarial[name] = {
            "adversarial_caught": f"{len(caught)}/{len(ADVERSARIAL)}",
            "adversarial_missed": [s for s in ADVERSARIAL if s not in caught],
            "faithful_accepted": f"{len(passed)}/{len(FAITHFUL)}",
            "faithful_rejected": {s: g.check(s, ev).violations for s in FAITHFUL
                                  if s not in passed},
        }  # fmt: skip
    out = {
        "command": "python scripts/bench_grounding.py " + " ".join(argv or sys.argv[1:]),
        "served": {
            "users": len(users),
            "template": {"served": counts["template"][0], "ungrounded": counts["template"][1]},
            "chooser_random": {"served": counts["chooser"][0], "ungrounded": counts["chooser"][1],
                               "chosen_not_fallback": counts["chooser_llm_choice"]},
            "seconds": served_s,
            "examples_ungrounded": bad[:10],
        },
        "adversarial": adversarial,
        "machine": machine(),
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
