"""Test a checkpoint with any clusterseg / mmpretrain / mmdet / mmseg config.

Prints the metrics and writes them to WORK_DIR/test_metrics.json.

Example:
    # the checkpoint `python tools/train.py` wrote for the SegFormer demo, with drawn predictions
    python tools/test.py configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py \\
        work_dirs/demo/iter_300.pth --work-dir work_dirs/demo --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8  # 8 GPUs (or 8 CPU processes over gloo)
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from clusterseg.engine import install, prepare_config, run, use_tta  # noqa: E402,F401
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (evaluate) a checkpoint with a clusterseg config.',
        epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics and logs')
    parser.add_argument('--out', help='a .pkl file for the raw predictions; for mmseg configs a '
                                      'directory also works (predicted label maps as PNG)')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='directory where painted predictions are saved; a relative '
                                           'path is placed under the work dir (mmdet: under '
                                           'WORK_DIR/TIMESTAMP)')
    parser.add_argument('--wait-time', type=float, default=2, help='interval of --show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (tta_model '
                                                           'and tta_pipeline of the config)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load the checkpoint with weights_only=False (only for files you trust)')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='evaluate a checkpoint that does not fit the model (what does not load '
                             'keeps random weights); without it such a checkpoint is an error')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='CPU runs: keep freed memory in the process instead of handing it back '
                             'to the kernel every step (glibc; env_cfg.keep_freed_memory=True): '
                             'fewer page faults, a resident set that stays at the peak')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help='torch.compile the train/val/test step (inductor, aot_eager, eager; '
                             'docs/en/deployment.md)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py) before any file is read
    return run(prepare_config(args, 'test'), 'test')


if __name__ == '__main__':
    main()
