# Two commands on a fresh clone: `make demo` and `make test`. Each creates .venv/ when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench bench-export bench-deletions bench-events venv clean build

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch node_modules/.installed

demo: venv
	$(BIN)/crmsync demo

test: venv
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

lint: venv node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	@for f in statemachines/*.asl.json; do \
		echo "asl-validator $$f"; \
		npx --no-install asl-validator --json-path "$$f" || exit 1; \
	done

bench: venv
	$(BIN)/python bench/import_bench.py

bench-export: venv
	$(BIN)/python bench/export_bench.py

bench-events: venv
	$(BIN)/python bench/events_bench.py

bench-deletions: venv
	$(BIN)/python bench/deletion_bench.py

build:
	sam build

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
