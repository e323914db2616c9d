# Everything a fresh machine with Python 3.11 needs is installed by these targets.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BUF := node_modules/.bin/buf

.PHONY: install up test lint protos bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/mlaas up --demo

test: $(STAMP)
	$(PY) -m pytest

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(BUF)

lint: $(STAMP) $(BUF)
	$(BUF) lint
	$(BUF) format --exit-code --diff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
