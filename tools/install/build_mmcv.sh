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
# CUDA ops (the GPU branch): built when this machine has a CUDA toolkit (nvcc on PATH or in
# $CUDA_HOME/bin), torch is a CUDA build and a GPU is visible; CLUSTERSEG_MMCV_CUDA=1 forces it
# (e.g. building on a GPU-less node for GPU nodes; set TORCH_CUDA_ARCH_LIST then), =0 keeps the
# CPU build. The CUDA wheel is cached apart (mmcv-2.1.0-torch<ver>-cuda/); the CPU path is unchanged.
#
# Usage: tools/install/build_mmcv.sh PYTHON   (e.g. .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
# absolute, since the build runs inside the unpacked sdist
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac
MMCV_VERSION=2.1.0
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
CACHE_ROOT=${CLUSTERSEG_CACHE:-$HOME/.cache/clusterseg}

# --- GPU branch: CUDA ops when a CUDA toolkit, a CUDA torch and a GPU are all here
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
TORCH_CUDA=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.version.cuda else 0)' 2>/dev/null || echo 0)
WITH_CUDA=0
case "${CLUSTERSEG_MMCV_CUDA:-auto}" in
    1) [ -n "$NVCC" ] && [ -n "$TORCH_CUDA" ] || { echo "[setup] CLUSTERSEG_MMCV_CUDA=1 needs nvcc (found: ${NVCC:-none}) and a CUDA torch (torch.version.cuda: ${TORCH_CUDA:-None})" >&2; exit 1; }
       WITH_CUDA=1 ;;
    0) ;;
    auto) [ -n "$NVCC" ] && [ -n "$TORCH_CUDA" ] && [ "$GPUS" -gt 0 ] && WITH_CUDA=1 ;;
    *) echo "[setup] CLUSTERSEG_MMCV_CUDA must be 0, 1 or auto, got ${CLUSTERSEG_MMCV_CUDA}" >&2; exit 1 ;;
esac
if [ "$WITH_CUDA" = 1 ]; then
    WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-cuda"
    # an installed mmcv counts only if its CUDA ops run (a CPU-only build raises here)
    CHECK="import mmcv, mmcv.ops, torch, sys; b = torch.tensor([[0., 0., 4., 4.], [1., 1., 5., 5.]], device='cuda'); mmcv.ops.nms(b, torch.tensor([.9, .8], device='cuda'), 0.5); sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)"
    # no GPU to run one (a forced build): the CUDA kernel launchers must be in mmcv's extension
    [ "$GPUS" -gt 0 ] || CHECK="import mmcv, mmcv._ext as e, sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' and b'RoIAlignForwardCUDAKernelLauncher' in open(e.__file__, 'rb').read() else 1)"
    FORCE_CUDA=1
    JOBS=${MAX_JOBS:-$(nproc)}
    echo "[setup] CUDA toolkit $NVCC and torch CUDA $TORCH_CUDA ($GPUS GPU(s)): mmcv with CUDA ops"
else
    WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION"
    CHECK="import mmcv, mmcv.ops, sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)"
    FORCE_CUDA=0
    JOBS=${MAX_JOBS:-2}
fi

if "$PY" -c "$CHECK" 2>/dev/null; then
    echo "[setup] mmcv $MMCV_VERSION with ops already installed"
    exit 0
fi

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    if [ "$WITH_CUDA" = 1 ]; then
        echo "[setup] building mmcv $MMCV_VERSION with CPU and CUDA ops against torch $TORCH_VERSION (CUDA $TORCH_CUDA),"
        echo "[setup] $JOBS jobs; the CUDA kernels take much longer than the CPU build (cached in $WHEEL_DIR)"
    else
        echo "[setup] building mmcv $MMCV_VERSION with CPU ops against torch $TORCH_VERSION"
        echo "[setup] this compiles 77 C++ files: expect 11-15 minutes on 2 cores (done once per machine;"
        echo "[setup] the wheel is cached in $WHEEL_DIR)"
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download -q --no-deps --no-binary=:all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    grep -q -- '-std=c++17' "$src/setup.py" || { echo "[setup] mmcv setup.py no longer has -std=c++17; check the patch" >&2; exit 1; }
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    mkdir -p "$WHEEL_DIR"
    ( cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=$JOBS \
        "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR.tmp" . )
    mv "$WHEEL_DIR.tmp"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.tmp"
fi
echo "[setup] installing cached mmcv wheel from $WHEEL_DIR"
"$PY" -m pip install -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
