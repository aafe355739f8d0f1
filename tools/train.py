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
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import clusterseg  # noqa: E402,F401  (version check + safe checkpoint loading)
from clusterseg.engine import (adapt_to_device, check_data_roots, enable_amp,  # noqa: E402
                               enable_auto_scale_lr, explain_unknown_type, scope_of,
                               add_distributed_loss_mean, add_input_checks,
                               explain_bad_config_key,
                               set_trust_checkpoints, set_work_dir, setup_cpu_distributed, teardown_distributed)
from clusterseg.engine.validate import (align_evaluators, build_runner,  # noqa: E402
                                        check_cfg_options, validate_run)
from mmengine.config import Config, DictAction  # noqa: E402


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
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options)  # a misspelt top-level key is not ignored
        cfg.merge_from_dict(args.cfg_options)
    scope_of(cfg)
    set_work_dir(cfg, args.work_dir, args.config)
    set_trust_checkpoints(args.trust_checkpoint)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    adapt_to_device(cfg)
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    align_evaluators(cfg, args.cfg_options)  # metrics read the evaluated dataset's annotations
    validate_run(cfg, 'train')  # hooks, loops, optimizer, schedulers, types, num_classes
    add_input_checks(cfg)  # name the file of a corrupt image / bad label; empty datasets
    add_distributed_loss_mean(cfg)  # log the global batch's loss in multi-process runs
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    setup_cpu_distributed(cfg)
    try:
        runner = build_runner(cfg)  # the config it saves runs in every tool and inferencer
        runner.train()
        teardown_distributed()
    except KeyError as e:
        better = explain_unknown_type(e)
        if better is None:
            raise
        raise better from e
    except TypeError as e:
        better = explain_bad_config_key(e)
        if better is None:
            raise
        raise better from e


if __name__ == '__main__':
    main()
