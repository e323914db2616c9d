# Everything a fresh machine with Python 3.11 needs is installed by these targets.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# diffprivlib (differentially private retraining) needs a scikit-learn older than the mesh's: it
# runs in an environment of its own (mlaas/retraining/private_fit.py).
DP_VENV := .venv-dp
DP_STAMP := $(DP_VENV)/.installed-stamp
BUF := node_modules/.bin/buf

.PHONY: install up test test-docker docker-image lint protos bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

$(DP_STAMP): Makefile
	test -x $(DP_VENV)/bin/python || $(PYTHON) -m venv $(DP_VENV)
	$(DP_VENV)/bin/python -m pip install -q --upgrade pip
	$(DP_VENV)/bin/python -m pip install -q 'diffprivlib==0.6.6' 'scikit-learn==1.5.2'
	touch $(DP_STAMP)

install: $(STAMP) $(DP_STAMP)

up: install
	$(VENV)/bin/mlaas up --demo

# Four workers on two cores: most tests wait on child processes and the network. A test
# module runs on one worker (its module-scoped fixtures, such as a running mesh, are shared).
test: install
	$(PY) -m pytest -n 4 --dist loadfile --durations=15

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
	scripts/buf_breaking.sh $(BUF)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) $(DP_VENV) node_modules .pytest_cache .ruff_cache .mypy_cache
