"""Train any clusterseg / mmpretrain / mmdet / mmseg config (the config's default_scope decides).

Progress and losses are logged by MMEngine's runner (every ``default_hooks.logger.interval`` iters).

Example:
    # the 300-iteration SegFormer demo on the synthetic ADE20K-format set
    # (python tools/misc/make_synthetic_data.py --task seg writes data/synthetic_ade20k)
    python tools/train.py configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py \\
        --work-dir work_dirs/demo
    # PaCa-ViT-tiny + PaCa head, overriding the schedule from the command line
    python tools/train.py configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py \\
        --work-dir work_dirs/pacahead --cfg-options train_cfg.max_iters=100
    bash tools/dist_train.sh CONFIG 8            # 8 GPUs (or 8 CPU processes over gloo)
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from clusterseg.engine import install, prepare_config, run  # noqa: E402
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model from a clusterseg (mmpretrain / mmdet / mmseg) config.',
        epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or (no value) from the latest '
                             'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training (GPU only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true', help='skip validation during training')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load checkpoints with weights_only=False (only for files you trust)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='CPU runs: keep freed memory in the process instead of handing it back '
                             'to the kernel every step (glibc; env_cfg.keep_freed_memory=True): '
                             'fewer page faults, a resident set that stays at the peak')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help='torch.compile the train/val/test step (inductor, aot_eager, eager; '
                             'docs/en/deployment.md)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py) before any file is read
    run(prepare_config(args, 'train'), 'train')


if __name__ == '__main__':
    main()
