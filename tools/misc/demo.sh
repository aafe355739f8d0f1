#!/usr/bin/env bash
# The main job behind `make demo`: synthetic ADE20K-format data -> tools/train.py -> tools/test.py.
usage() {
    cat <<'USAGE'
usage: bash tools/misc/demo.sh [PYTHON] [CONFIG] [WORK_DIR]

Generate the synthetic ADE20K-format set (data/synthetic_ade20k, once), train CONFIG, test the
last checkpoint, draw the learned cluster maps of NUM_CLUSTER_MAPS (default 4) validation images
and print the mIoU. Run from the repository root. CONFIG must be a clustering model (PaCa-ViT,
ClusTR, PaCa head, kMaX-DeepLab) for the cluster maps.
Defaults: PYTHON .venv/bin/python, CONFIG the PaCa-ViT demo config, WORK_DIR work_dirs/demo.

Example:
  bash tools/misc/demo.sh .venv/bin/python configs/demo/pacahead_pacavit-demo_1xb8-300it_synthetic-ade20k-128x128.py work_dirs/demo
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
set -euo pipefail
PY=${1:-.venv/bin/python}
CONFIG=${2:-configs/demo/pacahead_pacavit-demo_1xb8-300it_synthetic-ade20k-128x128.py}
WORK_DIR=${3:-work_dirs/demo}
DATA=data/synthetic_ade20k
NUM_CLUSTER_MAPS=${NUM_CLUSTER_MAPS:-4}
START=$(date +%s)
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
step "drawing the learned cluster maps of $NUM_CLUSTER_MAPS validation images"
"$PY" - "$CONFIG" "$CKPT" "$WORK_DIR" "$DATA" "$NUM_CLUSTER_MAPS" <<'PYEOF'
# image | prediction | each stage's patch-to-cluster assignment | the PaCa head's class clusters
import glob, os, sys
sys.path.insert(0, os.getcwd())
import mmcv
from clusterseg.apis import draw_prediction, inference_model, init_inferencer
from clusterseg.visualization import cluster_maps, compose_panels
config, ckpt, work_dir, data, num = sys.argv[1:6]
out_dir = os.path.join(work_dir, 'clusters')
os.makedirs(out_dir, exist_ok=True)
inferencer = init_inferencer(config, ckpt)
images = sorted(glob.glob(os.path.join(data, 'images', 'validation', '*.jpg')))[:int(num)]
for img in images:
    try:
        maps = cluster_maps(inferencer, img)
    except ValueError as e:  # a model without clusters (the SegFormer baseline)
        print(f'no cluster maps: {e}')
        break
    vis = draw_prediction(inferencer, img, inference_model(inferencer, img))
    strip = compose_panels(vis, maps, height=192, image=mmcv.bgr2rgb(mmcv.imread(img)))
    mmcv.imwrite(mmcv.rgb2bgr(strip), os.path.join(out_dir, os.path.basename(img)[:-4] + '.png'))
PYEOF
"$PY" - "$WORK_DIR" "$CKPT" "$START" <<'PYEOF'
import glob, json, os, sys, time
work_dir, ckpt, start = sys.argv[1:4]
metrics = json.load(open(os.path.join(work_dir, 'test_metrics.json')))
runs = sorted(glob.glob(os.path.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6)))  # timestamped runs
vis = sorted(glob.glob(os.path.join(work_dir, 'vis', '**', '*.png'), recursive=True))
clusters = sorted(glob.glob(os.path.join(work_dir, 'clusters', '*.png')))
print('=' * 70)
print(f"mIoU on the synthetic validation set: {metrics['mIoU']:.2f}")
print(f'logs and metrics : {work_dir} (latest run: {runs[-1] if runs else "-"})')
print(f'checkpoint       : {ckpt}')
print(f'predictions      : {os.path.dirname(vis[0]) if vis else "-"} ({len(vis)} images)')
print(f'cluster maps     : {os.path.join(work_dir, "clusters")} ({len(clusters)} images: image | '
      'prediction | stage clusters | head clusters)')
print(f'took {time.time() - float(start):.0f} s')
print('=' * 70)
PYEOF
