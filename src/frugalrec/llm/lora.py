"""A LoRA-tuned one-pass verbaliser re-ranker (LlamaRec's recipe on a small local LLM).

Training examples come from the split's TRAINING interactions only: for a user, one training
item is held out (:func:`holdout_rows`: the latest by time, or a seeded random one, which is
what a random-protocol test item looks like), the cheap stage ranks the catalogue from the
rest of the history, and when the held-out item is among its top-K the example is the
re-ranker's own prompt (:meth:`LLMReranker.prompt`: candidates labelled A, B, C...) with the
held-out item's letter as the answer. The cheap stage is fitted on the training rows
*without* the held-out ones (:func:`holdout_rows`), so an example is drawn the way a test
request is: the item to predict was never in the cheap stage's data. The loss is the
cross-entropy over the K label logits at the last position, exactly the quantity
:meth:`LLMReranker.llm_scores` turns into scores. Only the LoRA matrices (``peft``) train;
the base weights stay as loaded.

Weights for training come from the GGUF through transformers' GGUF loader (dequantised to
float32), so no model hub is involved. The adapter is saved by peft as
``adapter_model.safetensors`` + ``adapter_config.json``, with ``frugalrec-lora.json`` (config,
base model, examples, training cost, loss curve) beside them. :class:`LoraGGUFLLM` serves it
through torch (transformers + peft), behind the same :class:`~frugalrec.llm.runtime.LLM`
interface as the zero-shot runtimes.

``python -m frugalrec.bench.lora train|eval`` runs the ml-100k experiment (see BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalrec._config import JsonConfig
from frugalrec._io import write_json_atomic
from frugalrec.llm.runtime import DEFAULT_MODEL, LlamaCppLLM, TransformersGGUFLLM, model_path

RECORD = "frugalrec-lora.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraTrainConfig(JsonConfig):
    """LoRA rank ``r``/``alpha``/``dropout`` on the ``targets`` projections (comma-separated
    module names); ``examples``: at most this many training prompts (seeded sample of
    users); ``candidates``/``history_items`` as in :class:`RerankerConfig`."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: str = "q_proj,v_proj"
    lr: float = 3e-4
    epochs: int = 1
    accumulate: int = 8
    examples: int = 200
    candidates: int = 10
    history_items: int = 10
    seed: int = 42
    # "bfloat16": forward/backward under torch's CPU autocast (LoRA weights stay float32).
    autocast: str = "none"
    # Present each training prompt's candidates in a seeded random order (the answer's letter
    # moves with its item): the letter then says nothing about the cheap stage's order, so
    # the loss can only fall by reading history and items (:func:`shuffle_candidates`).
    shuffle_candidates: bool = False

    def validate(self) -> None:
        if self.r < 1 or self.alpha < 1 or self.epochs < 1 or self.accumulate < 1:
            raise ValueError("LoraTrainConfig: r, alpha, epochs and accumulate must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0:
            raise ValueError("LoraTrainConfig: dropout in [0, 1), lr > 0")
        if not 2 <= self.candidates <= 26:
            raise ValueError("LoraTrainConfig.candidates must be in 2..26")
        if self.autocast not in ("none", "bfloat16"):
            raise ValueError("LoraTrainConfig.autocast must be 'none' or 'bfloat16'")

    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.targets.split(",") if t.strip()]


@dataclasses.dataclass(frozen=True)
class Example:
    """One training prompt's parts: history (item indices, oldest first), K candidates in
    cheap order, and the position of the held-out item among them."""

    user: int
    history: np.ndarray
    candidates: np.ndarray
    label: int


def holdout_rows(
    ds: Any, train_mask: np.ndarray, how: str = "latest", seed: int = 42, min_items: int = 3
) -> np.ndarray:
    """bool [n_rows]: one training row per user with >= ``min_items`` training rows, the
    user's latest by time (``how="latest"``) or a seeded random one (``"random"``). Always a
    subset of ``train_mask``: fit the cheap stage on ``train_mask & ~held`` and hand ``held``
    to :func:`verbaliser_examples`."""
    if how not in ("latest", "random"):
        raise ValueError("holdout_rows: how must be 'latest' or 'random'")
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(train_mask)
    # rows grouped by user, by time within a user (stable: ties keep row order)
    order = np.lexsort((ds.timestamp[rows], ds.user[rows]))
    rows = rows[order]
    _, start, counts = np.unique(ds.user[rows], return_index=True, return_counts=True)
    keep = counts >= min_items
    start, counts = start[keep], counts[keep]
    if how == "latest":
        pick = start + counts - 1
    else:
        pick = start + (rng.random(len(counts)) * counts).astype(np.int64)
    held = np.zeros(len(train_mask), dtype=bool)
    held[rows[pick]] = True
    return held


def verbaliser_examples(
    ds: Any,
    train_mask: np.ndarray,
    cheap: Any,
    n: int,
    candidates: int = 10,
    seed: int = 42,
    held_out: np.ndarray | None = None,
) -> tuple[list[Example], dict[str, int]]:
    """Up to ``n`` examples from training interactions only (``train_mask`` over ``ds``'s
    rows); ``cheap`` is a Recommender fitted on training interactions.

    Users are visited in a seeded order; a user with >= 3 training items gives one example
    when the cheap stage, folded in on the history without the held-out item, ranks that item
    in its top ``candidates``. The held-out item is the user's row in ``held_out`` (bool over
    rows, a subset of ``train_mask``: :func:`holdout_rows`) or, without it, the latest
    training item. Returns the examples and counts (users tried, hits).
    """
    import scipy.sparse as sp

    from frugalrec.llm.request import history_in_order

    if held_out is not None and np.any(held_out & ~train_mask):
        raise ValueError("verbaliser_examples: held-out rows must be training rows")
    rng = np.random.default_rng(seed)
    train_users = np.unique(ds.user[train_mask])
    target_of: dict[int, int] = {}
    if held_out is not None:
        target_of = dict(zip(ds.user[held_out].tolist(), ds.item[held_out].tolist(), strict=True))
    out: list[Example] = []
    tried = 0
    for u in rng.permutation(train_users):
        if len(out) >= n:
            break
        hist = history_in_order(ds, int(u), train_mask)
        if len(hist) < 3 or (held_out is not None and int(u) not in target_of):
            continue
        tried += 1
        if held_out is None:
            target, rest = int(hist[-1]), hist[:-1]
        else:
            target = target_of[int(u)]
            rest = hist[hist != target]
        row = sp.csr_matrix(
            (np.ones(len(rest), np.float32), (np.zeros(len(rest), np.int64), rest)),
            shape=(1, ds.n_items),
        )
        top, _ = cheap.recommend_history(row, k=candidates)
        cands = top[0][top[0] >= 0]
        hit = np.flatnonzero(cands == target)
        if len(hit):
            out.append(Example(int(u), rest, cands.astype(np.int64), int(hit[0])))
    return out, {"users_tried": tried, "examples": len(out)}


def shuffle_candidates(examples: Sequence[Example], seed: int = 42) -> list[Example]:
    """The examples with each one's candidates in a seeded random order and its label
    following its item (``new.candidates[new.label] == old.candidates[old.label]``)."""
    rng = np.random.default_rng(seed)
    out = []
    for e in examples:
        perm = rng.permutation(len(e.candidates))
        out.append(
            dataclasses.replace(
                e, candidates=e.candidates[perm], label=int(np.flatnonzero(perm == e.label)[0])
            )
        )
    return out


def attach_lora(model: Any, config: LoraTrainConfig) -> Any:
    """Wrap ``model`` (a transformers causal LM) in a peft LoRA model; base weights frozen."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules(),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def label_logits(model: Any, ids: Sequence[int], label_ids: np.ndarray) -> Any:
    """Logits (torch [K], float32) of the label tokens at the position after ``ids``.

    Only the last position goes through the output head (``logits_to_keep=1``): a 49k-token
    vocabulary projected at every prompt position is about a fifth of SmolLM2's forward pass
    and all of it wasted here.
    """
    import torch

    out = model(input_ids=torch.tensor([list(ids)], dtype=torch.long), logits_to_keep=1)
    return out.logits[0, -1][torch.as_tensor(label_ids, dtype=torch.long)].float()


def _autocast(kind: str) -> Any:
    import torch

    if kind == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_lora(
    model: Any,
    examples: Sequence[tuple[Sequence[int], np.ndarray, int]],
    config: LoraTrainConfig,
    progress: bool = False,
    max_seconds: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train LoRA adapters on ``(prompt token ids, label token ids [K], answer position)``
    examples; returns (the peft model, a record with the loss curve and the training cost:
    wall/CPU seconds, examples/s, peak RSS). Gradient accumulation over ``accumulate``
    examples (prompts differ in length, so no padding is needed). ``max_seconds``: stop
    after the first optimiser step past this wall time (the record says so)."""
    import torch

    from frugalrec._threads import configure_threads, thread_count

    configure_threads(thread_count())
    torch.manual_seed(config.seed)
    peft_model = attach_lora(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    seen = 0
    stopped = False
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs * len(examples), desc="LoRA", unit="ex", file=sys.stderr)
    for _epoch in range(config.epochs):
        opt.zero_grad(set_to_none=True)
        for step, j in enumerate(rng.permutation(len(examples)), start=1):
            ids, lab_ids, label = examples[int(j)]
            with _autocast(config.autocast):
                z = label_logits(peft_model, ids, lab_ids)
            loss = torch.nn.functional.cross_entropy(z[None], torch.tensor([label]))
            (loss / config.accumulate).backward()
            losses.append(float(loss.detach()))
            seen += 1
            if step % config.accumulate == 0 or step == len(examples):
                opt.step()
                opt.zero_grad(set_to_none=True)
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    stopped = True
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {np.mean(losses[-config.accumulate :]):.3f}")
            if stopped:
                break
        if stopped:
            break
    if bar is not None:
        bar.close()
    peft_model.eval()
    wall = time.perf_counter() - t0
    trainable = sum(p.numel() for p in params)
    record = {
        "config": config.to_dict(),
        "examples": len(examples),
        "loss_per_example": losses,
        "trainable_params": int(trainable),
        "training": {
            "wall_seconds": wall,
            "cpu_seconds": time.process_time() - cpu0,
            "examples": seen,
            "examples_per_second": seen / wall if wall > 0 else None,
            "stopped_at_max_seconds": stopped,
            "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "threads": int(torch.get_num_threads()),
        },
    }
    return peft_model, record


def save_adapter(peft_model: Any, folder: str | Path, record: dict[str, Any]) -> Path:
    """peft's safetensors + JSON adapter files, and ``frugalrec-lora.json`` beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    write_json_atomic(folder / RECORD, record)
    return folder


def check_adapter(folder: str | Path, base: str) -> dict[str, Any]:
    """The adapter's record; ValueError (naming the file) when it is missing or was trained
    on another base model."""
    folder = Path(folder)
    for f in ("adapter_model.safetensors", "adapter_config.json", RECORD):
        if not (folder / f).is_file():
            raise ValueError(f"{folder / f}: missing; not a frugalrec LoRA adapter folder")
    record: dict[str, Any] = json.loads((folder / RECORD).read_text())
    if record.get("base") not in (None, base):
        raise ValueError(
            f"{folder / RECORD}: adapter was trained on {record.get('base')!r}, not {base!r}"
        )
    return record


class LoraGGUFLLM(TransformersGGUFLLM):
    """The GGUF base through transformers (float32) with a peft LoRA adapter on top."""

    runtime = "transformers+lora"

    def __init__(
        self, name: str = DEFAULT_MODEL, adapter: str | Path = "", threads: int | None = None
    ) -> None:
        from peft import PeftModel

        self.adapter = Path(adapter)
        self.adapter_record = check_adapter(self.adapter, name)
        super().__init__(name, threads=threads)
        self.model = PeftModel.from_pretrained(self.model, str(self.adapter))  # type: ignore[assignment]
        self.model.eval()

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["adapter"] = str(self.adapter)
        out["adapter_trainable_params"] = self.adapter_record.get("trainable_params")
        return out


class LoraLlamaCppLLM(LlamaCppLLM):
    """The quantised GGUF base through llama.cpp with the adapter exported to a GGUF adapter
    (:func:`~frugalrec.llm.lora_gguf.export_gguf_adapter`; written once beside it)."""

    runtime = "llama-cpp+lora"

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        adapter: str | Path = "",
        threads: int | None = None,
        n_ctx: int = 2048,
    ) -> None:
        from frugalrec.llm.lora_gguf import export_gguf_adapter

        self.adapter = Path(adapter)
        self.adapter_record = check_adapter(self.adapter, name)
        self.adapter_gguf = export_gguf_adapter(self.adapter, name, model_path(name))
        super().__init__(name, n_ctx=n_ctx, threads=threads, lora_path=self.adapter_gguf)

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["adapter"] = str(self.adapter)
        out["adapter_gguf"] = self.adapter_gguf.name
        out["adapter_trainable_params"] = self.adapter_record.get("trainable_params")
        return out


# Which runtime serves an adapter. Measured on SmolLM2 with its adapter, the three runtimes
# interleaved on the same 30 requests (BENCHMARKS.md, "LoRA adapter: llama.cpp vs torch"):
# the same answers (top letter 100% equal, mean |dp| 0.005); torch 1.22 s per request vs
# llama.cpp 2.13 s, but llama.cpp loads in 0.2 s instead of 22 s and holds 566 MB instead of
# 1,326 MB. The service runs the LLM in a worker that is restarted after a crash within 5 s
# (issue #13): only llama.cpp fits that, so it is the default; torch stays available
# (faster per request on this CPU, and the GPU's natural runtime).
ADAPTER_RUNTIMES: dict[str, type[LoraLlamaCppLLM] | type[LoraGGUFLLM]] = {
    "llama-cpp": LoraLlamaCppLLM,
    "transformers": LoraGGUFLLM,
}
DEFAULT_ADAPTER_RUNTIME = "llama-cpp"


def load_adapter_llm(
    name: str,
    adapter: str | Path,
    threads: int | None = None,
    *,
    runtime: str = DEFAULT_ADAPTER_RUNTIME,
    in_process: bool = False,
) -> Any:
    """``--llm NAME --llm-adapter DIR``: the base GGUF with the adapter.

    ``runtime``: ``llama-cpp`` (the GGUF adapter on the quantised base) or ``transformers``
    (peft on the dequantised float32 base). Like :func:`~frugalrec.llm.runtime.load_llm`, in
    a worker process by default (a crash or hang there is the cheap answer, not a dead
    caller); ``in_process=True`` loads it here.
    """
    if runtime not in ADAPTER_RUNTIMES:
        raise ValueError(
            f"unknown adapter runtime {runtime!r}; available: {', '.join(ADAPTER_RUNTIMES)}"
        )
    if in_process:
        return ADAPTER_RUNTIMES[runtime](name, adapter, threads)
    from frugalrec._threads import thread_count
    from frugalrec.llm.worker import WorkerLLM

    check_adapter(adapter, name)  # a bad folder is a ValueError here, not a dead child
    kwargs = {"name": name, "adapter": str(adapter), "threads": threads or thread_count(),
              "in_process": True, "runtime": ADAPTER_RUNTIMES[runtime].runtime}  # fmt: skip
    return WorkerLLM(f"{__name__}:_worker_factory", kwargs, name=name)


def load_reranker_llm(
    name: str,
    adapter: str | Path | None = None,
    *,
    runtime: str = DEFAULT_ADAPTER_RUNTIME,
    threads: int | None = None,
) -> Any:
    """The re-ranker's LLM in its worker process: ``name`` as packaged, or with the LoRA
    ``adapter`` served by ``runtime`` (a bad folder is a ValueError naming the file)."""
    if adapter:
        return load_adapter_llm(name, adapter, threads, runtime=runtime)
    from frugalrec.llm.runtime import load_llm

    return load_llm(name, threads=threads)


def _worker_factory(name: str, adapter: str, threads: int, in_process: bool, runtime: str) -> Any:
    """Built in the worker process (``runtime`` is the class's label, e.g. llama-cpp+lora)."""
    by_label = {cls.runtime: cls for cls in ADAPTER_RUNTIMES.values()}
    return by_label[runtime](name, adapter, threads)
