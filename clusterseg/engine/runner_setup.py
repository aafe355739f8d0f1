"""Config preparation shared by ``tools/train.py`` and ``tools/test.py``.

One pair of tools serves mmpretrain, mmdet and mmseg configs: the config's ``default_scope``
decides which library's registries the runner uses. What differs between the libraries'
own tools (``--out``, ``--show-dir``) is resolved here from that scope.
"""
import importlib
import os
import os.path as osp
import re

import torch
from mmengine.config import ConfigDict

SCOPES = ('mmseg', 'mmdet', 'mmpretrain')

# dataset type -> --task of tools/misc/make_synthetic_data.py that writes that format
_SYNTHETIC_TASK = {
    'ADE20KDataset': 'seg',
    'CocoDataset': 'det',
    'CocoPanopticDataset': 'panoptic',
    'ImageNet': 'cls',
    'CustomDataset': 'cls',
}


def set_work_dir(cfg, work_dir, config_path):
    """work_dir priority as in OpenMMLab: CLI > config > ``./work_dirs/<config stem>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _iter_datasets(dataset_cfg, key):
    """Yield ``(dotted key, dataset cfg)`` for a dataset cfg and the datasets it wraps."""
    if not isinstance(dataset_cfg, dict):
        return
    yield key, dataset_cfg
    if isinstance(dataset_cfg.get('dataset'), dict):
        yield from _iter_datasets(dataset_cfg['dataset'], key + '.dataset')
    for i, sub in enumerate(dataset_cfg.get('datasets', None) or []):
        yield from _iter_datasets(sub, f'{key}.datasets[{i}]')


def check_data_roots(cfg, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')):
    """Fail early, naming the path and how to get data, when a dataset's ``data_root`` is missing.

    Args:
        cfg (Config): the full config.
        loaders (tuple[str]): the dataloader keys that will be used.

    Raises:
        FileNotFoundError: naming the config key, the path, and the command that writes the
            synthetic set of that format.
    """
    for loader_key in loaders:
        loader = cfg.get(loader_key, None)
        if not isinstance(loader, dict):
            continue
        for key, ds in _iter_datasets(loader.get('dataset'), f'{loader_key}.dataset'):
            root = ds.get('data_root', None)
            if not root or osp.isdir(root):
                continue
            task = _SYNTHETIC_TASK.get(str(ds.get('type', '')).split('.')[-1])
            hint = ''
            if task is not None:
                hint = (f' To train on the synthetic stand-in, generate it with:\n'
                        f'    python tools/misc/make_synthetic_data.py --task {task} --out {root}\n')
            raise FileNotFoundError(
                f'data root {root!r} (config key {key}.data_root, dataset type '
                f'{ds.get("type")}) does not exist.{hint or " "}For the real dataset, see '
                'docs/en/get_started.md ("Datasets") for the expected layout, or override the path with '
                f'--cfg-options {key}.data_root=PATH')


def _replace_syncbn(node):
    """SyncBN needs CUDA: turn every ``norm_cfg type='SyncBN'`` into ``BN`` in place."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
            count += 1
        for v in node.values():
            count += _replace_syncbn(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            count += _replace_syncbn(v)
    return count


def adapt_to_device(cfg, logger=print):
    """Adapt a GPU recipe to a CPU-only machine: SyncBN -> BN, ``AmpOptimWrapper`` (fp16 mixed
    precision, CUDA only) -> ``OptimWrapper`` (fp32, same optimizer and clipping), no cudnn
    benchmark. Each change is logged. (``--amp`` asked for on the command line stays an error.)"""
    if torch.cuda.is_available():
        return
    n = _replace_syncbn(cfg.model)
    if n:
        logger(f'[clusterseg] no CUDA device: replaced {n} SyncBN layer config(s) with BN')
    wrapper = cfg.get('optim_wrapper', None)
    if isinstance(wrapper, dict) and wrapper.get('type') in ('AmpOptimWrapper',
                                                             'mmengine.AmpOptimWrapper'):
        wrapper['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)
        logger('[clusterseg] no CUDA device: optim_wrapper.type AmpOptimWrapper (fp16 mixed '
               'precision needs CUDA) replaced with OptimWrapper: this run trains in fp32')
    if cfg.get('env_cfg', None) is not None:
        cfg.env_cfg.cudnn_benchmark = False


DIST_TIMEOUT_ENV = 'CLUSTERSEG_DIST_TIMEOUT'
DEFAULT_DIST_TIMEOUT_S = 600


def add_distributed_loss_mean(cfg):
    """Distributed runs log each loss averaged over the processes (the global batch's loss):
    adds ``clusterseg.DistributedLossMeanHook`` to ``custom_hooks`` unless present."""
    if cfg.get('launcher', 'none') == 'none':
        return
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(isinstance(h, dict) and h.get('type') == 'clusterseg.DistributedLossMeanHook'
               for h in hooks):
        cfg.custom_hooks = hooks + [ConfigDict(type='clusterseg.DistributedLossMeanHook')]


def setup_cpu_distributed(cfg):
    """Start a gloo process group for ``--launcher pytorch`` when there is no CUDA device.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which dies
    on a CPU-only machine. ``Runner.setup_env`` skips ``init_dist`` when a process group already
    exists, so we create it here and tell DDP not to pin a device (``device_ids=None``).
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {cfg.launcher} without a CUDA device is not supported; use '
            'tools/dist_train.sh (torchrun, --launcher pytorch) for multi-process CPU runs')
    import datetime

    import torch.distributed as dist
    if not dist.is_initialized():
        # a collective that waits longer than this (a peer died where the launcher cannot see
        # it, e.g. on another node) fails with an error instead of hanging forever
        timeout = float(os.environ.get(DIST_TIMEOUT_ENV, DEFAULT_DIST_TIMEOUT_S))
        dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            timeout=datetime.timedelta(seconds=timeout))
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def teardown_distributed():
    """End a finished multi-process run cleanly: a barrier (no rank leaves while a peer still
    talks to it), then ``destroy_process_group``. Without it the process group is torn down by
    the interpreter at exit, where gloo's threads can abort a rank (``terminate called without an
    active exception``, SIGABRT) after a run that itself succeeded. No-op in single-process runs."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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


_UNKNOWN_TYPE = re.compile(r"([^\s'\"]+) is not in the (\S+)::(.+?) registry")


class UnknownTypeError(KeyError):
    """A config names a type no searched registry has (printed without KeyError's quoting)."""

    def __str__(self):
        return str(self.args[0])


def explain_unknown_type(err):
    """Turn mmengine's ``X is not in the scope::name registry`` into an error that lists the
    registries searched and the scopes where ``X`` does exist. Returns ``None`` otherwise."""
    m = _UNKNOWN_TYPE.search(str(err.args[0]) if err.args else str(err))
    if not m:
        return None
    name, scope, reg_name = m.group(1), m.group(2), m.group(3)
    from mmengine.registry import DefaultScope
    from mmengine.registry import root as mm_root
    root = next((r for r in vars(mm_root).values()
                 if getattr(r, 'name', None) == reg_name and getattr(r, 'parent', 1) is None), None)
    searched, found = [], []
    if root is not None:
        for pkg in ('clusterseg',) + SCOPES:
            try:
                importlib.import_module(f'{pkg}.registry')
                importlib.import_module(f'{pkg}.models')
            except ImportError:
                continue
        child = root._children.get(scope)
        reg = child if child is not None else root
        while reg is not None:
            searched.append(f'{reg.scope}::{reg.name}')
            reg = reg.parent
        short = name.split('.')[-1]
        for child_scope, child in root._children.items():
            if short in child._module_dict:
                found.append(f"'{child_scope}.{short}'")
    msg = (f'unknown type {name!r}: it is not registered in the {reg_name} registries searched '
           f'({" -> ".join(searched) or scope}; default scope '
           f'{DefaultScope.get_current_instance().scope_name if DefaultScope.get_current_instance() else None!r}).')
    if found:
        msg += f' A module of that name exists as {", ".join(found)}: use that as the type.'
    else:
        msg += ' Check the spelling; clusterseg modules are named with the prefix, e.g. ' \
               "type='clusterseg.PaCaViT'."
    return UnknownTypeError(msg)


_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# stock loading transforms -> clusterseg's checking versions (same arguments and outputs)
_CHECKED_LOADERS = {'LoadImageFromFile': 'clusterseg.LoadImageFromFile',
                    'LoadPanopticAnnotations': 'clusterseg.LoadPanopticAnnotations',
                    'mmdet.LoadPanopticAnnotations': 'clusterseg.LoadPanopticAnnotations'}
# mmseg's annotation loader (only in mmseg configs: mmdet's LoadAnnotations is another class)
_CHECKED_SEG_LOADERS = {'LoadAnnotations': 'clusterseg.LoadSegAnnotations',
                        'mmseg.LoadAnnotations': 'clusterseg.LoadSegAnnotations'}
_SEG_LOADER_TYPES = ('LoadAnnotations', 'mmseg.LoadAnnotations', 'clusterseg.LoadSegAnnotations')


def _seg_num_classes(cfg):
    model = cfg.get('model', None) or {}
    head = model.get('decode_head', None)
    if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
        return head['num_classes']
    return None


def add_input_checks(cfg):
    """Put clusterseg's checking transforms into every dataset pipeline of ``cfg`` (in place).

    * ``LoadImageFromFile`` (mmcv's, unprefixed) -> ``clusterseg.LoadImageFromFile``: same
      arguments and decoding; a truncated, empty or undecodable image raises an error naming
      the file.
    * ``LoadPanopticAnnotations`` (mmdet's) -> ``clusterseg.LoadPanopticAnnotations``: same
      arguments and outputs; a panoptic PNG that disagrees with its json ``segments_info``
      (ids on one side only, another size) raises naming the PNG, the image and the ids.
    * mmseg configs: ``LoadAnnotations`` (mmseg's) -> ``clusterseg.LoadSegAnnotations``: same
      arguments and outputs; an annotation that is not a single-channel 8-bit label map of its
      image's size raises naming the file and what was found.
    * mmseg configs: ``clusterseg.CheckSegLabels`` right after the annotation loader, with the
      decode head's ``num_classes`` and the loss's ignore index (255): a label outside the
      classes raises naming the annotation file and the value.
    * ``clusterseg.DatasetCheckHook`` in ``custom_hooks``: an empty dataset stops the run
      before it starts, naming the dataset's data_root / ann_file.
    * COCO datasets count, report (or, with ``strict_annotations = True`` in the config, refuse)
      the annotations mmdet drops silently, and say so when ``filter_cfg`` removes every image
      (:func:`clusterseg.engine.data_checks.install_coco_checks`).

    Valid data passes through unchanged. Returns the number of transforms replaced or added.
    :func:`strip_input_checks` undoes the pipeline and hook changes.
    """
    from clusterseg.engine import data_checks
    scope = cfg.get('default_scope', None)
    num_classes = _seg_num_classes(cfg) if scope == 'mmseg' else None
    if scope == 'mmdet':
        data_checks.install_coco_checks()
        data_checks.set_strict(cfg.get('strict_annotations', False))
    checked = dict(_CHECKED_LOADERS, **(_CHECKED_SEG_LOADERS if scope == 'mmseg' else {}))
    changed = 0
    seen = set()
    for loader_key in _LOADERS:
        loader = cfg.get(loader_key, None)
        if not isinstance(loader, dict):
            continue
        for _, ds in _iter_datasets(loader.get('dataset'), f'{loader_key}.dataset'):
            pipeline = ds.get('pipeline', None)
            if not isinstance(pipeline, list) or id(pipeline) in seen:
                continue
            seen.add(id(pipeline))
            out = []
            for i, t in enumerate(pipeline):
                new_type = isinstance(t, dict) and checked.get(t.get('type'))
                if new_type:
                    t = ConfigDict(t)
                    t['type'] = new_type
                    changed += 1
                out.append(t)
                nxt = pipeline[i + 1] if i + 1 < len(pipeline) else None
                if (num_classes is not None and isinstance(t, dict)
                        and t.get('type') in _SEG_LOADER_TYPES
                        and not (isinstance(nxt, dict)
                                 and nxt.get('type') == 'clusterseg.CheckSegLabels')):
                    out.append(ConfigDict(type='clusterseg.CheckSegLabels',
                                          num_classes=num_classes))
                    changed += 1
            pipeline[:] = out
    hooks = cfg.get('custom_hooks', None) or []
    if not any(isinstance(h, dict) and h.get('type') == 'clusterseg.DatasetCheckHook'
               for h in hooks):
        cfg.custom_hooks = list(hooks) + [dict(type='clusterseg.DatasetCheckHook')]
        changed += 1
    return changed


_UNCHECKED = {'clusterseg.LoadImageFromFile': 'LoadImageFromFile',
              'clusterseg.LoadPanopticAnnotations': 'LoadPanopticAnnotations'}


def strip_input_checks(cfg):
    """Undo :func:`add_input_checks` in place: the stock loaders back in every dataset pipeline,
    no ``CheckSegLabels``, no ``DatasetCheckHook``. Returns ``cfg``.

    The stock inferencers (``MMSegInferencer``, ``DetInferencer``,
    ``ImageClassificationInferencer``) find the image loader of a test pipeline by its name
    ``LoadImageFromFile``; a config with the checking versions in would not run there.
    """
    scope = cfg.get('default_scope', None)
    back = dict(_UNCHECKED, **{'clusterseg.LoadSegAnnotations':
                               'LoadAnnotations' if scope == 'mmseg' else 'mmseg.LoadAnnotations'})
    seen = set()
    pipelines = []
    for loader_key in _LOADERS:
        loader = cfg.get(loader_key, None)
        if isinstance(loader, dict):
            pipelines += [ds.get('pipeline') for _, ds in
                          _iter_datasets(loader.get('dataset'), f'{loader_key}.dataset')]
    for key in ('train_pipeline', 'val_pipeline', 'test_pipeline', 'tta_pipeline'):
        pipelines.append(cfg.get(key, None))
    for pipeline in pipelines:
        if not isinstance(pipeline, list) or id(pipeline) in seen:
            continue
        seen.add(id(pipeline))
        out = []
        for t in pipeline:
            if isinstance(t, dict) and t.get('type') == 'clusterseg.CheckSegLabels':
                continue
            if isinstance(t, dict) and t.get('type') in back:
                t = ConfigDict(t)
                t['type'] = back[t['type']]
            out.append(t)
        pipeline[:] = out
    hooks = cfg.get('custom_hooks', None)
    if isinstance(hooks, list):
        cfg.custom_hooks = [h for h in hooks if not (
            isinstance(h, dict) and h.get('type') == 'clusterseg.DatasetCheckHook')]
    return cfg


class ConfigKeyError(TypeError):
    """A config gives a module a keyword it does not take (printed without repr quoting)."""

    def __str__(self):
        return str(self.args[0])


_BAD_KWARG = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")


def explain_bad_config_key(err):
    """Turn ``X.__init__() got an unexpected keyword argument 'k'`` (raised while building a
    module from a config) into an error naming the key, the module and its file, the closest
    valid key and the valid keys. Returns ``None`` for other errors."""
    import difflib
    import inspect
    m = _BAD_KWARG.search(str(err))
    if not m:
        return None
    cls_name, key = m.group(1), m.group(2)
    from mmengine.registry import MODELS, TRANSFORMS
    import clusterseg.registry as cs_registry
    for mod in ('clusterseg.models', 'clusterseg.datasets'):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    candidates = []
    for root in (cs_registry.MODELS, cs_registry.TRANSFORMS, MODELS, TRANSFORMS):
        regs = [root] + list(getattr(root, '_children', {}).values())
        for reg in regs:
            obj = reg._module_dict.get(cls_name)
            if obj is not None and obj not in [c for _, c in candidates]:
                candidates.append((f'{reg.scope}.{cls_name}', obj))
    if not candidates:
        return None
    where, cls = next(((w, c) for w, c in candidates if w.startswith('clusterseg.')),
                      candidates[0])
    try:
        params = [n for n, p in inspect.signature(cls.__init__).parameters.items()
                  if n != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    close = difflib.get_close_matches(key, params, n=1, cutoff=0.6)
    msg = (f'unknown config key {key!r} for module {where} '
           f'({inspect.getsourcefile(cls) or cls.__module__}).')
    if close:
        msg += f' Did you mean {close[0]!r}?'
    if params:
        msg += f' Valid keys: {", ".join(params)}.'
    return ConfigKeyError(msg)
