#!/usr/bin/env bash
# What a scorer_core image installs, in one place: the Dockerfile runs it, and so does CI
# (tests/test_deploy.py), in a fresh venv, so that an image that cannot be built here is at least
# built from steps that are tested.
#
# usage: install.sh SOURCE_DIR RUNTIME
#   SOURCE_DIR  a checkout of this repository
#   RUNTIME     mlflow | h2o3 | dai | hydrogen-torch | all
# Installs into the Python that runs it (the image's venv), with uv as the Makefile does (pip took
# 33 s of processor time for the mlflow family, uv a few), given the package sources pip is
# configured with (tools/uv_install.py). uv itself goes to a folder of its own, not into the
# image. Non-editable, no cache left behind. Building scorer-core compiles its C extension: gcc
# and Python's headers must be present (the builder stage has them; the runtime stage does not).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SOURCE_DIR mlflow|h2o3|dai|hydrogen-torch|all" >&2
  exit 2
fi
src=$1
runtime=$2
# The CPU wheel, as in the Makefile; a GPU image passes TORCH_SPEC with its CUDA build's index
# (words: a requirement, then options, split on white space).
read -ra torch_spec <<< "${TORCH_SPEC:-torch==2.13.0}"

case "$runtime" in
  mlflow) extra=("$src/plugins/mlflow") ;;
  h2o3) extra=("$src/plugins/h2o3_mojo") ;;
  dai) extra=("$src/plugins/dai_mojo") ;;
  hydrogen-torch) extra=("$src/plugins/mlflow" "$src/plugins/hydrogen_torch" "${torch_spec[@]}") ;;
  all) extra=("$src/plugins/mlflow" "$src/plugins/h2o3_mojo" "$src/plugins/dai_mojo" "$src/plugins/hydrogen_torch" "${torch_spec[@]}") ;;
  *)
    echo "install.sh: unknown runtime '$runtime'; expected mlflow, h2o3, dai, hydrogen-torch or all" >&2
    exit 2
    ;;
esac

# The Makefile's UV_VERSION (tests/test_deploy.py keeps the two the same).
uv_version=0.13.10
# Byte-compiled at build: the image's user cannot write the venv, so an uncompiled module would be
# compiled again at every start. (tests/test_deploy.py turns it off: it imports a few.)
export UV_COMPILE_BYTECODE=${UV_COMPILE_BYTECODE:-1}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python -m pip install --no-cache-dir --disable-pip-version-check -q --target "$tools" "uv==$uv_version"
UV="$tools/bin/uv" python "$src/tools/uv_install.py" --python "$(command -v python)" --no-cache --quiet \
  "$src" "${extra[@]}"
# Fail the build, not the first request, when something is missing.
scorer plugins > /dev/null
