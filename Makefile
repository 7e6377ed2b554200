# The two commands of the README: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
PLUGINS := plugins/mlflow
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: serve test install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

install: $(BIN)/python
	$(PIP_INSTALL) -e . $(addprefix -e ,$(PLUGINS))

install-test: $(BIN)/python
	$(PIP_INSTALL) -e '.[test]' $(addprefix -e ,$(PLUGINS))

serve: install
	$(BIN)/scorer serve --port $(PORT)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest
