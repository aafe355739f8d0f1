#!/usr/bin/env bash
# The GPU path on a bare GPU machine, in one go: install (mmcv with CUDA ops, see
# tools/install/build_mmcv.sh), the GPU tests (tests/test_gpu: AMP fp16/bf16 train steps of every
# family, SyncBN in a 1-process DDP, mmcv's CUDA ops, bf16 inference) and a short speed benchmark
# (inference and training at 512 px), with the figures written to OUT_DIR/gpu_check.md
# (the benchmark's CSVs and the pytest log beside it). Paste that file's tables into
# docs/en/benchmarks.md.
#
# Usage: bash tools/misc/gpu_check.sh [OUT_DIR]          (default work_dirs/gpu_check)
#   PY=...                the Python of the environment (default .venv/bin/python; installed if missing)
#   GPU_CHECK_SIZES       benchmark resolutions (default "512")
#   GPU_CHECK_MODELS      benchmark backbones (default "pacavit-tiny clustr-tiny psvit-tiny mit-b1 pvtv2-b1")
# Exit status: that of the tests (the benchmark's failures are recorded, not fatal).
usage() {
    cat <<'USAGE'
usage: bash tools/misc/gpu_check.sh [OUT_DIR]

Install (mmcv with CUDA ops), run the GPU tests (tests/test_gpu) and a short speed benchmark on a
CUDA machine; the figures go to OUT_DIR/gpu_check.md (default work_dirs/gpu_check).
Environment: PY (.venv/bin/python), GPU_CHECK_SIZES ("512"), GPU_CHECK_MODELS.

Example:
  bash tools/misc/gpu_check.sh work_dirs/gpu_check
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${1:-work_dirs/gpu_check}
SIZES=${GPU_CHECK_SIZES:-512}
MODELS=${GPU_CHECK_MODELS:-pacavit-tiny clustr-tiny psvit-tiny mit-b1 pvtv2-b1}
mkdir -p "$OUT"
REPORT="$OUT/gpu_check.md"
say() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }

if [ ! -x "$PY" ]; then
    say "no $PY: installing (make install; mmcv's CUDA ops are built when nvcc, a CUDA torch and a GPU are found)"
    make install || { echo "make install failed" >&2; exit 1; }
fi
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "no CUDA GPU visible to torch ($("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)')): nothing to check" >&2
    exit 1
}
# an mmcv built before a GPU was here has CPU ops only: rebuild it (build_mmcv.sh checks the CUDA ops)
bash tools/install/build_mmcv.sh "$PY" || { echo "building mmcv with CUDA ops failed" >&2; exit 1; }

{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "(no nvidia-smi)"
    "$PY" -c 'import torch, mmcv; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), "| mmcv", mmcv.__version__, "| GPU", torch.cuda.get_device_name(0), "| bf16", torch.cuda.is_bf16_supported())'
    echo '```'
} > "$REPORT"

say "GPU tests (tests/test_gpu, and the bf16 / ONNX tests)"
"$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu tests/test_deployment/test_bf16.py \
    tests/test_deployment/test_onnx.py 2>&1 | tee "$OUT/gpu_tests.log"
TESTS_RC=${PIPESTATUS[0]}
{
    echo
    echo "## Tests (exit $TESTS_RC)"
    echo '```'
    grep -E '(passed|failed|error|skipped)' "$OUT/gpu_tests.log" | tail -n 5
    grep -E '^(FAILED|ERROR|SKIPPED)' "$OUT/gpu_tests.log" || true
    echo '```'
} >> "$REPORT"

# shellcheck disable=SC2086  # the lists are word-split on purpose
for mode in infer train; do
    extra=()
    [ "$mode" = train ] && extra=(--with-cp)
    say "benchmark --mode $mode --device cuda (sizes $SIZES, batch 1 and 8)"
    "$PY" tools/analysis_tools/benchmark.py --models $MODELS --sizes $SIZES --batch-sizes 1 8 \
        --mode "$mode" "${extra[@]}" --device cuda --repeat 10 --warmup 3 --no-progress \
        --out-dir "$OUT/benchmark_$mode" 2>&1 | tee "$OUT/benchmark_$mode.log"
    BENCH_RC=${PIPESTATUS[0]}
    {
        echo
        echo "## Benchmark, --mode $mode (exit $BENCH_RC)"
        echo
        echo "\`python tools/analysis_tools/benchmark.py --models $MODELS --sizes $SIZES --batch-sizes 1 8 --mode $mode ${extra[*]} --device cuda --repeat 10 --warmup 3\`"
        echo
        echo '```'
        cat "$OUT/benchmark_$mode.log"
        echo '```'
    } >> "$REPORT"
done

say "figures in $REPORT"
exit "$TESTS_RC"
