# The two commands of the README: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
PLUGINS := plugins/mlflow plugins/h2o3_mojo plugins/dai_mojo plugins/hydrogen_torch
# Integrations with other systems, each its own distribution; tests cover them all.
INTEGRATIONS := integrations/ray
# Tests also cover the Hydrogen Torch ONNX backend.
TEST_PLUGINS := $(patsubst plugins/hydrogen_torch,plugins/hydrogen_torch[onnx],$(PLUGINS))
# The CPU build of torch: an unpinned torch resolves to a multi-GB CUDA build.
DEV_PINS := torch==2.13.0
# Strict editable installs link the packages' files instead of adding import hooks; both targets
# below reinstall every time, which picks up new modules. -qq hides setuptools' notice about
# strict mode, which it prints for every plugin; errors still show.
PIP_INSTALL := $(BIN)/python -m pip install -qq --disable-pip-version-check
EDITABLE := --config-settings editable_mode=strict

.PHONY: serve test install install-test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

# The conformance extra (pytest) too, so that `scorer check` works after `make serve`.
install: $(BIN)/python
	$(PIP_INSTALL) $(EDITABLE) -e '.[conformance]' $(addprefix -e ,$(PLUGINS)) $(DEV_PINS)

# h2o-mlops-scoring-client (H2O's older client, which the auth tests drive too) pins pandas<2,
# which nothing else here can use; its code runs on current pandas, so it goes in without its pins.
SCORING_CLIENT := h2o-mlops-scoring-client==0.2.1b1

# kubectl renders the kustomize base in tests/test_deploy.py (Debian's kubernetes-client when absent).
install-test: $(BIN)/python
	$(PIP_INSTALL) $(EDITABLE) -e '.[test,spark]' $(foreach p,$(TEST_PLUGINS) $(INTEGRATIONS),-e '$(p)') $(DEV_PINS)
	$(PIP_INSTALL) --no-deps $(SCORING_CLIENT)
	command -v kubectl >/dev/null || (apt-get update -qq && apt-get install -y -qq kubernetes-client)

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
