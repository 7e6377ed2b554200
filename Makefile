# The two commands of the README: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# The progress filter below pipes the installer's output; a failed install must still fail the target.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PLUGINS := plugins/mlflow plugins/h2o3_mojo plugins/dai_mojo plugins/hydrogen_torch
# What `make serve` needs for the demo model (an MLflow model): the core and one plugin. The rest
# (torch, h2o, daimojo: about 2 GB) comes with `make install-all` or `make test`.
SERVE_PLUGINS := plugins/mlflow
# Integrations with other systems, each its own distribution; tests cover them all.
INTEGRATIONS := integrations/ray
# Tests also cover the Hydrogen Torch ONNX backend.
TEST_PLUGINS := $(patsubst plugins/hydrogen_torch,plugins/hydrogen_torch[onnx],$(PLUGINS))
# The CPU build of torch: an unpinned torch resolves to a multi-GB CUDA build.
DEV_PINS := torch==2.13.0
# uv installs everything: it resolves in seconds and links wheels from its cache, where pip
# unpacked each (pip took 46 of a fresh clone's 69 s of install). The venv's pip installs uv
# itself, and tools/uv_install.py hands uv the places pip is configured to fetch from (pip.conf,
# PIP_* variables), which uv does not read. INSTALL_INTO installs into another venv (the peers').
UV_VERSION := 0.13.10
# Made once per uv version: a venv made before uv came, or with another version, gets this one.
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# What the user's machine keeps for every checkout (as pip's and uv's caches are kept).
USER_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/scorer-core
# Wheels of the dependencies uv had to build from a source distribution (pyspark, gcloud), a folder
# per interpreter: the next install links them. Without, every fresh clone's install downloaded
# pyspark's 434 MB and built it again (20 of its 42 s), uv's cache growing a gigabyte each time
# (tools/uv_install.py). Deleting the folder resets it.
WHEELHOUSE ?= $(USER_CACHE)/wheels
INSTALL_INTO = $(BIN)/python tools/uv_install.py --python $(1)
INSTALL := $(call INSTALL_INTO,$(BIN)/python) --quiet
# The whole output goes to $(VENV)/install.log; the terminal gets one line per package installed,
# and the log's end when the install fails.
INSTALL_LOG := $(VENV)/install.log
PROGRESS := { grep --line-buffered -E '^(Resolved|Installed|Keeping| \+ )' || true; } | sed -u 's/^ *//; s/^/  /'
install_with_progress = $(BIN)/python tools/uv_install.py --keep-built-wheels '$(WHEELHOUSE)' \
	--python $(BIN)/python $(1) 2>&1 \
	| tee $(INSTALL_LOG) | $(PROGRESS) || { echo "the install failed; the end of $(INSTALL_LOG):"; \
	  tail -n 40 $(INSTALL_LOG); exit 1; }
# Strict editable installs link the packages' files instead of adding import hooks (mypy cannot
# follow those). The projects build with the venv's own setuptools, not in an isolated build
# environment made for each of the six. BUILD_REQUIREMENT is pyproject.toml's build requirement
# (the plugins' are older; tests/test_make.py keeps the two the same), checked before each
# editable install and installed when missing (a new venv has none). Other projects built from
# source (pyspark) build isolated, so that uv keeps the wheel it built. uv documents that it takes
# an installed editable project as up to date unless its pyproject.toml changed (0.13.10 rebuilt
# ours anyway); the stamps below ask for an install when native sources or the set of modules
# changed too, so ours are rebuilt whenever one runs (--reinstall-package: about 3 s).
OWN_DISTRIBUTIONS := scorer-core scorer-mlflow scorer-h2o3-mojo scorer-dai-mojo scorer-hydrogen-torch scorer-ray
EDITABLE := --config-settings editable_mode=strict $(addprefix --no-build-isolation-package ,$(OWN_DISTRIBUTIONS)) \
	$(addprefix --reinstall-package ,$(OWN_DISTRIBUTIONS))
BUILD_REQUIREMENT := setuptools>=74.1
BUILD_TOOLS := $(BIN)/python -c 'import setuptools, sys; \
	  sys.exit(tuple(map(int, setuptools.__version__.split(".")[:2])) < (74, 1))' 2>/dev/null \
	  || $(INSTALL) "$(BUILD_REQUIREMENT)"

# An install is redone only when something it reads has changed: a project's pyproject.toml, the
# native modules' sources, this Makefile, or the set of module files (strict editable installs
# link each module, so a new or removed one needs a reinstall; an edited one does not).
STAMP_SERVE := $(VENV)/.installed-serve
STAMP_ALL := $(VENV)/.installed-all
STAMP_TEST := $(VENV)/.installed-test
MODULE_LIST := $(VENV)/.module-list
# The native modules' C sources (the rows decoder, the tensor reader) and the number reader they share.
NATIVE_SOURCES := $(wildcard scorer_core/wire/*.c scorer_core/wire/*.h)
INSTALL_INPUTS := Makefile pyproject.toml $(NATIVE_SOURCES) $(MODULE_LIST) \
	$(addsuffix /pyproject.toml,$(PLUGINS) $(INTEGRATIONS))

.PHONY: serve test test-fast install install-all install-test bench peer-mlserver peer-kserve FORCE

$(BIN)/python:
	@echo "Creating $(VENV) ..."
	$(PYTHON) -m venv $(VENV)

$(UV_STAMP): | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@touch $@

# Rewritten only when the list differs, so that its time changes only then (the kernel's filechk idiom).
$(MODULE_LIST): FORCE | $(BIN)/python
	@find scorer_core h2o_scorer_core conformance $(PLUGINS) $(INTEGRATIONS) \
	  \( -name tests -o -name build -o -name '*.egg-info' -o -name __pycache__ \) -prune \
	  -o \( -name '*.py' -o -name '*.pyi' \) -print | LC_ALL=C sort > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

# The conformance extra (pytest) too, so that `scorer check` works after `make serve`.
install: $(STAMP_SERVE)
$(STAMP_SERVE): $(INSTALL_INPUTS) | $(UV_STAMP)
	@echo "Installing scorer-core and the MLflow plugin into $(VENV) (about half a minute the first time) ..."
	@$(BUILD_TOOLS)
	@$(call install_with_progress,--compile-bytecode $(EDITABLE) -e '.[conformance]' $(addprefix -e ,$(SERVE_PLUGINS)))
	@touch $@

# Every plugin and integration, for serving H2O-3 MOJOs, Driverless AI pipelines, Hydrogen Torch
# models or Ray Serve replicas.
install-all: $(STAMP_ALL)
$(STAMP_ALL): $(INSTALL_INPUTS) | $(UV_STAMP)
	@echo "Installing scorer-core, every plugin and integration into $(VENV) (several minutes the first time) ..."
	@$(BUILD_TOOLS)
	@$(call install_with_progress,--compile-bytecode $(EDITABLE) -e '.[conformance]' $(addprefix -e ,$(PLUGINS) $(INTEGRATIONS)) $(DEV_PINS))
	@touch $@ $(STAMP_SERVE)

# h2o-mlops-scoring-client (H2O's older client, which the auth tests drive too) pins pandas<2,
# which nothing else here can use; its code runs on current pandas, so it goes in without its pins.
SCORING_CLIENT := h2o-mlops-scoring-client==0.2.1b1

# (A variable, as the commas would split call's arguments.)
TEST_CORE := -e '.[conformance,test,spark]'
# kubectl renders the kustomize base in tests/test_deploy.py (Debian's kubernetes-client when absent).
# Nothing is byte-compiled at install (uv's default, where pip spent 60 of 140 s compiling torch,
# Ray, Spark, MLflow...): the tests import a fraction of them, and the first import compiles and
# caches each (which is why `make test` lets Python write its caches).
# The tests' peers (MLServer's and KServe's venvs) are built beside it instead of inside the tests.
# MLServer's libraries are pinned to ours once ours are installed: a no-op when its resolver chose
# the same versions.
install-test: $(STAMP_TEST)
$(STAMP_TEST): $(INSTALL_INPUTS) | $(UV_STAMP)
	@echo "Installing scorer-core, every plugin and integration, and the test tools into $(VENV) (and the peers' venvs beside it) ..."
	@$(BUILD_TOOLS)
	@$(MAKE) --no-print-directory peer-kserve peer-mlserver MLSERVER_LIBRARIES="mlflow scikit-learn" \
	  > $(VENV)/peers.log 2>&1 & peers=$$!; trap 'kill $$peers 2>/dev/null' EXIT; \
	  $(call install_with_progress,$(EDITABLE) $(TEST_CORE) $(foreach p,$(TEST_PLUGINS) $(INTEGRATIONS),-e '$(p)') $(DEV_PINS)); \
	  wait $$peers || { echo "building the peers' venvs failed; the end of $(VENV)/peers.log:"; tail -n 40 $(VENV)/peers.log; exit 1; }
	$(INSTALL) --no-deps $(SCORING_CLIENT)
	$(MLSERVER_PINNED) || $(call INSTALL_INTO,$(MLSERVER_VENV)/bin/python) --quiet $(MLSERVER_PACKAGES) $(MLSERVER_PINS)
	command -v kubectl >/dev/null || (apt-get update -qq && apt-get install -y -qq kubernetes-client)
	@touch $@ $(STAMP_ALL) $(STAMP_SERVE)

serve: install
	$(BIN)/scorer serve --port $(PORT)

# Most tests wait on server subprocesses rather than compute, so more workers than cores pay off:
# on a 2-core machine 3 measured twice as fast as serial (4 no faster). loadscope with the root
# conftest.py's groups sends a module's functions, or a class's methods, to one worker, so that a
# module- or class-scoped server (each conformance suite's, the MLflow tracking server) starts
# once, not once per worker; the two Ray modules share a group, and the long groups go first.
# Tests that bound time, memory or load are marked `serial` and run alone afterwards.
# Each phase prints its own closing line; a failed first phase fails the target at once. Each also
# lists its slowest tests, where the 10-minute budget goes.
# The modules with tests marked `serial`: the second phase collects only them (collecting the whole
# suite again took 6 of its 80 s). In the first phase, a serial test in any other module (which
# would run in neither) is a failing test naming it (the root conftest.py).
SERIAL_MODULES := tests/test_auth_flood_http.py tests/test_file_scoring_hostile.py \
	tests/test_large_bodies_http.py tests/test_monitor_outbox.py tests/test_worker_crashes_http.py
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS) --dist loadscope
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE SCORER_SERIAL_MODULES="$(SERIAL_MODULES)"
MYPY_CACHE ?= $(USER_CACHE)/mypy
# mypy runs beside the parallel phase, which leaves part of a core idle (xdist's workers wait on
# servers). Its report is printed when the phase ends, and either failing fails the target there.
# Its cache is the user's, shared by every checkout (as pip's and uv's are): a fresh clone's check
# took 38 s of processor time from the tests without one, 1 to 10 s with one. mypy checks each
# module's cached result against the module's contents, so another checkout's is never trusted
# blindly (a type error introduced in a clone was reported through a cache made in another).
# The suite starts hundreds of Python processes, each of which would compile every module it
# imports again where PYTHONDONTWRITEBYTECODE forbids the caches: TEST_ENV lets them be written (to __pycache__ and the venv, both ignored by git).
test: install-test
	$(BIN)/ruff check .
	@$(BIN)/mypy --cache-dir '$(MYPY_CACHE)' > $(VENV)/mypy.log 2>&1 & mypy=$$!; trap 'kill $$mypy 2>/dev/null' EXIT; \
	  $(TEST_ENV) $(BIN)/python -m pytest -m "not serial" $(PARALLEL) --durations=15; tests=$$?; \
	  wait $$mypy; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.log; \
	  test $$tests -eq 0 -a $$typed -eq 0
	$(TEST_ENV) $(BIN)/python -m pytest -m serial --durations=5 $(SERIAL_MODULES)

# The tests that start no server process and train no model: a quick loop while changing code.
test-fast: install-test
	$(TEST_ENV) $(BIN)/python -m pytest -m "not slow" -q $(PARALLEL)

# The benchmark set (bench/models.py) serves H2O-3 MOJOs and Hydrogen Torch models too, so every
# plugin, and the `bench` extra (LightGBM, for its LightGBM model) over them.
STAMP_BENCH := $(VENV)/.installed-bench
$(STAMP_BENCH): $(INSTALL_INPUTS) | install-all $(UV_STAMP)
	@echo "Installing the benchmark's dependencies (the bench extra) into $(VENV) ..."
	@$(call install_with_progress,$(EDITABLE) -e '.[bench]')
	@touch $@

# The benchmark's peers: wrk from Debian, MLServer in a venv of its own (its pins differ from ours),
# with our versions of the libraries that load the set's models. The venv is checked by importing
# them, so that one made before a library joined the list gets it.
# The Open Inference Protocol's conformance test (plugins/mlflow/tests/test_oip_conformance.py)
# checks MLServer in the same venv, built by the target peer-mlserver when the test first needs it.
MLSERVER_VENV := bench/.venv-mlserver
# A distribution's version in our venv, from its metadata (importing MLflow to ask would take 2 s).
version_of = $$($(BIN)/python -c 'from importlib.metadata import version; print(version("$(1)"))')
MLSERVER_PACKAGES := "mlserver==1.7.1" "mlserver-mlflow==1.7.1"
MLSERVER_PINS = "mlflow==$(call version_of,mlflow)" "scikit-learn==$(call version_of,scikit-learn)"
# Whether MLServer's venv has those versions already, without asking the installer.
MLSERVER_PINNED = $(MLSERVER_VENV)/bin/python -c 'import sys; from importlib.metadata import version; \
	  sys.exit(any(version(n) != v for n, v in (pin.split("==") for pin in sys.argv[1:])))' $(MLSERVER_PINS)
MLSERVER_LIBRARIES = $(MLSERVER_PINS)
peer-mlserver: | $(UV_STAMP)
	@$(MLSERVER_VENV)/bin/python -c 'import mlserver_mlflow' 2>/dev/null || \
	  ($(PYTHON) -m venv $(MLSERVER_VENV) && \
	  $(call INSTALL_INTO,$(MLSERVER_VENV)/bin/python) --quiet $(MLSERVER_PACKAGES) $(MLSERVER_LIBRARIES))

# KServe's own Python client (its InferenceRESTClient), for the Open Inference Protocol's tests, in a
# venv of its own: kserve pins pandas 2 and registers the protocol's protobuf messages globally,
# as tritonclient.grpc does, so the two cannot share one interpreter.
KSERVE_VENV := bench/.venv-kserve
peer-kserve: | $(UV_STAMP)
	@$(KSERVE_VENV)/bin/python -c 'import kserve' 2>/dev/null || \
	  ($(PYTHON) -m venv $(KSERVE_VENV) && \
	  $(call INSTALL_INTO,$(KSERVE_VENV)/bin/python) --quiet "kserve==0.21.0")

bench: install-all $(STAMP_BENCH) peer-mlserver
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(MLSERVER_VENV)/bin/python -c 'import lightgbm' 2>/dev/null || \
	  $(call INSTALL_INTO,$(MLSERVER_VENV)/bin/python) --quiet "lightgbm==$(call version_of,lightgbm)"
	$(BIN)/python bench/run.py
