# quest's front door. Every target that runs code first builds .venv from requirements.lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# DVC stages run `python -m quest...`: the venv's python must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.DEFAULT_GOAL := help
.PHONY: help setup repro suite cluster check test fuzz verify lint audit ui server sweep bench-cpu bench-shapes bench-cluster bench-gpu bench-peers lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep -E '^uv==' requirements.lock)"
	@# Compiled at install: imports then read .pyc files even where PYTHONDONTWRITEBYTECODE is set (halves them).
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

setup: $(STAMP) ## create .venv from the lock file

repro: $(STAMP) ## run the whole pipeline (dvc repro) on the dataset named in params.yaml
	$(BIN)/dvc repro
	@# The last line: identical to the committed results, the same conclusions on another machine, or different.
	@$(BIN)/python -m quest.commands.verify --workspace

suite: $(STAMP) ## run quest on every table of params.yaml's suite (suite/dvc.yaml), summed up in reports/suite
	$(BIN)/python -m quest.commands.suite

# Tests run in TEST_WORKERS processes (pytest-xdist), one test file at a time each, so a file's module fixtures
# and the order of its tests stay in one process. Most tests wait on subprocesses, servers and stores: on two
# cores two processes take the whole suite from 39 to 18 minutes (AMD EPYC). TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

check: lint ## quick tier for development: ruff, then the tests not marked e2e (3 to 6 minutes on 2 cores)
	$(PYTEST) -m "not e2e" -q

test: $(STAMP) ## run the whole test suite (what CI runs)
	$(PYTEST)

FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP) ## generated hostile tables, FUZZ_EXAMPLES through prepare, a tenth through the pipeline (CI: 300)
	QUEST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -q --hypothesis-show-statistics

verify: $(STAMP) ## recompute HEAD from a clean clone: exact on the same machine, the same conclusions on another
	$(BIN)/python -m quest.commands.verify

lint: $(STAMP) ## ruff: style, import order and formatting
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

audit: $(STAMP) ## pip-audit of requirements.lock (needs the internet; --strict: unaudited counts as failed)
	$(BIN)/uv tool run pip-audit==2.10.1 -r requirements.lock --no-deps --disable-pip --strict --progress-spinner off

ui: $(STAMP) ## the MLflow UI for the repo's mlflow.db on 127.0.0.1:5000, opened on quest's runs (not GenAI's page)
	$(BIN)/python -m quest.commands.ui

server: $(STAMP) ## a team tracking server on PostgreSQL: to try, http://127.0.0.1:5001; AUTH=1: passwords, rights, TLS
	QUEST_SERVER_AUTH=$(or $(AUTH),0) scripts/server.sh

cluster: $(STAMP) ## a Dask scheduler and 2 workers on 127.0.0.1 to try QUEST_EXECUTOR=dask://127.0.0.1:8786
	scripts/cluster.sh

WORKERS ?= 2
sweep: $(STAMP) ## WORKERS=N processes share the tune stage's Optuna studies on tune.storage, then dvc repro
	$(BIN)/dvc repro prepare
	$(BIN)/python -m quest.commands.sweep --workers $(WORKERS)
	$(BIN)/dvc repro

bench-cpu: $(STAMP) ## benchmarks on this CPU: training engines, the pipeline's time split, MLflow cost, baselines
	$(BIN)/python benchmarks/bench.py cpu

bench-shapes: $(STAMP) ## bench-cpu's grid of table shapes alone: each model's seconds and peak memory
	$(BIN)/python benchmarks/bench.py shapes

bench-cluster: $(STAMP) ## the default comparison on a local Dask cluster of 1 and 2 workers, beside the local pool
	$(BIN)/python benchmarks/bench.py cluster

bench-gpu: $(STAMP) ## benchmarks on a GPU (JAX): fast engine vs fit vs a hand-written loop on 1 M x 64 rows
	$(BIN)/python benchmarks/bench.py gpu

PEERS := .peers-venv
PEERS_STAMP := $(PEERS)/.installed-stamp
$(PEERS_STAMP): benchmarks/peers-requirements.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	@# PyTorch first, alone: pip then takes the pinned CPU build before any package could ask for another.
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check "$$(grep -E '^torch==' $<)"
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

bench-peers: $(STAMP) $(PEERS_STAMP) ## RealMLP and TabM against pytabkit's references on quest's splits (own env: .peers-venv)
	$(BIN)/python benchmarks/peers.py --models realmlp --same-validation --reference-python $(PEERS)/bin/python
	# TabM's 32 members cost about 30 MLPs each: 5 splits a dataset (one repeat), about an hour on two cores
	$(BIN)/python benchmarks/peers.py --models tabm --repeats 1 --output peers-tabm --same-validation --reference-python $(PEERS)/bin/python

lock: ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements.lock

clean: ## remove the virtual environments
	rm -rf $(VENV) $(PEERS)
