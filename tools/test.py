"""Test a checkpoint with any clusterseg / mmpretrain / mmdet / mmseg config.

Prints the metrics and writes them to WORK_DIR/test_metrics.json.

Example:
    # the checkpoint `python tools/train.py` wrote for the SegFormer demo, with drawn predictions
    python tools/test.py configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py \\
        work_dirs/demo/iter_300.pth --work-dir work_dirs/demo --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8  # 8 GPUs (or 8 CPU processes over gloo)
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import clusterseg  # noqa: E402,F401  (version check + safe checkpoint loading)
from clusterseg.engine import (adapt_to_device, add_result_dump, check_data_roots,  # noqa: E402
                               enable_visualization, explain_unknown_type, scope_of,
                               add_input_checks, explain_bad_config_key,
                               set_trust_checkpoints, set_work_dir, setup_cpu_distributed, teardown_distributed)
from clusterseg.utils.state_dict import PARTIAL_ENV  # noqa: E402
from clusterseg.engine.validate import (align_evaluators, build_runner,  # noqa: E402
                                        check_cfg_options, validate_run)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402


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
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _resize_scales(pipeline):
    """Every ``Resize`` scale (w, h) in a (TTA) pipeline, TestTimeAug's branches included."""
    for t in pipeline or []:
        if isinstance(t, (list, tuple)):
            yield from _resize_scales(t)
        elif isinstance(t, dict):
            if t.get('type') in ('Resize', 'mmseg.Resize', 'mmcv.Resize') and t.get('scale'):
                yield tuple(t['scale'])
            yield from _resize_scales(t.get('transforms'))


def use_tta(cfg, config_path):
    """Test with the config's ``tta_model`` around its model and ``tta_pipeline`` as the test
    pipeline (the ADE20K bases: 6 scales x 2 flips; kMaX: flips at its fixed size)."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise SystemExit(f'--tta: {config_path} has no {"tta_model" if "tta_model" not in cfg else "tta_pipeline"}. '
                         'The ADE20K configs inherit both (configs/_base_/datasets/ade20k.py, '
                         'configs/_base_/default_runtime_mmseg.py); add them to test other configs '
                         'with test-time augmentation.')
    # a model at one fixed input size (kMaX) pads every batch to it: larger views cannot run
    head = cfg.model.get('decode_head')
    fixed = head.get('input_size') if isinstance(head, dict) else None
    if fixed:
        too_large = [s for s in _resize_scales(cfg.tta_pipeline) if max(s) > max(fixed) or
                     min(s) > min(fixed)]
        if too_large:
            raise SystemExit(
                f'--tta: {config_path} runs at the fixed input size {tuple(fixed)}, but its '
                f'tta_pipeline resizes to {too_large} (larger): multi-scale TTA cannot apply. Use '
                'a tta_pipeline within that size, e.g. flips only at Resize(scale=image_size), as '
                'configs/kmax_deeplab/kmax-seg_r50_32xb2-100k_ade20k-1281x1281.py does.')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    # BaseTTAModel gives the module its own data_preprocessor argument, and the runner fills that
    # with the config's top-level one (a base's: kMaX's synthetic sibling would pad to 1281)
    if cfg.model.get('data_preprocessor') is not None:
        cfg.tta_model.data_preprocessor = cfg.model.data_preprocessor
    cfg.model = cfg.tta_model


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options)  # a misspelt top-level key is not ignored
        cfg.merge_from_dict(args.cfg_options)
    scope_of(cfg)
    set_work_dir(cfg, args.work_dir, args.config)
    set_trust_checkpoints(args.trust_checkpoint)
    if args.allow_partial_load:
        os.environ[PARTIAL_ENV] = '1'
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
    if args.tta:
        use_tta(cfg, args.config)
    if args.out is not None:
        add_result_dump(cfg, args.out)
    adapt_to_device(cfg)
    check_data_roots(cfg, ('test_dataloader',))
    align_evaluators(cfg, args.cfg_options)  # metrics read the evaluated dataset's annotations
    validate_run(cfg, 'test')  # hooks, metrics, types, num_classes
    add_input_checks(cfg)  # name the file of a corrupt image / bad label; empty datasets
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint file {args.checkpoint} does not exist')
    cfg = build_cfg(args)
    setup_cpu_distributed(cfg)
    try:
        runner = build_runner(cfg)  # the config it saves runs in every tool and inferencer
        metrics = runner.test()
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
    if is_main_process():
        out = osp.join(cfg.work_dir, 'test_metrics.json')
        with open(out, 'w') as f:
            json.dump({k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()},
                      f, indent=2)
        print(f'[clusterseg] metrics: {json.dumps(metrics, default=str)}')
        print(f'[clusterseg] metrics written to {out}')
    return metrics


if __name__ == '__main__':
    main()
