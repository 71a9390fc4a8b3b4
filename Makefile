# Two commands on a fresh clone: `make demo` and `make test`. Each creates .venv/ when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_WORKERS ?= 2
# checkov lives in its own venv: it pins boto3 and networkx versions the dev extra cannot share.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat requirements-checkov.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench bench-export bench-store bench-deletions bench-events bench-two-way bench-peers test-peers peers venv clean build layer

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-checkov.txt
	@rm -f $(CHECKOV_VENV)/.installed-*
	@touch $(CHECKOV_STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch node_modules/.installed

demo: venv
	$(BIN)/crmsync demo

test: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

lint: venv node_modules/.installed $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	@# Every finding is fixed or skipped in the template's Metadata with its reason (docs/operations.md).
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download
	@for f in statemachines/*.asl.json; do \
		echo "asl-validator $$f"; \
		npx --no-install asl-validator --json-path "$$f" || exit 1; \
	done

bench: venv
	$(BIN)/python bench/import_bench.py

bench-export: venv
	$(BIN)/python bench/export_bench.py

bench-store: venv
	$(BIN)/python bench/store_cost_bench.py

bench-events: venv
	$(BIN)/python bench/events_bench.py

bench-deletions: venv
	$(BIN)/python bench/deletion_bench.py

bench-two-way: venv
	$(BIN)/python bench/two_way_bench.py

# Peer clients (tap-salesforce, airbyte-source-salesforce, airbyte-source-microsoft-dataverse) in
# .venv-peers/, one venv each: too heavy for `make test` (3-6 minutes to install, conflicting pins).
peers: venv
	$(BIN)/python bench/peers_bench.py --install

bench-peers: peers
	$(BIN)/python bench/peers_bench.py

test-peers: peers
	$(BIN)/python -m pytest -q -p no:xdist tests/contract/test_peer_clients.py

build:
	sam build

# The Lambda layer as `sam build` makes it, without SAM: its size per package (layers/crmsync/build_layer.py).
layer:
	$(PYTHON) layers/crmsync/build_layer.py .aws-sam/layer

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .venv-peers node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
