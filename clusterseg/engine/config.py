"""From the command line to the config a run uses: ``prepare_config(args, mode)``.

One pair of tools serves mmpretrain, mmdet and mmseg configs: the config's ``default_scope``
decides which library's registries the runner uses. What differs between the libraries' own
tools (``--out``, ``--show-dir``) is resolved here from that scope. ``tools/train.py`` and
``tools/test.py`` parse their arguments and call :func:`prepare_config`; the order of the edits
(options merged, checked, device adapted, checks added) lives here only.
"""
import os
import os.path as osp

import torch
from mmengine.config import Config

from .errors import SCOPES, add_input_checks, check_data_roots
from .launch import adapt_to_device, add_distributed_loss_mean


def set_work_dir(cfg, work_dir, config_path):
    """work_dir priority as in OpenMMLab: CLI > config > ``./work_dirs/<config stem>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def enable_amp(cfg):
    """``--amp``: mixed precision through mmengine's ``AmpOptimWrapper`` (needs a GPU)."""
    if not torch.cuda.is_available():
        raise SystemExit(
            '--amp needs a CUDA GPU: mmengine\'s AmpOptimWrapper refuses to run on a CPU-only '
            'machine, and this one has no CUDA device. Drop --amp to train in fp32.')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise SystemExit(f'--amp works with optim_wrapper type OptimWrapper, but the config uses '
                         f'{cfg.optim_wrapper.type}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def enable_auto_scale_lr(cfg):
    """``--auto-scale-lr``: needs ``auto_scale_lr.base_batch_size`` in the config."""
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise SystemExit('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=N)` in the '
                         'config (N = the batch size the learning rate was tuned for)')
    cfg.auto_scale_lr.enable = True


def scope_of(cfg):
    """The downstream library the config runs in (``mmseg``, ``mmdet`` or ``mmpretrain``)."""
    scope = cfg.get('default_scope', None)
    if scope not in SCOPES:
        raise ValueError(f'config key default_scope is {scope!r}; clusterseg tools run configs '
                         f'whose default_scope is one of {SCOPES}')
    return scope


def enable_visualization(cfg, show_dir, show=False, wait_time=2.0):
    """``--show-dir``/``--show`` for any scope: turn on that library's visualization hook."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise SystemExit('--show/--show-dir need a `visualization` hook in default_hooks')
    hook = hooks['visualization']
    scope = scope_of(cfg)
    # mmdet puts a relative --show-dir under WORK_DIR/TIMESTAMP; mmseg and mmpretrain would put it
    # under the current directory: we put theirs under the work dir too
    if show_dir and scope != 'mmdet' and not osp.isabs(show_dir):
        show_dir = osp.join(cfg.work_dir, show_dir)
    if scope != 'mmdet':
        hook.interval = 1  # paint every test image (mmdet's hook always does in test)
    if scope == 'mmpretrain':
        hook.enable = True
        hook.out_dir = show_dir
    else:
        hook.draw = True
        if scope == 'mmdet':
            hook.test_out_dir = show_dir
        elif show_dir:
            cfg.visualizer.save_dir = show_dir
    if show:
        hook.show = True
        hook.wait_time = wait_time


def add_result_dump(cfg, out):
    """``--out``: a ``.pkl`` file dumps raw predictions (any scope); for mmseg, a directory
    receives the predicted label maps as PNG (IoUMetric's ``output_dir``)."""
    scope = scope_of(cfg)
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    if out.endswith(('.pkl', '.pickle')):
        if scope == 'mmdet':
            evaluators.append(dict(type='DumpDetResults', out_file_path=out))
        else:
            evaluators.append(dict(type='mmengine.DumpResults', out_file_path=out))
    elif scope == 'mmseg':
        for ev in evaluators:
            ev['output_dir'] = out
            ev['keep_results'] = True
    else:
        raise SystemExit(f'--out {out}: for {scope} configs give a .pkl file')
    cfg.test_evaluator = evaluators if len(evaluators) > 1 else evaluators[0]


def set_trust_checkpoints(trust):
    """``--trust-checkpoint``: load checkpoints with ``weights_only=False`` (the user vouches)."""
    if trust:
        from clusterseg.utils.checkpoint import TRUST_ENV
        os.environ[TRUST_ENV] = '1'


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


def prepare_config(args, mode):
    """The config of a ``tools/train.py`` (``mode='train'``) or ``tools/test.py`` (``'test'``)
    run, from that tool's parsed arguments.

    Reads ``args.config``, merges ``--cfg-options`` (a misspelt top-level key is an error), applies
    the flags, adapts a GPU recipe to the machine, and checks the result before anything is built
    (data roots, evaluators against their datasets, every module's arguments and num_classes);
    then puts the input checks into the pipelines (and, in multi-process training, the logging
    of the global batch's loss).

    Raises:
        SystemExit: a flag the config cannot take (``--amp`` without a GPU, ``--tta`` without a
            ``tta_pipeline``, a missing checkpoint file, ...).
    """
    from .validate import align_evaluators, check_cfg_options, validate_run
    if mode not in ('train', 'test'):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if mode == 'test' and not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint file {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options)  # a misspelt top-level key is not ignored
        cfg.merge_from_dict(args.cfg_options)
    scope_of(cfg)
    set_work_dir(cfg, args.work_dir, args.config)
    set_trust_checkpoints(args.trust_checkpoint)
    if mode == 'train':
        _apply_train_flags(cfg, args)
        loaders = ('train_dataloader', 'val_dataloader')
    else:
        _apply_test_flags(cfg, args)
        loaders = ('test_dataloader', )
    if getattr(args, 'keep_freed_memory', False):
        cfg.setdefault('env_cfg', {})
        cfg.env_cfg['keep_freed_memory'] = True  # applied by launch.run (clusterseg/utils/heap.py)
    if getattr(args, 'compile', None):
        from .compile import apply_compile
        apply_compile(cfg, args.compile, mode)  # cfg.compile (train_step) + CompileHook (val/test)
    adapt_to_device(cfg)
    check_data_roots(cfg, loaders)
    align_evaluators(cfg, args.cfg_options)  # metrics read the evaluated dataset's annotations
    validate_run(cfg, mode)  # hooks, loops, optimizer, schedulers, metrics, types, num_classes
    add_input_checks(cfg)  # name the file of a corrupt image / bad label; empty datasets
    if mode == 'train':
        add_distributed_loss_mean(cfg)  # log the global batch's loss in multi-process runs
    return cfg


def _apply_train_flags(cfg, args):
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


def _apply_test_flags(cfg, args):
    if args.allow_partial_load:
        from clusterseg.utils.state_dict import PARTIAL_ENV
        os.environ[PARTIAL_ENV] = '1'
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
    if args.tta:
        use_tta(cfg, args.config)
    if args.out is not None:
        add_result_dump(cfg, args.out)
