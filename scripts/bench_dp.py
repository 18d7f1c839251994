"""NDCG@10 vs differential-privacy epsilon on ml-100k (random protocol), for BENCHMARKS.md.

Fixed hyper-parameters (EASE l2=300 and ItemKNN neighbors=200/shrink=0, the tuned values
without DP), fitted on train+valid and scored on test with the standard full-ranking
evaluation; each private row is the mean over three noise seeds. The noise-aware variants
scale the regulariser with the (public) noise level: ``ease-noise-l2`` adds
``5 sigma sqrt(n_items)`` to EASE's ridge (a multiple of the noise matrix's spectral norm),
``itemknn-noise-shrink`` uses ``shrink = 100 sigma``; the multipliers were picked on the
valid split from {1, 2, 5} and {5, 20, 50, 100}.
Usage: ``.venv/bin/python scripts/bench_dp.py [--out docs/bench/dp-gaussian.json]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from frugalrec._io import write_json_atomic
from frugalrec.data.movielens import load_ml100k
from frugalrec.data.splits import make_split
from frugalrec.evaluate.protocol import evaluate_model
from frugalrec.models.ease import EASERecommender
from frugalrec.models.itemknn import ItemKNNRecommender
from frugalrec.models.pop import PopRecommender
from frugalrec.privacy.dp import DPOptions, noise_aware_l2, noise_aware_shrink

MODELS = {
    "pop": (PopRecommender, {}),
    "ease": (EASERecommender, {"l2": 300.0}),
    "ease-noise-l2": (EASERecommender, {"l2": 300.0}),
    "itemknn": (ItemKNNRecommender, {"neighbors": 200, "shrink": 0.0}),
    "itemknn-noise-shrink": (ItemKNNRecommender, {"neighbors": 200, "shrink": 0.0}),
}
EASE_L2_PER_NOISE = 5.0  # x sigma sqrt(n_items), chosen on valid from {1, 2, 5}
KNN_SHRINK_PER_NOISE = 100.0  # x sigma, chosen on valid from {5, 20, 50, 100}


def noise_aware(name: str, cfg: dict, n_items: int) -> dict:
    if not name.endswith(("-noise-l2", "-noise-shrink")) or "dp_epsilon" not in cfg:
        return cfg
    opts = DPOptions(**{k: v for k, v in cfg.items() if k.startswith("dp_")})
    if name == "ease-noise-l2":
        return dict(cfg, l2=noise_aware_l2(opts, n_items, cfg["l2"], EASE_L2_PER_NOISE))
    return dict(cfg, shrink=noise_aware_shrink(opts, cfg["shrink"], KNN_SHRINK_PER_NOISE))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epsilons", default="inf,clip,10,3,1,0.3")
    ap.add_argument("--models", default="pop,ease,ease-noise-l2,itemknn,itemknn-noise-shrink")
    ap.add_argument("--mechanism", default="gaussian", choices=["gaussian", "laplace"])
    ap.add_argument("--delta", type=float, default=1e-6)
    ap.add_argument("--max-items", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    split = make_split(load_ml100k(), "random", seed=42)
    train = split.train_dataset(with_valid=True)
    rows = []
    for name in args.models.split(","):
        cls, params = MODELS[name]
        for eps_s in args.epsilons.split(","):
            t0 = time.perf_counter()
            if eps_s == "inf":
                configs = [dict(params)]
            else:
                # "clip": contribution bound only, no noise (eps so large the noise is ~0).
                eps = 1e12 if eps_s == "clip" else float(eps_s)
                configs = [
                    dict(
                        params,
                        dp_epsilon=eps,
                        dp_delta=args.delta,
                        dp_mechanism=args.mechanism,
                        dp_max_items=args.max_items,
                        dp_seed=s,
                    )
                    for s in range(1 if eps_s == "clip" else args.seeds)
                ]
            values = []
            for cfg in configs:
                cfg = noise_aware(name, cfg, train.n_items)
                model = cls(**cfg).fit(train)
                res = evaluate_model(model, split, "test", ks=(10,), n_boot=0)
                values.append(res.metrics["ndcg@10"])
            row = {
                "model": name,
                "epsilon": eps_s,
                "ndcg@10": float(np.mean(values)),
                "ndcg@10_std": float(np.std(values)),
                "runs": len(values),
                "l2": noise_aware(name, configs[0], train.n_items).get("l2"),
                "shrink": noise_aware(name, configs[0], train.n_items).get("shrink"),
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "protocol": "random (seed 42), fit on train+valid, test NDCG@10, full ranking",
        "mechanism": args.mechanism,
        "delta": args.delta,
        "max_items_per_user": args.max_items,
        "rows": rows,
    }
    if args.out:
        write_json_atomic(args.out, meta)


if __name__ == "__main__":
    main()
