# tenfold: one venv (.venv) for everything; torch pinned by constraints.txt.
#   make demo          install everything, run every package's CPU demo on offline data
#   make test          install everything, run the spine's and every package's tests (slow ones included)
#   make test-fast     the same without the `slow` real-data runs
#   make test-robust   the slow suites under other CPU numerics/seeds (by hand, not CI; see tools/test_robust.py)
#   make install-<p> / test-<p> / bench-<p> / demo-<p>   one package on its own
#   make gpu-pack DEST=dir   the data + float16 teachers a GPU run needs (< 56 MiB, git-ignored)
#   make bench-gpu [BUDGET=480|long] [PACK=gpu-pack] [OUT=runs/bench-gpu] [ONLY=a,b]   every bench/gpu.py on a GPU
#   make bench-gpu-smoke     the same scripts --smoke on the CPU + a small pack (part of `make test`)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
PACKAGES := $(sort $(patsubst packages/%/pyproject.toml,%,$(wildcard packages/*/pyproject.toml)))
PYTEST_ARGS ?=
# Optional extras a package's tests need besides [test] (fedmgd: Flower, for its federated-deployment slow test)
EXTRAS_fedmgd := test,flower
extras = $(or $(EXTRAS_$(1)),test)

# Real data for tests and benchmarks: $TENFOLD_DATA if set, else ../shared/data when it exists.
SHARED_DIR := $(abspath ../shared)
ifeq ($(TENFOLD_DATA),)
ifneq ($(wildcard $(SHARED_DIR)/data),)
export TENFOLD_DATA := $(SHARED_DIR)/data
endif
endif
ifeq ($(TENFOLD_MODELS),)
ifneq ($(wildcard $(SHARED_DIR)/models),)
export TENFOLD_MODELS := $(SHARED_DIR)/models
endif
endif

.PHONY: help venv install test test-fast test-robust demo lint clean list
help:
	@sed -n '2,7p' Makefile; echo "packages: $(PACKAGES)"

list:
	@echo $(PACKAGES)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python

$(VENV)/.installed: $(BIN)/python constraints.txt shared/pyproject.toml $(wildcard packages/*/pyproject.toml)
	$(PIP) -e 'shared[test]' $(foreach p,$(PACKAGES),-e 'packages/$(p)[$(call extras,$(p))]') ruff
	touch $@

install: $(VENV)/.installed

install-%: $(BIN)/python
	@test -f packages/$*/pyproject.toml || { echo "no package '$*' (have: $(PACKAGES))"; exit 2; }
	$(PIP) -e 'shared[test]' -e 'packages/$*[$(call extras,$*)]'

# Each suite runs in its own pytest process (test modules of different packages never clash);
# every suite runs even when one fails, and the exit status reports any failure.
test: install
	@fail=""; for t in shared $(addprefix packages/,$(PACKAGES)); do \
	  echo "=== $$t"; $(BIN)/python -m pytest $$t/tests -q $(PYTEST_ARGS) || fail="$$fail $$t"; \
	done; \
	echo "=== bench-gpu-smoke"; $(MAKE) --no-print-directory bench-gpu-smoke || fail="$$fail bench-gpu-smoke"; \
	if [ -n "$$fail" ]; then echo "FAILED suites:$$fail"; exit 1; fi; echo "all suites passed"

test-fast:
	@$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

# The slow suites under another CPU's numerics (and other seeds): run by hand when a slow test changes.
ROBUST_SETTINGS ?= avx2
ROBUST_SEEDS ?= 0
ROBUST_SUITES ?=
test-robust: install
	$(BIN)/python tools/test_robust.py --settings $(ROBUST_SETTINGS) --seeds $(ROBUST_SEEDS) \
	  $(if $(ROBUST_SUITES),--suites $(ROBUST_SUITES)) --out $(abspath runs)/robust

test-shared: install
	$(BIN)/python -m pytest shared/tests -q $(PYTEST_ARGS)

test-%: install-%
	$(BIN)/python -m pytest packages/$*/tests -q $(PYTEST_ARGS)

# GPU run (issue #17). On a bare GPU node nothing is installed: the driver puts the sources on PYTHONPATH and
# uses the node's own python (GPU_PYTHON) and PyTorch; the pack is its data root and models root.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
BUDGET ?= 480
PACK ?= gpu-pack
DEST ?= gpu-pack
SMOKE_OUT := runs/bench-gpu-smoke
.PHONY: gpu-pack bench-gpu bench-gpu-smoke
gpu-pack:
	PYTHONPATH=shared/src $(GPU_PYTHON) -m tenfold.gpupack --dest $(DEST)

bench-gpu:
	PYTHONPATH=shared/src $(GPU_PYTHON) -m tenfold.gpubench --out $(or $(OUT),runs/bench-gpu) --budget $(BUDGET) \
	  $(if $(wildcard $(PACK)/MANIFEST.json),--pack $(PACK)) $(if $(ONLY),--packages $(ONLY))

# every package must have a bench/gpu.py whose --smoke run passes
bench-gpu-smoke: install
	@rm -rf $(SMOKE_OUT); \
	PYTHONPATH=shared/src $(BIN)/python -m tenfold.gpupack --small --dest $(SMOKE_OUT)/pack && \
	PYTHONPATH=shared/src $(BIN)/python -m tenfold.gpubench --smoke --out $(SMOKE_OUT) \
	  $$([ -f $(SMOKE_OUT)/pack/MANIFEST.json ] && echo --pack $(SMOKE_OUT)/pack)

bench-%: install-%
	cd packages/$* && PATH=$(BIN):$$PATH $(BIN)/python bench/cpu.py

demo: install
	@fail=""; for p in $(PACKAGES); do \
	  echo "=== demo $$p"; rm -rf $(abspath runs)/demo-$$p; \
	  (cd packages/$$p && PATH=$(BIN):$$PATH bash demo.sh $(abspath runs)/demo-$$p) || fail="$$fail $$p"; \
	done; \
	if [ -n "$$fail" ]; then echo "FAILED demos:$$fail"; exit 1; fi; echo "all demos ran"

# runs/demo-<p> belongs to make: a re-run replaces it (the CLIs themselves never overwrite a run)
demo-%: install-%
	rm -rf $(abspath runs)/demo-$*
	cd packages/$* && PATH=$(BIN):$$PATH bash demo.sh $(abspath runs)/demo-$*

lint: install
	$(BIN)/ruff check shared packages

clean:
	rm -rf runs .pytest_cache $(VENV)/.installed
