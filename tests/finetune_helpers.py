"""A small non-movie catalogue (a garden shop) with a known structure, for fine-tuning tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from frugalrec.data.dataset import build_dataset
from frugalrec.data.splits import Split

_KINDS = ("rose", "tomato", "fern", "cactus")
SENTINEL = ("SKU-S1", "SKU-S2")


def garden_split() -> Split:
    """24 products in 4 kinds (6 each) + 2 sentinel products; 40 shoppers (e-mail ids) buy
    within one kind. The two sentinels are bought together, but only in valid/test rows."""
    rng = np.random.default_rng(7)
    items = [f"SKU-{k[:2].upper()}{j}" for k in _KINDS for j in range(6)]
    words = ("seeds", "pot", "feed", "kit", "tray", "mix")
    titles = [f"{k.capitalize()} {w}" for k in _KINDS for w in words]
    cats = [k for k in _KINDS for _ in range(6)]
    items += list(SENTINEL)
    titles += ["Copper watering can", "Brass hose nozzle"]
    cats += ["tools", "tools"]
    users, bought, stage = [], [], []
    for u in range(40):
        kind = u % 4
        picks = rng.choice(6, size=5, replace=False) + 6 * kind
        for r, i in enumerate(picks):
            users.append(f"shopper{u}@example.org")
            bought.append(items[i])
            stage.append(0 if r < 3 else (1 if r == 3 else 2))
    for u in range(6):  # the sentinel pair: valid and test only
        for s, st in zip(SENTINEL, (1, 2), strict=True):
            users.append(f"shopper{u}@example.org")
            bought.append(s)
            stage.append(st)
    table = pd.DataFrame({"item": items, "title": titles, "genres": cats})
    ds = build_dataset("garden", np.array(users), np.array(bought), None, None, item_table=table)
    st = np.asarray(stage)
    return Split(ds, "random", st == 0, st == 1, st == 2)
