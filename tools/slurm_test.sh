#!/usr/bin/env bash
# Test on a slurm cluster (GPUs).
usage() {
    cat <<'USAGE'
usage: [GPUS=8] [GPUS_PER_NODE=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]

Launch tools/test.py --launcher slurm with srun, one task per GPU.
Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (extra srun options).

Example:
  GPUS=8 bash tools/slurm_test.sh gpu pacahead-test configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py work_dirs/pacahead_pacavit-tiny/iter_160000.pth --work-dir work_dirs/pacahead_pacavit-tiny
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 4 ]; then
    echo "slurm_test.sh: PARTITION, JOB_NAME, CONFIG and CHECKPOINT are required" >&2
    usage >&2
    exit 2
fi
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "${PARTITION}" --job-name="${JOB_NAME}" --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" --ntasks-per-node="${GPUS_PER_NODE}" --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 ${SRUN_ARGS} \
    python -u tools/test.py "${CONFIG}" "${CHECKPOINT}" --launcher="slurm" ${PY_ARGS}
