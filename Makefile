# The two commands of the README: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
PLUGINS := plugins/mlflow plugins/h2o3_mojo plugins/dai_mojo
# Strict editable installs link the packages' files instead of adding import hooks, so setuptools
# stays quiet; both targets below reinstall every time, which picks up new modules.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
EDITABLE := --config-settings editable_mode=strict

.PHONY: serve test install install-test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

install: $(BIN)/python
	$(PIP_INSTALL) $(EDITABLE) -e . $(addprefix -e ,$(PLUGINS))

install-test: $(BIN)/python
	$(PIP_INSTALL) $(EDITABLE) -e '.[test]' $(addprefix -e ,$(PLUGINS))

serve: install
	$(BIN)/scorer serve --port $(PORT)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The benchmark's peers: wrk from Debian, MLServer in a venv of its own (its pins differ from ours).
MLSERVER_VENV := bench/.venv-mlserver
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x $(MLSERVER_VENV)/bin/mlserver || ($(PYTHON) -m venv $(MLSERVER_VENV) && \
	  $(MLSERVER_VENV)/bin/python -m pip install --quiet "mlserver==1.7.1" "mlserver-mlflow==1.7.1" \
	    "mlflow==$$($(BIN)/python -c 'import mlflow; print(mlflow.__version__)')" \
	    "scikit-learn==$$($(BIN)/python -c 'import sklearn; print(sklearn.__version__)')")
	$(BIN)/python bench/run.py
