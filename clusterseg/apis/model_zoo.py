"""Models by name, as mmpretrain users know it: :func:`list_models` and :func:`get_model` over
``model-index.yml`` and the ``configs/*/metafile.yml`` it imports.

A name is the ``Name:`` of a metafile entry (``pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512``);
its ``Config:`` builds the model and its ``Weights:`` (where the authors published some) is what
``pretrained=True`` loads. Checkpoints are read through clusterseg's safe loading (the
``weights_only`` allowlist, every mmengine scheme) and may be in our layout or in an official
one, converted on the fly:

* raw timm-style classifiers (the released PaCa-ViT and ClusTR ImageNet weights, ``head.*`` and
  backbone keys without a prefix): :func:`clusterseg.models.converters.timm_classifier_to_clusterseg`;
* kMaX-DeepLab detectron2 checkpoints (``sem_seg_head.*``, ``.pth`` or TF-converted ``.pkl``):
  :func:`clusterseg.models.converters.kmax_d2_to_clusterseg`, under ``panoptic_head`` (mmdet) or
  ``decode_head`` (mmseg);
* OpenMMLab checkpoints (``backbone.* / neck.* / decode_head.* ...``): as they are.

The load is strict: missing, unexpected or mis-shaped keys raise
:class:`clusterseg.utils.CheckpointMismatchError` naming the file. Pretrained ``init_cfg``
entries of the config (the ImageNet backbone weights a training run starts from) are dropped
before building, so building never downloads.

:func:`clusterseg.engine.patches.install` (run by :func:`get_model`, the other
``clusterseg.apis`` entry points and the tools) lets the stock inferencers take a name:
``MMSegInferencer(NAME)``, ``DetInferencer(NAME)`` and mmpretrain's inferencers resolve it here
(:func:`resolve_name`) and receive the model :func:`get_model` builds.
"""
import contextlib
import contextvars
import copy
import difflib
import fnmatch
import os.path as osp
import warnings
from collections import OrderedDict
from typing import List, Optional, Sequence, Union

import yaml

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_INDEX = osp.join(REPO_ROOT, 'model-index.yml')

_INDEX: Optional['OrderedDict[str, ModelInfo]'] = None


class UnknownModelError(ValueError):
    """A model name that no metafile lists."""


class WeightsDownloadError(ConnectionError):
    """The published weights of a model could not be downloaded (offline, or the server refused)."""


class ModelInfo:
    """One metafile entry.

    Attributes:
        name (str): the ``Name:``.
        config (str): absolute path of the ``Config:``.
        weights (str | None): the ``Weights:`` URL, None where none was published.
        collection (str): ``In Collection:`` (the method).
        metafile (str): the metafile listing the model (relative to the repository).
        tasks (list[str]): the ``Results`` tasks (``'Semantic Segmentation'`` ...), empty when
            no result was published.
        metadata (dict): the entry's ``Metadata:`` (parameters, FLOPs, training data).
        results (list[dict]): the entry's ``Results:``.
    """

    def __init__(self, entry: dict, metafile: str):
        self.name = entry['Name']
        self.config = osp.join(REPO_ROOT, entry['Config'])
        weights = entry.get('Weights')
        self.weights = weights[0] if isinstance(weights, list) else weights
        self.collection = entry.get('In Collection')
        self.metafile = metafile
        self.results = list(entry.get('Results') or [])
        self.tasks = [r['Task'] for r in self.results]
        self.metadata = dict(entry.get('Metadata') or {})

    def __repr__(self):
        return f'ModelInfo({self.name!r}, config={osp.relpath(self.config, REPO_ROOT)!r})'


def model_index() -> 'OrderedDict[str, ModelInfo]':
    """Every model of ``model-index.yml``, by lower-cased name (read once)."""
    global _INDEX
    if _INDEX is not None:
        return _INDEX
    if not osp.isfile(MODEL_INDEX):
        raise FileNotFoundError(
            f'{MODEL_INDEX} not found: models by name need a clusterseg checkout (configs/ and '
            'model-index.yml are not part of an installed wheel; install with `pip install -e .`)')
    with open(MODEL_INDEX) as f:
        imports = yaml.safe_load(f)['Import']
    index = OrderedDict()
    for metafile in imports:
        with open(osp.join(REPO_ROOT, metafile)) as f:
            for entry in yaml.safe_load(f).get('Models') or []:
                info = ModelInfo(entry, metafile)
                key = info.name.lower()
                if key in index:
                    raise ValueError(f'model name {info.name} is listed twice: in '
                                     f'{index[key].metafile} and {metafile}')
                index[key] = info
    _INDEX = index
    return index


def list_models(pattern: Optional[str] = None, exclude_patterns: Optional[Sequence[str]] = None,
                task: Optional[str] = None) -> List[str]:
    """The names of the models in ``model-index.yml``, sorted (mmpretrain's ``list_models``).

    Args:
        pattern (str | None): a wildcard pattern matched from the start of the name, with any
            ending (``'pacahead*tiny'``, ``'*ade20k'``); case-insensitive.
        exclude_patterns (list[str] | None): patterns (same rules) of names to leave out.
        task (str | None): keep the models with a published result for this task (a metafile
            ``Results`` task: ``'Semantic Segmentation'``, ``'Object Detection'``,
            ``'Image Classification'``, ``'Panoptic Segmentation'``...); ``'null'``: those
            without any.

    Examples:
        >>> from clusterseg.apis import list_models
        >>> list_models('pacahead_pacavit-tiny')
        ['pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512']
    """
    index = model_index()
    names = list(index)
    if pattern is not None:
        names = fnmatch.filter(names, pattern.lower() + '*')
    for exclude in exclude_patterns or []:
        dropped = set(fnmatch.filter(names, exclude.lower() + '*'))
        names = [n for n in names if n not in dropped]
    if task is not None:
        if task == 'null':
            names = [n for n in names if not index[n].tasks]
        else:
            names = [n for n in names if task.lower() in (t.lower() for t in index[n].tasks)]
    return sorted(index[n].name for n in names)


def get_model_info(name: str) -> ModelInfo:
    """The metafile entry of ``name``; an unknown name raises :class:`UnknownModelError` listing
    the closest names."""
    index = model_index()
    key = name.lower()
    if key in index:
        return index[key]
    names = list(index)
    close = [n for n in names if key and key in n][:5]
    close += [n for n in difflib.get_close_matches(key, names, n=5, cutoff=0.5) if n not in close]
    hint = (' Close matches: ' + ', '.join(index[n].name for n in close[:6]) + '.') if close else ''
    raise UnknownModelError(f'unknown model {name!r}: no metafile in {MODEL_INDEX} lists it.'
                            f'{hint} clusterseg.apis.list_models() lists every name.')


def is_model_name(model) -> bool:
    """Whether ``model`` is the name of a model in ``model-index.yml`` (not a path); False
    without a model index (an installed wheel), so other names go on to their library."""
    if not isinstance(model, str) or model.endswith('.py') or osp.exists(model):
        return False
    try:
        return model.lower() in model_index()
    except FileNotFoundError:
        return False


def model_info_of_config(config_path: str) -> Optional[ModelInfo]:
    """The metafile entry whose ``Config:`` is ``config_path``, if any."""
    path = osp.realpath(config_path)
    for info in model_index().values():
        if osp.realpath(info.config) == path:
            return info
    return None


def drop_pretrained_init(node) -> int:
    """Remove ``init_cfg=dict(type='Pretrained', ...)`` and ``pretrained=...`` entries from a model
    config in place (so building and ``init_weights()`` never download); returns how many."""
    n = 0
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            node['init_cfg'] = None
            n += 1
        elif isinstance(init_cfg, list):
            kept = [c for c in init_cfg if not (isinstance(c, dict) and c.get('type') == 'Pretrained')]
            n += len(init_cfg) - len(kept)
            node['init_cfg'] = kept or None
        if node.get('pretrained') is not None:
            n += 1
        node.pop('pretrained', None)
        for value in node.values():
            n += drop_pretrained_init(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            n += drop_pretrained_init(value)
    return n


_INIT_FUNCTIONS = ('uniform_', 'normal_', 'trunc_normal_', 'constant_', 'ones_', 'zeros_',
                   'eye_', 'dirac_', 'xavier_uniform_', 'xavier_normal_', 'kaiming_uniform_',
                   'kaiming_normal_', 'orthogonal_', 'sparse_')


@contextlib.contextmanager
def skip_random_init():
    """Build modules without drawing their random initial values (``torch.nn.init`` functions
    are no-ops inside): for a model whose every tensor a strict load overwrites next. Buffers that
    modules compute (position indices, ...) are computed as usual."""
    import torch.nn.init as init
    originals = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}

    def keep(tensor, *args, **kwargs):
        return tensor

    try:
        for name in originals:
            setattr(init, name, keep)
        yield
    finally:
        for name, fn in originals.items():
            setattr(init, name, fn)


def _load_config(model, overrides=None):
    """(Config, ModelInfo | None) of a name, a config path or a Config."""
    from mmengine.config import Config
    info = None
    if isinstance(model, Config):
        cfg = copy.deepcopy(model)
    elif isinstance(model, str) and (model.endswith('.py') or osp.isfile(model)):
        cfg = Config.fromfile(model)
        info = model_info_of_config(model)
    elif isinstance(model, str):
        info = get_model_info(model)
        cfg = Config.fromfile(info.config)
    else:
        raise TypeError(f'model must be a model name, a config path or a Config, got {type(model).__name__}')
    if overrides:
        cfg.merge_from_dict({'model': overrides})
    if cfg.get('data_preprocessor') is not None:  # mmpretrain keeps it beside the model
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    drop_pretrained_init(cfg.model)
    return cfg, info


def _registry(scope, kind='MODELS'):
    import importlib
    return getattr(importlib.import_module(f'{scope}.registry'), kind)


def _dataset_meta_of_config(cfg) -> dict:
    """The test dataset's metainfo (classes, palette, ...), from its class and the config's
    ``metainfo`` override; no file is read."""
    from mmengine.registry import DefaultScope
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    if not isinstance(dataset, dict) or 'type' not in dataset:
        return {}
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        try:
            built = _registry(cfg.default_scope, 'DATASETS').build(
                dict(copy.deepcopy(dataset), lazy_init=True, pipeline=[]))
            return dict(built.metainfo)
        except Exception:  # a dataset that insists on its files: its class's METAINFO
            cls = _registry(cfg.default_scope, 'DATASETS').get(dataset['type'])
            meta = dict(getattr(cls, 'METAINFO', {}) or {})
            meta.update(dataset.get('metainfo') or {})
            return meta


def _dataset_meta_of_checkpoint(checkpoint) -> dict:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return {}
    if isinstance(meta.get('dataset_meta'), dict):  # OpenMMLab 2.x
        return dict(meta['dataset_meta'])
    if meta.get('CLASSES'):  # OpenMMLab 1.0-era checkpoints (mmseg 0.x, mmdet 2.x)
        out = {'classes': tuple(meta['CLASSES'])}
        if meta.get('PALETTE') is not None:
            out['palette'] = meta['PALETTE']
        return out
    return {}


_REMOTE = ('http://', 'https://')


def read_checkpoint(source: str, model_name: Optional[str] = None):
    """Read a checkpoint through the safe loading: a local file (``.pkl``: the allowlisted
    unpickler, for TF-converted kMaX weights), a URL (downloaded into torch hub's cache) or any
    mmengine scheme. An unreachable URL raises :class:`WeightsDownloadError`."""
    import socket
    import urllib.error

    from mmengine.runner.checkpoint import CheckpointLoader

    from clusterseg.utils.checkpoint import safe_pickle_load
    if source.endswith('.pkl') and osp.isfile(source):
        return safe_pickle_load(source)
    if not source.startswith(_REMOTE):
        return CheckpointLoader.load_checkpoint(source, map_location='cpu', logger='silent')
    try:
        return CheckpointLoader.load_checkpoint(source, map_location='cpu', logger='silent')
    except urllib.error.HTTPError as e:
        why = f'the server answered HTTP {e.code} ({e.reason})'
        err = e
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror) as e:
        why = f'it could not be reached ({getattr(e, "reason", e)}); is this machine offline?'
        err = e
    import torch.hub
    of = f'the published weights of {model_name}' if model_name else 'the checkpoint'
    raise WeightsDownloadError(
        f'could not download {of} from {source}: {why}. Download the file on a machine with '
        f'network access and pass its path (get_model(..., pretrained=PATH)), or put it at '
        f'{osp.join(torch.hub.get_dir(), "checkpoints", osp.basename(source))} (the download '
        'cache).') from err


def convert_to_clusterseg(checkpoint, scope: str, name: str = 'the checkpoint'):
    """The state dict of ``checkpoint`` in clusterseg's keys, and the layout it was found in
    (``'clusterseg'``, ``'timm'`` or ``'kmax-detectron2'``); see the module docstring."""
    from clusterseg.models.converters import kmax_d2_to_clusterseg, timm_classifier_to_clusterseg
    from clusterseg.utils.state_dict import StateDictMismatchError, unwrap_state_dict
    state = unwrap_state_dict(checkpoint)
    keys = list(state)
    if any(k.startswith('sem_seg_head.') for k in keys):
        head_prefix = 'decode_head' if scope == 'mmseg' else 'panoptic_head'
        state, unknown = kmax_d2_to_clusterseg(state, head_prefix=head_prefix)
        if unknown:
            shown = '\n    '.join(unknown[:10])
            raise StateDictMismatchError(
                f'{name}: a kMaX-DeepLab detectron2 checkpoint, but {len(unknown)} of its keys have '
                f'no clusterseg counterpart:\n    {shown}')
        return state, 'kmax-detectron2'
    if any(k.startswith(('backbone.', 'decode_head.', 'neck.', 'roi_head.', 'rpn_head.',
                         'panoptic_head.', 'auxiliary_head.')) for k in keys):
        return state, 'clusterseg'
    return timm_classifier_to_clusterseg(state), 'timm'


def load_weights(model, source: str, model_name: Optional[str] = None,
                 allow_partial_load: Optional[bool] = None) -> dict:
    """Load the checkpoint ``source`` into ``model`` (built from ``model.cfg``), converting an
    official layout on the fly; strict unless a partial load is allowed (``allow_partial_load``,
    else ``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``). Returns the checkpoint's dataset meta ({} if none).
    """
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    from clusterseg.utils.state_dict import CheckpointMismatchError, load_policy
    checkpoint = read_checkpoint(source, model_name)
    scope = model.cfg.default_scope
    state, layout = convert_to_clusterseg(checkpoint, scope, name=source)
    if layout == 'timm' and scope != 'mmpretrain':
        raise CheckpointMismatchError(
            f'checkpoint {source} is an ImageNet classifier in the official timm layout (backbone '
            f'keys without a prefix, a head.* classifier): it has no weights for the '
            f'{type(model).__name__} around the backbone. Load it as the backbone\'s init_cfg '
            "(dict(type='Pretrained', checkpoint=...)) and train, or pass a checkpoint of the "
            'whole model.', source)
    label = source if layout == 'clusterseg' else f'{source} (converted from the {layout} layout)'
    with load_policy('eval', name=label, allow_partial=allow_partial_load):
        _load_checkpoint_to_model(model, {'state_dict': state})
    return _dataset_meta_of_checkpoint(checkpoint)


def get_model(model: Union[str, 'Config'], pretrained: Union[None, bool, str] = None,  # noqa: F821
              device: Union[str, 'torch.device'] = 'cpu',  # noqa: F821
              allow_partial_load: Optional[bool] = None, **kwargs):
    """A ready model by name (or config path / Config), optionally with weights.

    Args:
        model (str | Config): a model name of ``model-index.yml`` (see :func:`list_models`), a
            config path or a Config.
        pretrained (None | bool | str): None / False: no weights (random initial values).
            True: the model's published weights (the metafile's ``Weights:``; downloaded once into
            torch hub's cache). A path or URL: that checkpoint, in our layout or an official one
            (converted on the fly).
        device (str | torch.device): where the model goes (SyncBN becomes BN on the CPU).
        allow_partial_load (bool | None): accept a checkpoint that does not fit (what does not
            load keeps its initial values); None: ``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``. Otherwise
            such a checkpoint raises :class:`clusterseg.utils.CheckpointMismatchError`.
        **kwargs: overrides of the model config (``backbone=dict(out_indices=(3, ))``).

    Returns:
        mmengine.model.BaseModel: in eval mode on ``device``, with ``model.cfg`` (the config it
        was built from, pretrained init entries dropped) and ``model.dataset_meta`` (the
        checkpoint's, else the config's test dataset's); mmpretrain's ``_config`` /
        ``_dataset_meta`` too, so :func:`clusterseg.apis.inference_model` and the library APIs
        (``mmseg.apis.inference_model``, ``mmdet.apis.inference_detector``, mmpretrain's
        inferencers) take it as it is. Where no default scope is set yet, the model's is set (as
        mmseg's ``init_model`` does; the library APIs build their pipelines under it).

    Raises:
        UnknownModelError: ``model`` is no known name (the message lists close ones).
        ValueError: ``pretrained=True`` for a model without published weights.
        WeightsDownloadError: the published weights could not be downloaded (offline).
        CheckpointMismatchError: the checkpoint does not fit the model.

    Examples:
        >>> from clusterseg.apis import get_model
        >>> model = get_model('pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512', pretrained=True)
    """
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope, init_default_scope

    import clusterseg.models  # noqa: F401  (registers the modules)
    from clusterseg.engine.patches import install
    install()  # safe checkpoint loading (every scheme), strict loads; the inferencers take names
    cfg, info = _load_config(model, kwargs)
    shown = info.name if info is not None else (model if isinstance(model, str) else 'the config')
    if pretrained is True:
        if info is None or not info.weights:
            where = f' (no Weights: in {info.metafile})' if info is not None else \
                ' (it is not the Config: of any metafile entry)'
            raise ValueError(f'model {shown} has no published weights{where}. Train it '
                             '(tools/train.py CONFIG) and pass pretrained=PATH to the checkpoint.')
        pretrained = info.weights
    elif pretrained is False:
        pretrained = None
    elif pretrained is not None and not isinstance(pretrained, str):
        raise TypeError(f'pretrained must be None, a bool or a path/URL, got {type(pretrained).__name__}')
    scope = cfg.get('default_scope')
    if scope not in ('mmseg', 'mmdet', 'mmpretrain'):
        raise ValueError(f'{shown}: default_scope={scope!r}, expected mmseg, mmdet or mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        # weights to load: the random initial values would be overwritten (strict load)
        building = skip_random_init() if pretrained else contextlib.nullcontext()
        with building:
            net = _registry(scope).build(cfg.model)
        net.cfg = cfg
        dataset_meta = {}
        if pretrained:
            dataset_meta = load_weights(net, pretrained, info.name if info else None, allow_partial_load)
        dataset_meta = dataset_meta or _dataset_meta_of_config(cfg)
    if torch.device(device).type == 'cpu':
        net = revert_sync_batchnorm(net)
        net.cfg = cfg
    net.to(device)
    net.dataset_meta = dataset_meta
    net._config, net._dataset_meta, net._metainfo = cfg, dataset_meta, None  # mmpretrain's names
    net.eval()
    if DefaultScope.get_current_instance() is None:
        # as mmseg's init_model: its inference_model / mmdet's inference_detector build the test
        # pipeline under the current scope
        init_default_scope(scope)
    return net


# -- the stock inferencers take a name --------------------------------------------------------

# the model built for the inferencer being constructed (its _init_model returns it)
_PREBUILT = contextvars.ContextVar('clusterseg_prebuilt_model', default=None)

_SCOPE_INFERENCER = {'mmseg': 'MMSegInferencer', 'mmdet': 'DetInferencer',
                     'mmpretrain': "mmpretrain's inferencers (ImageClassificationInferencer)"}


def resolve_name(name: str, scope: Optional[str], weights):
    """(ModelInfo, weights) for an inferencer given a model name: ``weights`` None or True means
    the published ones (a warning, and random weights, where there are none), False none."""
    from mmengine.config import Config
    info = get_model_info(name)
    model_scope = Config.fromfile(info.config).get('default_scope')
    if scope is not None and model_scope != scope:
        raise ValueError(
            f'model {info.name} is an {model_scope} model (config '
            f'{osp.relpath(info.config, REPO_ROOT)}): use {_SCOPE_INFERENCER.get(model_scope, model_scope)}, '
            f'or clusterseg.apis.init_inferencer({info.name!r}), which picks the inferencer')
    if weights is None or weights is True:
        weights = info.weights
        if weights is None:
            warnings.warn(f'model {info.name} has no published weights: the inferencer runs it '
                          'with random weights (pass the checkpoint of a trained model)')
    elif weights is False:
        weights = None
    return info, weights


__all__ = ['ModelInfo', 'UnknownModelError', 'WeightsDownloadError', 'model_index', 'list_models',
           'get_model_info', 'is_model_name', 'get_model', 'load_weights', 'read_checkpoint',
           'convert_to_clusterseg', 'drop_pretrained_init', 'skip_random_init',
           'resolve_name', 'model_info_of_config']
