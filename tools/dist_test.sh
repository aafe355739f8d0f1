#!/usr/bin/env bash
# Multi-process / multi-node testing through torchrun and MMEngine's distributed runner.
# Without CUDA the processes run on the CPU over gloo (see clusterseg/engine/launch.py).
usage() {
    cat <<'USAGE'
usage: bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]

Test CHECKPOINT with CONFIG in NPROC processes per node (torchrun; tools/test.py --launcher pytorch).
Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python).

Example:
  bash tools/dist_test.sh configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py work_dirs/demo/iter_300.pth 2 --work-dir work_dirs/demo_dist
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 3 ]; then
    echo "dist_test.sh: CONFIG, CHECKPOINT and NPROC are required" >&2
    usage >&2
    exit 2
fi
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
ROOT="$(dirname "$0")/.."
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
