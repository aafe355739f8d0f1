#!/usr/bin/env bash
# Build (once per machine) and install mmcv 2.1.0 with its CPU ops into the given Python environment.
#
# Why from source: PyPI has no mmcv 2.1.0 binary wheel, and mmdet 3.3.0 / mmseg 1.2.2 refuse mmcv >= 2.2.0.
# Two traps fixed here (both measured on torch 2.14.1):
#   1. mmcv's setup.py imports pkg_resources -> we need setuptools<81, wheel and ninja in the venv
#      and must build with --no-build-isolation (so the build also sees the pinned torch).
#   2. mmcv's setup.py hard-codes -std=c++17 but torch 2.14 headers need C++20 -> patched to -std=c++20.
# pip's wheel cache ignores the torch version, so we keep our own cache keyed by mmcv + torch version:
#   ${CLUSTERSEG_CACHE:-~/.cache/clusterseg}/wheels/mmcv-2.1.0-torch<ver>/mmcv-*.whl
# A fresh clone on the same machine reuses that wheel (seconds instead of ~11-15 minutes).
#
# Usage: tools/install/build_mmcv.sh PYTHON   (e.g. .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
# absolute, since the build runs inside the unpacked sdist
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac
MMCV_VERSION=2.1.0
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
CACHE_ROOT=${CLUSTERSEG_CACHE:-$HOME/.cache/clusterseg}
WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION"

if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)" 2>/dev/null; then
    echo "[setup] mmcv $MMCV_VERSION with ops already installed"
    exit 0
fi

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    echo "[setup] building mmcv $MMCV_VERSION with CPU ops against torch $TORCH_VERSION"
    echo "[setup] this compiles 77 C++ files: expect 11-15 minutes on 2 cores (done once per machine;"
    echo "[setup] the wheel is cached in $WHEEL_DIR)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download -q --no-deps --no-binary=:all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    grep -q -- '-std=c++17' "$src/setup.py" || { echo "[setup] mmcv setup.py no longer has -std=c++17; check the patch" >&2; exit 1; }
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    mkdir -p "$WHEEL_DIR"
    ( cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR.tmp" . )
    mv "$WHEEL_DIR.tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.tmp"
fi
echo "[setup] installing cached mmcv wheel from $WHEEL_DIR"
"$PY" -m pip install -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
