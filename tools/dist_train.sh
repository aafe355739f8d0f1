#!/usr/bin/env bash
# Multi-process / multi-node training through torchrun and MMEngine's distributed runner.
# Without CUDA the processes train on the CPU over gloo (see clusterseg/engine/launch.py).
usage() {
    cat <<'USAGE'
usage: bash tools/dist_train.sh CONFIG NPROC [train.py args...]

Train CONFIG with NPROC processes per node (torchrun; tools/train.py --launcher pytorch).
Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python).

Example:
  bash tools/dist_train.sh configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py 2 --work-dir work_dirs/demo_dist
  # two nodes, 8 processes each (run on every node with its NODE_RANK)
  NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py 8
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 2 ]; then
    echo "dist_train.sh: CONFIG and NPROC are required" >&2
    usage >&2
    exit 2
fi
set -euo pipefail
CONFIG=$1
NPROC=$2
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
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
