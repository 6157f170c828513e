# textbook-ops: `make up` sets everything up and runs it; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-16)
# The ONNX embedding model the service runs (EMBEDDING_MODEL_DIR's default: inside the environment).
EMBEDDING_MODEL := $(VENV)/share/textbook-ops/all-MiniLM-L6-v2-onnx/embedding.json
SITE_STAMP := website/node_modules/.installed-$(shell sha256sum website/package-lock.json 2>/dev/null | cut -c1-16)
export PREFECT_HOME ?= $(CURDIR)/.data/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help up down status test test-fast bench lint install system-packages clean monitoring-up monitoring-down deploy-docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

up: install ## install, start Postgres, migrate, start Prefect (server, worker, deployments), ingest, start the API, build and serve the site
	@$(PY) -m devenv up

down: ## stop what `make up` started (data stays in .data/)
	@if [ -x $(PY) ]; then $(PY) -m devenv down; fi

monitoring-up: install ## Prometheus :9090, Alertmanager :9093, Pushgateway :9091 on loopback, scraping the API of `make up`
	@$(PY) -m devenv.monitoring up

monitoring-down: ## stop what `make monitoring-up` started (data stays in .data/monitoring)
	@if [ -x $(PY) ]; then $(PY) -m devenv.monitoring down; fi

status: ## what is running
	@$(PY) -m devenv status

test: install ## run the whole test suite on throwaway services (what CI runs)
	@$(PY) -m pytest

test-fast: install ## the suite without the slow end-to-end tests
	@$(PY) -m pytest -m "not slow"

bench: install ## run the benchmarks (prints tables, writes bench/RESULTS.md)
	@$(PY) -m bench.run_all

deploy-docs: install ## build HEAD's site, publish it to gh-pages (DOCS_* settings), verify, re-index (runbooks/deploy-docs.md)
	@$(PY) -m flows.deploy_docs

lint: install ## ruff
	@$(VENV)/bin/ruff check app flows tasks devenv bench tests

install: system-packages $(STAMP) $(EMBEDDING_MODEL) $(SITE_STAMP) ## Python packages into .venv (dev: torch too), the ONNX embedding model, the site's npm packages (only when their locks changed)

system-packages:
	@bash devenv/install-system-packages.sh

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	@echo "==> installing Python packages into $(VENV) (CPU-only torch)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q -c requirements.lock torch==2.13.0
	@$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

$(EMBEDDING_MODEL): $(STAMP)
	@echo "==> exporting the embedding model to ONNX (the service runs it without torch)"
	@$(PY) -m app export-embedding-model --output $(dir $(EMBEDDING_MODEL))
	@touch $(EMBEDDING_MODEL)

$(SITE_STAMP): website/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20 builds the docs site)"; exit 2; }
	@echo "==> installing the docs site's npm packages (npm ci in website/)"
	@cd website && npm ci --no-audit --no-fund --loglevel=error
	@rm -f website/node_modules/.installed-*
	@touch $(SITE_STAMP)

clean: down ## stop everything and delete .data/ (the database and the index) and the cluster's files outside it
	@if [ -x $(PY) ]; then $(PY) -m devenv clean; fi
	rm -rf .data
