"""Explained errors and input checks: what stops a run names the thing at fault.

* error translation: mmengine's ``X is not in the scope::name registry`` and
  ``X.__init__() got an unexpected keyword argument 'k'`` become :class:`UnknownTypeError` /
  :class:`ConfigKeyError` naming the registries searched, the module, its file and the closest
  valid key (:func:`explained_errors`, used once, by :func:`clusterseg.engine.launch.run`);
* input checks: a missing ``data_root`` (:func:`check_data_roots`), the checking transforms and
  :class:`~clusterseg.engine.hooks.DatasetCheckHook` put into a config
  (:func:`add_input_checks`, undone by :func:`strip_input_checks`), and
  :class:`EmptyDatasetError`.
"""
import contextlib
import importlib
import os.path as osp
import re

from mmengine.config import ConfigDict

# the downstream libraries whose configs the tools run (the config's default_scope)
SCOPES = ('mmseg', 'mmdet', 'mmpretrain')

# dataset type -> --task of tools/misc/make_synthetic_data.py that writes that format
_SYNTHETIC_TASK = {
    'ADE20KDataset': 'seg',
    'CocoDataset': 'det',
    'CocoPanopticDataset': 'panoptic',
    'ImageNet': 'cls',
    'CustomDataset': 'cls',
}


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


class EmptyDatasetError(RuntimeError):
    """A dataset the run is about to use holds no samples."""


def describe_dataset(ds):
    """``Type(data_root=..., ann_file=..., data_prefix=...)`` for a (possibly wrapped) dataset."""
    inner = ds
    while hasattr(inner, 'dataset') and not hasattr(inner, 'data_root'):
        inner = inner.dataset
    parts = [f'{k}={getattr(inner, k)!r}' for k in ('data_root', 'ann_file', 'data_prefix')
             if getattr(inner, k, None)]
    return f'{type(inner).__name__}({", ".join(parts)})'


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


@contextlib.contextmanager
def explained_errors():
    """Re-raise the errors mmengine gives for a config that names an unknown type or an unknown
    module argument as :class:`UnknownTypeError` / :class:`ConfigKeyError` (chained to the
    original); every other error passes through unchanged."""
    try:
        yield
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
