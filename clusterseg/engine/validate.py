"""Check a run's config before the runner builds anything, naming the config key at fault.

``tools/train.py`` and ``tools/test.py`` call these between reading the config and building the
runner, so a mistake stops the run before its first iteration instead of deep inside it (or
never):

* :func:`check_cfg_options`: a ``--cfg-options`` key whose first part is no top-level key of the
  config nor of mmengine's runner (``trian_cfg.max_iters=2``) is an error with the closest key;
  merged as is, the runner would silently ignore it.
* :func:`align_evaluators`: a metric that reads its own ground truth (``CocoMetric.ann_file``,
  ``CocoPanopticMetric.seg_prefix``) must read the files of the dataset it evaluates.
* :func:`validate_run`: the arguments of hooks, loops, the optimizer (wrapper), the parameter
  schedulers, metrics and model modules are checked against the class that will receive them
  (unknown keys with a suggestion, value types against the documented types), and the heads'
  ``num_classes`` against the dataset's classes.
"""
import difflib
import inspect
import os.path as osp
import re
import typing

from mmengine.config import Config

from .errors import ConfigKeyError


class ConfigValueError(ValueError):
    """A config value has a type the module that receives it does not take."""

    def __str__(self):
        return str(self.args[0])


class NumClassesError(ValueError):
    """A head's number of classes differs from its dataset's."""

    def __str__(self):
        return str(self.args[0])


class EvaluatorDatasetMismatchError(ValueError):
    """An evaluator reads ground truth from other files than the dataset it evaluates."""

    def __str__(self):
        return str(self.args[0])


# ------------------------------------------------------------------ top-level keys
# read by mmengine's Runner (its __init__ arguments are added below) or by the OpenMMLab tools
_KNOWN_TOP_LEVEL = {
    'runner_type', 'launcher', 'model_wrapper_cfg', 'compile', 'sync_bn', 'find_unused_parameters',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'work_dir', 'custom_imports',
    'tta_model', 'tta_pipeline', 'train_pipeline', 'val_pipeline', 'test_pipeline',
    'vis_backends', 'backend_args', 'data_root', 'dataset_type', 'metainfo', 'img_scale',
    'crop_size', 'norm_cfg', 'file_client_args', 'dist_params',
    # clusterseg: COCO annotations that mmdet would drop make the run fail (engine/data_checks)
    'strict_annotations',
}


def _runner_keys():
    from mmengine.runner import Runner
    return {n for n in inspect.signature(Runner.__init__).parameters if n != 'self'}


def check_cfg_options(cfg, options):
    """Refuse ``--cfg-options`` keys whose top-level part nothing reads.

    Args:
        cfg (Config): the config as loaded from its file (before merging ``options``).
        options (dict): ``--cfg-options`` as parsed by ``DictAction`` (dotted keys).

    Raises:
        ConfigKeyError: naming the option, the unknown key and the closest valid key.
    """
    if not options:
        return
    valid = set(cfg.keys()) | _runner_keys() | _KNOWN_TOP_LEVEL
    for option in options:
        top = option.split('.')[0]
        if top in valid:
            continue
        close = difflib.get_close_matches(top, sorted(valid), n=1, cutoff=0.6)
        msg = (f'unknown top-level config key {top!r} (--cfg-options {option}=...): neither the '
               'config nor mmengine\'s runner has it, so it would be ignored.')
        if close:
            msg += f' Did you mean {close[0]!r} ({option.replace(top, close[0], 1)})?'
        raise ConfigKeyError(msg)


# ------------------------------------------------------------------ evaluator <-> dataset
def _unwrap(ds):
    """The innermost dataset cfg of dataset wrappers (``dataset`` / first of ``datasets``)."""
    while isinstance(ds, dict):
        if isinstance(ds.get('dataset'), dict):
            ds = ds['dataset']
        elif ds.get('datasets'):
            ds = ds['datasets'][0]
        else:
            break
    return ds


def _join(root, path):
    if path is None:
        return None
    path = str(path)
    if root and not osp.isabs(path) and '://' not in path:
        path = osp.join(str(root), path)
    return path


def _same_path(a, b):
    norm = (lambda p: osp.normpath(osp.abspath(p)) if '://' not in p else p.rstrip('/'))
    return norm(str(a)) == norm(str(b))


def _metric_list(ev):
    if isinstance(ev, dict) and isinstance(ev.get('metrics'), (list, tuple, dict)):
        ev = ev['metrics']
    if isinstance(ev, dict):
        return [('', ev)]
    if isinstance(ev, (list, tuple)):
        return [(f'.{i}', m) for i, m in enumerate(ev) if isinstance(m, dict)]
    return []


def _base(path):
    return osp.basename(str(path).rstrip('/'))


def _under(path, root):
    """``path`` relative to ``root``, or ``None`` when it is not inside it."""
    if not path or not root:
        return None
    rel = osp.relpath(osp.abspath(str(path)), osp.abspath(str(root)))
    return None if rel.startswith('..') else rel


def _dataset_paths(cfg, loader_key):
    loader = cfg.get(loader_key, None) if cfg is not None else None
    ds = _unwrap(loader.get('dataset')) if isinstance(loader, dict) else None
    if not isinstance(ds, dict):
        return None, {}
    root = ds.get('data_root', None)
    prefix = ds.get('data_prefix', None) or {}
    if not isinstance(prefix, dict):  # mmpretrain's CustomDataset(data_prefix='train')
        prefix = {}
    paths = {'ann_file': (_join(root, ds.get('ann_file')), 'ann_file')}
    if prefix.get('seg'):
        paths['seg_prefix'] = (_join(root, prefix['seg']), 'data_prefix.seg')
    return root, paths


def align_evaluators(cfg, cfg_options=None, logger=print):
    """Make metrics that read their own ground truth read the evaluated dataset's files.

    Concerns the ``val_evaluator`` / ``test_evaluator`` metrics with an ``ann_file``
    (``CocoMetric``, ``CocoPanopticMetric``, ``LVISMetric``, ...) and the ``seg_prefix`` of
    ``CocoPanopticMetric``. Overriding a dataset's ``data_root`` (as the missing-data error
    suggests) leaves such a metric on the old files: it scores the predictions against another
    set's ground truth (perfect predictions score 0) without a warning. Here:

    * a metric path with the file name of the dataset's own (``instances_val2017.json``,
      ``panoptic_val2017/``) but another location is the dataset's file under another root: it
      is set to the dataset's path, with a log line naming both;
    * a metric path that, in the config file, lay under the dataset's ``data_root`` (the
      instances json a panoptic config evaluates with) moves with an overridden ``data_root``;
    * when the metric's path was itself given in ``--cfg-options`` and is the dataset's file
      name under another location, the two explicit choices conflict:
      :class:`EvaluatorDatasetMismatchError` names both paths and both keys.

    ``format_only`` metrics (no ground truth) are left alone.

    Args:
        cfg (Config): the full config, after ``--cfg-options`` were merged (changed in place).
        cfg_options (dict | None): the ``--cfg-options`` given.
        logger (callable): where the derivations are reported.
    """
    explicit = set(cfg_options or ())
    original = []  # the config file as written, read only if needed

    def from_file():
        if not original:
            name = getattr(cfg, 'filename', None)
            original.append(Config.fromfile(name) if name and osp.isfile(name) else None)
        return original[0]

    for ev_key, loader_key in (('val_evaluator', 'val_dataloader'),
                               ('test_evaluator', 'test_dataloader')):
        root, wanted = _dataset_paths(cfg, loader_key)
        for suffix, metric in _metric_list(cfg.get(ev_key, None)):
            if metric.get('format_only', False):
                continue
            for field, (ds_path, ds_field) in wanted.items():
                if field == 'seg_prefix' and 'Panoptic' not in str(metric.get('type', '')):
                    continue
                path = metric.get(field, None)
                if not path or not ds_path or _same_path(path, ds_path):
                    continue
                mkey, dkey = f'{ev_key}{suffix}.{field}', f'{loader_key}.dataset.{ds_field}'
                new = None
                if _base(path) == _base(ds_path):
                    if mkey in explicit:
                        raise EvaluatorDatasetMismatchError(
                            f'{mkey} is {path!r} but {loader_key}.dataset reads {ds_path!r} '
                            f'({dkey} under data_root {root!r}): the metric would score the '
                            'predictions against the ground truth of other files. Give both '
                            f'the same path, or leave {mkey} out to derive it from the dataset.')
                    new = ds_path
                elif mkey not in explicit and root:
                    orig = from_file()
                    orig_root, _ = _dataset_paths(orig, loader_key)
                    orig_metric = dict(_metric_list(orig.get(ev_key, None))).get(suffix, {}) \
                        if orig is not None else {}
                    rel = _under(orig_metric.get(field), orig_root)
                    if (rel is not None and _same_path(orig_metric.get(field), path)
                            and not _same_path(orig_root, root)):
                        new = osp.join(str(root), rel)
                if new is None:
                    continue
                metric[field] = new.rstrip('/') + '/' if field == 'seg_prefix' else new
                logger(f'[clusterseg] {mkey} {path!r} does not belong to the data {loader_key}.dataset '
                       f'reads ({dkey} {ds_path!r}, data_root {root!r}); the metric now reads '
                       f'{metric[field]!r}')


# ------------------------------------------------------------------ argument checks
# what a value of each Python kind is accepted by (documented / annotated kinds)
_ACCEPTED_BY = {'bool': {'bool', 'number'}, 'number': {'number', 'bool', 'tensor'},
                'str': {'str'}, 'seq': {'seq', 'tensor'}, 'dict': {'dict'}}
_DOC_KINDS = {
    'int': {'number'}, 'integer': {'number'}, 'float': {'number'}, 'number': {'number'},
    'double': {'number'}, 'bool': {'bool'}, 'boolean': {'bool'}, 'str': {'str'},
    'string': {'str'}, 'list': {'seq'}, 'tuple': {'seq'}, 'sequence': {'seq'},
    'iterable': {'seq'}, 'dict': {'dict'}, 'configdict': {'dict'}, 'config': {'dict'},
    'configtype': {'dict'}, 'mapping': {'dict'}, 'optconfigtype': {'dict', 'none'},
    'multiconfig': {'dict', 'seq'}, 'optmulticonfig': {'dict', 'seq', 'none'},
    'none': {'none'}, 'nonetype': {'none'}, 'optional': {'none'}, 'tensor': {'tensor'},
}
_DOC_ARG = re.compile(r'^\s*\**(\w+)\s*\(([^()]*)\)\s*:', re.M)


def _value_kind(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, (int, float)):
        return 'number'
    if isinstance(v, str):
        return 'str'
    if isinstance(v, (list, tuple)):
        return 'seq'
    if isinstance(v, dict):
        return 'dict'
    return None


def _doc_kinds(type_str):
    """Kinds a documented type (``list[int] | None``, ``float, Tensor, optional``) accepts, or
    ``None`` when any part of it is not understood (then nothing is checked)."""
    s = re.sub(r':\w+:`~?([^`]+)`', r'\1', type_str).replace('`', '')
    kinds = set()
    for tok in re.split(r'\s*(?:\||,|\bor\b)\s*', s):
        tok = tok.strip().strip('[]() ')
        if not tok:
            continue
        base = re.split(r'[\[(]', tok)[0].strip().lower().split('.')[-1]
        if base not in _DOC_KINDS:
            return None
        kinds |= _DOC_KINDS[base]
    return kinds or None


def _annotation_kinds(ann):
    import torch
    if ann is inspect.Parameter.empty or isinstance(ann, str):
        return None
    origin = typing.get_origin(ann)
    if origin is typing.Union:
        kinds = set()
        for a in typing.get_args(ann):
            k = _annotation_kinds(a)
            if k is None:
                return None
            kinds |= k
        return kinds
    ann = origin or ann
    from collections.abc import Iterable, Mapping, Sequence
    table = ((bool, 'bool'), (int, 'number'), (float, 'number'), (str, 'str'),
             (type(None), 'none'), (torch.Tensor, 'tensor'))
    for t, kind in table:
        if ann is t:
            return {kind}
    if inspect.isclass(ann):
        if issubclass(ann, (list, tuple)) or ann in (Sequence, Iterable):
            return {'seq'}
        if issubclass(ann, dict) or ann is Mapping:
            return {'dict'}
    return None


def _own_init(klass):
    init = klass.__dict__.get('__init__')
    return None if init is None or klass is object else init


def _forwards_kwargs(init):
    try:
        src = inspect.getsource(init)
    except (OSError, TypeError):
        return False
    return re.search(r'super\([^)]*\)\.__init__\((?s:[^)]*?)\*\*kwargs', src) is not None


# kwargs of these go somewhere that takes none besides what is passed explicitly:
# CheckpointHook forwards its **kwargs to Runner.save_checkpoint, whose every argument it
# already passes, so an extra (misspelt) key fails at the first save, after a whole epoch.
_KWARGS_TAKE_NOTHING = {'CheckpointHook'}


def _arguments(cls):
    """``(params, docs, sources, closed)`` of ``cls``: its constructor's named parameters (through
    ``**kwargs`` forwarded to ``super().__init__``), their documented types, the constructor
    sources, and whether other keyword arguments are refused."""
    params, docs, sources = {}, {}, []
    target = cls.__mro__ if inspect.isclass(cls) else [cls]
    closed = True
    for klass in target:
        init = _own_init(klass) if inspect.isclass(cls) else klass
        if inspect.isclass(cls) and klass is not object:
            for doc in (klass.__doc__, getattr(klass.__dict__.get('__init__'), '__doc__', None)):
                for name, t in _DOC_ARG.findall(doc or ''):
                    docs.setdefault(name, t)
        if init is None:
            if klass is object:
                break
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            closed = False
            break
        try:
            sources.append(inspect.getsource(init))
        except (TypeError, OSError):
            pass
        for name, p in sig.parameters.items():
            if name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                params.setdefault(name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
        if getattr(klass, '__name__', '') in _KWARGS_TAKE_NOTHING:
            break
        if not inspect.isclass(cls) or not _forwards_kwargs(init):
            closed = False
            break
    return params, docs, '\n'.join(sources), closed


def _resolve(registry, type_, scope):
    if inspect.isclass(type_) or inspect.isfunction(type_):
        return type_
    if not isinstance(type_, str):
        return None
    try:
        with registry.switch_scope_and_registry(scope) as reg:
            return reg.get(type_)
    except (KeyError, ImportError):
        return None


def _check_value(key, name, value, cls, param, docs, source):
    kind = _value_kind(value)
    if kind is None:
        return
    # the module checks this argument's type itself (e.g. `int or list` normalised in __init__)
    if re.search(rf'isinstance\(\s*{re.escape(name)}\s*,', source):
        return
    type_str = docs.get(name)
    expected = _doc_kinds(type_str) if type_str else None
    if expected is None:
        expected = _annotation_kinds(param.annotation) if param is not None else None
        if expected is not None:
            type_str = inspect.formatannotation(param.annotation)
    if expected is None and param is not None:
        d = param.default
        if isinstance(d, bool):
            expected, type_str = {'bool'}, 'bool'
        elif isinstance(d, (int, float)):
            expected, type_str = {'number'}, type(d).__name__
    if expected is None:
        return
    # only what cannot be meant: text for a number / flag / sequence, a number for a sequence
    text_for_value = (kind == 'str' and 'str' not in expected
                      and bool(expected & {'number', 'bool', 'seq', 'tensor'}))
    number_for_seq = (kind in ('number', 'bool') and not expected & _ACCEPTED_BY[kind]
                      and 'seq' in expected)
    if not (text_for_value or number_for_seq):
        return
    where = f'{getattr(cls, "__module__", "")}.{getattr(cls, "__qualname__", cls)}'.lstrip('.')
    raise ConfigValueError(
        f'config key {key} = {value!r} ({type(value).__name__}): {where} expects {type_str} '
        f'for {name!r}. Fix the value in the config or in --cfg-options {key}=...')


def check_arguments(node, key, cls, check_unknown=True, provided=(), extra_ok=()):
    """Check the keys of one config dict against the class that will receive them.

    Args:
        node (dict): the config dict (``type`` and the arguments).
        key (str): its dotted config key, for the messages.
        cls (type | callable): what ``node`` builds.
        check_unknown (bool): refuse keys the constructor does not take.
        provided (tuple[str]): arguments the runner passes itself (not checked).
        extra_ok (tuple[str]): keys consumed before the constructor (``priority`` of hooks).

    Raises:
        ConfigKeyError: an unknown key (with the closest valid one).
        ConfigValueError: a value of a type the argument does not take.
    """
    params, docs, source, closed = _arguments(cls)
    name = getattr(cls, '__name__', str(cls))
    for k, v in node.items():
        if k == 'type' or k in extra_ok or k in provided:
            continue
        if k not in params:
            if check_unknown and closed:
                valid = sorted(p for p in params if p not in provided)
                close = difflib.get_close_matches(k, valid, n=1, cutoff=0.6)
                msg = f'unknown config key {key}.{k}: {name} takes no argument {k!r}.'
                if close:
                    msg += f' Did you mean {close[0]!r} ({key}.{close[0]})?'
                msg += f' Valid keys: {", ".join(valid) or "none"}.'
                raise ConfigKeyError(msg)
            continue
        _check_value(f'{key}.{k}', k, v, cls, params[k], docs, source)


def _check_model(node, key, scope, registry):
    if isinstance(node, dict):
        cls = _resolve(registry, node.get('type'), scope) if 'type' in node else None
        if cls is not None:
            check_arguments(node, key, cls, check_unknown=False)
        for k, v in node.items():
            if k not in ('type', 'init_cfg'):
                _check_model(v, f'{key}.{k}', scope, registry)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _check_model(v, f'{key}.{i}', scope, registry)


def _check_hooks(cfg, scope):
    from mmengine.registry import HOOKS
    hooks = [(f'default_hooks.{k}', h) for k, h in (cfg.get('default_hooks', None) or {}).items()]
    hooks += [(f'custom_hooks.{i}', h) for i, h in enumerate(cfg.get('custom_hooks', None) or [])]
    for key, hook in hooks:
        if isinstance(hook, dict):
            cls = _resolve(HOOKS, hook.get('type'), scope)
            if cls is not None:
                check_arguments(hook, key, cls, extra_ok=('priority', ))


def _loop_cls(loop, mode):
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
    if 'type' not in loop and mode == 'train':
        return EpochBasedTrainLoop if loop.get('by_epoch', True) else IterBasedTrainLoop
    return loop.get('type')


def _check_training(cfg, scope):
    from mmengine.registry import (LOOPS, OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS)
    for key, mode in (('train_cfg', 'train'), ('val_cfg', 'val'), ('test_cfg', 'test')):
        loop = cfg.get(key, None)
        if isinstance(loop, dict):
            cls = _resolve(LOOPS, _loop_cls(loop, mode), scope)
            if cls is not None:
                check_arguments(loop, key, cls, provided=('runner', 'dataloader', 'evaluator'),
                                extra_ok=('by_epoch', ))
    wrapper = cfg.get('optim_wrapper', None)
    if isinstance(wrapper, dict) and 'optimizer' in wrapper:
        cls = _resolve(OPTIM_WRAPPERS, wrapper.get('type', 'OptimWrapper'), scope)
        if cls is not None and 'constructor' not in wrapper:
            check_arguments(wrapper, 'optim_wrapper', cls,
                            extra_ok=('paramwise_cfg', 'constructor', 'optimizer'))
        opt = wrapper['optimizer']
        if isinstance(opt, dict):
            cls = _resolve(OPTIMIZERS, opt.get('type'), scope)
            if cls is not None:
                check_arguments(opt, 'optim_wrapper.optimizer', cls, provided=('params', ))
    scheds = cfg.get('param_scheduler', None)
    if isinstance(scheds, dict):
        scheds = [scheds]
    for i, s in enumerate(scheds or []):
        if isinstance(s, dict):
            cls = _resolve(PARAM_SCHEDULERS, s.get('type'), scope)
            if cls is not None:
                check_arguments(s, f'param_scheduler.{i}', cls,
                                provided=('optimizer', 'param_name', 'epoch_length'),
                                extra_ok=('convert_to_iter_based', ))
            _check_schedule_range(cfg, s, f'param_scheduler.{i}')


def _check_schedule_range(cfg, sched, key):
    """mmengine refuses ``end <= begin`` when it builds the scheduler (``end should be larger
    than begin``) without saying which one; a missing ``end`` is the run's length, so a shortened
    run (``train_cfg.max_epochs=1``) can empty a scheduler that starts later."""
    loop = cfg.get('train_cfg', None) or {}
    begin = sched.get('begin', 0)
    end, where = sched.get('end', None), f'{key}.end'
    if end is None:
        by_epoch = sched.get('by_epoch', True)
        loop_by_epoch = 'max_epochs' in loop and 'max_iters' not in loop
        if by_epoch == loop_by_epoch:
            length = 'max_epochs' if by_epoch else 'max_iters'
            end, where = loop.get(length), f'train_cfg.{length} (the default end of {key})'
    if (isinstance(begin, (int, float)) and isinstance(end, (int, float))
            and not isinstance(end, bool) and end <= begin):
        raise ConfigValueError(
            f'{key} ({sched.get("type")}) would run from step {begin} to {end} ({where}): its end '
            f'must be larger than its begin ({key}.begin). Shorten or drop the scheduler for a '
            'run this short, or lengthen the run.')


def _check_loaders_and_metrics(cfg, scope, loaders):
    from mmengine.registry import METRICS
    for loader_key in loaders:
        loader = cfg.get(loader_key, None)
        if not isinstance(loader, dict):
            continue
        for k, kinds in (('batch_size', 'int'), ('num_workers', 'int'),
                         ('persistent_workers', 'bool'), ('drop_last', 'bool')):
            v = loader.get(k, None)
            if isinstance(v, str) or isinstance(v, (list, tuple, dict)):
                raise ConfigValueError(f'config key {loader_key}.{k} = {v!r} '
                                       f'({type(v).__name__}): expected {kinds}')
    for ev_key in ('val_evaluator', 'test_evaluator'):
        for suffix, metric in _metric_list(cfg.get(ev_key, None)):
            cls = _resolve(METRICS, metric.get('type'), scope)
            if cls is not None:
                check_arguments(metric, f'{ev_key}{suffix}', cls)


# ------------------------------------------------------------------ num_classes
def _dataset_classes(ds_cfg, scope):
    """``(classes, thing_classes, stuff_classes)`` a dataset cfg will have, or Nones."""
    from mmengine.registry import DATASETS
    ds = _unwrap(ds_cfg)
    if not isinstance(ds, dict):
        return None, None, None
    meta = ds.get('metainfo', None)
    meta = dict(meta) if isinstance(meta, dict) else {}
    cls = _resolve(DATASETS, ds.get('type'), scope)
    defaults = dict(getattr(cls, 'METAINFO', {}) or {}) if cls is not None else {}
    if 'classes' in meta:  # a metainfo class list replaces the dataset's (and its splits)
        defaults.pop('thing_classes', None), defaults.pop('stuff_classes', None)
    out = []
    for k in ('classes', 'thing_classes', 'stuff_classes'):
        v = meta.get(k, defaults.get(k))
        out.append(tuple(v) if isinstance(v, (list, tuple)) else None)
    return tuple(out)


_SKIP_FOR_CLASSES = ('rpn_head', 'semantic_head', 'init_cfg', 'train_cfg', 'test_cfg',
                     'data_preprocessor', 'backbone', 'neck')


def _class_counts(node, key):
    """``(key, field, value)`` of every int ``num_classes`` / ``num_things_classes`` /
    ``num_stuff_classes`` in a model cfg (class-agnostic parts such as the RPN skipped)."""
    if isinstance(node, dict):
        for field in ('num_classes', 'num_things_classes', 'num_stuff_classes'):
            v = node.get(field)
            if isinstance(v, int) and not isinstance(v, bool):
                yield f'{key}.{field}', field, v
        for k, v in node.items():
            if k not in _SKIP_FOR_CLASSES:
                yield from _class_counts(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _class_counts(v, f'{key}.{i}')


def check_num_classes(cfg, loader_key):
    """The heads' ``num_classes`` (``num_things_classes`` / ``num_stuff_classes`` of panoptic
    heads) must equal the number of classes of ``loader_key``'s dataset.

    A detection head with one class fewer otherwise trains the last class as background without a
    word, and a segmentation head with one class fewer fails deep in the loss.

    Raises:
        NumClassesError: naming the model key, both numbers and the dataset's classes.
    """
    loader = cfg.get(loader_key, None)
    if not isinstance(loader, dict) or not isinstance(cfg.get('model', None), dict):
        return
    scope = cfg.get('default_scope', None)
    classes, things, stuff = _dataset_classes(loader.get('dataset'), scope)
    if classes is None:
        return
    counts = {'num_classes': classes, 'num_things_classes': things, 'num_stuff_classes': stuff}
    ds_type = _unwrap(loader.get('dataset')).get('type')
    model = cfg.model
    if scope == 'mmseg':
        heads = [('model.decode_head', model.get('decode_head')),
                 ('model.auxiliary_head', model.get('auxiliary_head'))]
    elif scope == 'mmpretrain':
        heads = [('model.head', model.get('head'))]
    else:
        heads = [('model', model)]
    for head_key, head in heads:
        for key, field, n in _class_counts(head, head_key):
            want = counts[field]
            if want is None or n == len(want):
                continue
            if scope == 'mmseg' and field == 'num_classes' and n == 1 and len(want) == 2:
                continue  # mmseg's binary segmentation: one sigmoid output for two classes
            names = ', '.join(want[:10]) + (' ...' if len(want) > 10 else '')
            what = {'num_classes': 'classes', 'num_things_classes': 'thing classes',
                    'num_stuff_classes': 'stuff classes'}[field]
            raise NumClassesError(
                f'{key} = {n} but {loader_key}.dataset ({ds_type}) has {len(want)} {what} '
                f'({names}): the head must have one output per class of its dataset. Set '
                f'{key}={len(want)}, or change the dataset\'s metainfo.classes.')


# ------------------------------------------------------------------ entry points
def validate_run(cfg, mode='train'):
    """All static checks of a run's config, before the runner is built.

    Args:
        cfg (Config): the prepared config.
        mode (str): ``'train'`` (loops, optimizer, schedulers, the train/val data) or
            ``'test'``.
    """
    scope = cfg.get('default_scope', None)
    from mmengine.registry import MODELS
    if isinstance(cfg.get('model', None), dict):
        _check_model(cfg.model, 'model', scope, MODELS)
    _check_hooks(cfg, scope)
    if mode == 'train':
        _check_training(cfg, scope)
        loaders = ('train_dataloader', 'val_dataloader')
    else:
        loaders = ('test_dataloader', )
    _check_loaders_and_metrics(cfg, scope, loaders)
    check_num_classes(cfg, loaders[0])
