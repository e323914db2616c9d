# Everything a fresh machine with Python 3.11 needs is installed by these targets.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BUF := node_modules/.bin/buf

.PHONY: install up test test-docker docker-image lint protos bench clean

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

# The uniform image, built from a debootstrap base where no image can be pulled.
docker-image: $(STAMP)
	$(PY) scripts/docker_image.py

# The Docker backend on a real engine (starts dockerd, installing docker.io if it is missing).
test-docker: $(STAMP)
	$(PY) -m pytest tests_docker

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(BUF)

lint: $(STAMP) $(BUF)
	$(BUF) lint
	$(BUF) format --exit-code --diff
	$(BUF) breaking --against '.git#branch=main'
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
