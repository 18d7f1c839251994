"""``PipelineConfig``: one serialisable description of a whole configuration.

It is the unit that ``bench`` measures, ``plan`` chooses and ``serve`` runs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from frugalrec._config import JsonConfig

RETRIEVALS = ("exact", "hnsw", "ivfpq")
# The LLM's name is checked against the LLM registry where it is loaded (frugalrec.llm sits
# above the pipeline, which must not import it).
_RERANKER = re.compile(r"^(none|llm|llm-[a-z0-9][a-z0-9._-]*)$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig(JsonConfig):
    """Encoder tier/backend (or none), model (+ its hyper-parameters), retrieval, optional
    re-ranker, candidate count, serving batch size and serving threads."""

    name: str = ""
    encoder: str = "none"
    backend: str = "none"
    model: str = "ease"
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    retrieval: str = "exact"
    retrieval_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    reranker: str = "none"
    candidates: int = 100
    k: int = 10
    batch_size: int = 16
    # BLAS/torch threads while serving. One per request by default: waking a second BLAS
    # thread for a 1 x d GEMV costs more than the GEMV when the other core is busy
    # (measured on ml-100k: textmap p50 8.0 ms with 2 threads under load).
    threads: int = 1
    # Fine-tune the encoder on the split's training interactions before fitting (issue #17):
    # FinetuneConfig fields, {} = the frozen encoder. bench records what training costs.
    finetune: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A LoRA adapter folder for the LLM re-ranker (python -m frugalrec.bench.lora train); its
    # training cost rides into the bench record, which plan charges (--retrain-days).
    llm_adapter: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.default_name())

    def default_name(self) -> str:
        parts = [self.model]
        if self.encoder != "none":
            parts.append(f"{self.encoder}{'-ft' if self.finetune else ''}-{self.backend}")
        if self.retrieval != "exact":
            parts.append(self.retrieval)
        if self.reranker != "none":
            lora = "+lora" if self.llm_adapter else ""
            parts.append(f"rerank-{self.reranker}{lora}@{self.candidates}")
        return "+".join(parts)

    def validate(self) -> None:
        """Raise ValueError naming the field that is wrong."""
        from frugalrec.models.registry import model_class
        from frugalrec.text.registry import encoder_names, resolve_backend

        if self.encoder != "none":
            if self.encoder not in encoder_names():
                names = ("none", *encoder_names())
                raise ValueError(f"PipelineConfig.encoder: {self.encoder!r} not in {names}")
            try:
                resolve_backend(self.encoder, None if self.backend == "none" else self.backend)
            except ValueError as exc:
                raise ValueError(f"PipelineConfig.backend: {exc}") from None
        if self.finetune:
            from frugalrec.text.finetune import FinetuneConfig
            from frugalrec.text.registry import encoder_spec

            if self.encoder == "none" or encoder_spec(self.encoder).kind != "sentence-transformers":
                raise ValueError(
                    f"PipelineConfig.finetune: encoder {self.encoder!r} cannot be fine-tuned "
                    "(minilm or mpnet)"
                )
            try:
                FinetuneConfig.from_dict(self.finetune).validate()
            except (ValueError, TypeError) as exc:
                raise ValueError(f"PipelineConfig.finetune: {exc}") from None
        if not _RERANKER.match(self.reranker):
            raise ValueError(
                f"PipelineConfig.reranker: {self.reranker!r} is not none | llm | llm-<name>"
            )
        if self.llm_adapter and not self.reranker.startswith("llm-"):
            raise ValueError(
                "PipelineConfig.llm_adapter: needs reranker llm-<name> (the adapter's base), "
                f"not {self.reranker!r}"
            )
        if self.retrieval not in RETRIEVALS:
            raise ValueError(f"PipelineConfig.retrieval: {self.retrieval!r} not in {RETRIEVALS}")
        cls = model_class(self.model)
        cls.config_cls.from_dict(self.model_config)
        if cls.uses_item_vectors and self.encoder == "none":
            raise ValueError(f"PipelineConfig.encoder: model {self.model!r} needs an encoder")
        for name in ("candidates", "k", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"PipelineConfig.{name} must be >= 1")
        if self.candidates < self.k:
            raise ValueError("PipelineConfig.candidates must be >= k")
