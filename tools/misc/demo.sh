#!/usr/bin/env bash
# The main job behind `make demo`: synthetic ADE20K-format data -> tools/train.py -> tools/test.py.
usage() {
    cat <<'USAGE'
usage: bash tools/misc/demo.sh [PYTHON] [CONFIG] [WORK_DIR]

Generate the synthetic ADE20K-format set (data/synthetic_ade20k, once), train CONFIG, test the
last checkpoint and print the mIoU. Run from the repository root.
Defaults: PYTHON .venv/bin/python, CONFIG the SegFormer-B0 demo config, WORK_DIR work_dirs/demo.

Example:
  bash tools/misc/demo.sh .venv/bin/python configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py work_dirs/demo
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
set -euo pipefail
PY=${1:-.venv/bin/python}
CONFIG=${2:-configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py}
WORK_DIR=${3:-work_dirs/demo}
DATA=data/synthetic_ade20k
step() { echo "[demo $(date +%H:%M:%S)] $*"; }

if [ ! -d "$DATA/images/training" ]; then
    step "generating the synthetic ADE20K-format set in $DATA"
    "$PY" tools/misc/make_synthetic_data.py --task seg --out "$DATA"
else
    step "using the synthetic set already in $DATA"
fi
step "training $CONFIG (logs in $WORK_DIR)"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
CKPT=$(cat "$WORK_DIR/last_checkpoint")
step "testing $CKPT"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --show-dir vis
"$PY" - "$WORK_DIR" "$CKPT" <<'PYEOF'
import glob, json, os, sys
work_dir, ckpt = sys.argv[1:3]
metrics = json.load(open(os.path.join(work_dir, 'test_metrics.json')))
runs = sorted(glob.glob(os.path.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6)))  # timestamped runs
vis = sorted(glob.glob(os.path.join(work_dir, 'vis', '**', '*.png'), recursive=True))
print('=' * 70)
print(f"mIoU on the synthetic validation set: {metrics['mIoU']:.2f}")
print(f'logs and metrics : {work_dir} (latest run: {runs[-1] if runs else "-"})')
print(f'checkpoint       : {ckpt}')
print(f'predictions      : {os.path.dirname(vis[0]) if vis else "-"} ({len(vis)} images)')
print('=' * 70)
PYEOF
