#!/usr/bin/env bash
# Create .venv/ at the repo root (if missing) and install the pinned stack into it.
# Called by `make install` (and so by `make demo` / `make test`); make skips it when the
# install stamp is newer than setup.py and requirements/, so a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
# pip reads the local wheel mirror; never let it resolve another torch (that downloads GBs)
PIP=("$PY" -m pip install --disable-pip-version-check -q)
step() { echo "[setup $(date +%H:%M:%S)] $*"; }
# pip, stopping the set-up when it fails (its output is filtered only for the "is ignored" notes)
pip_or_die() {
    local log="$VENV/.pip-step.log"
    if ! "${PIP[@]}" "$@" > "$log" 2>&1; then
        cat "$log" >&2
        echo "[setup] pip install $* failed, see above" >&2
        exit 1
    fi
    grep -v 'is ignored' "$log" || true
    rm -f "$log"
}

if [ ! -x "$PY" ]; then
    step "creating virtual environment $VENV (python3 -m venv)"
    python3 -m venv "$VENV"
fi
step "installing torch 2.14.1 + torchvision 0.29.1 (from the local wheel store) and build tools"
"${PIP[@]}" 'torch==2.14.1' 'torchvision==0.29.1' 'setuptools<81' wheel ninja 2>&1 | grep -v 'is ignored' || true
"$PY" -c 'import torch, torchvision; assert torch.__version__.startswith("2.14.1"), torch.__version__' \
    || { echo "torch 2.14.1 is not installed in $VENV" >&2; exit 1; }

step "mmcv 2.1.0 with CPU ops, and CUDA ops where nvcc, a CUDA torch and a GPU are found (built from source once per machine; the first CPU build takes 11-15 min)"
bash tools/install/build_mmcv.sh "$PY"

step "installing mmengine / mmdet / mmsegmentation / mmpretrain and runtime + test + docs requirements"
pip_or_die -r requirements/runtime.txt -r requirements/mminstall.txt -r requirements/tests.txt \
    -r requirements/docs.txt
step "installing requirements/nodeps.txt without their (over-strict) dependencies"
pip_or_die --no-deps -r requirements/nodeps.txt
step "installing clusterseg (editable)"
pip_or_die --no-deps --no-build-isolation -e .
step "checking the installation"
"$PY" -c 'import clusterseg, mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, panopticapi.evaluation, onnx, onnxruntime; print("[setup] ok: clusterseg", clusterseg.__version__)'
touch "$VENV/.clusterseg-installed"
