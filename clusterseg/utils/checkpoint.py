"""Safe checkpoint loading for torch >= 2.6 with mmengine 0.10.7.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls plain
``torch.load(filename)``, so resuming or loading a runner checkpoint fails on the objects the
runner stores next to the weights (the message hub's ``HistoryBuffer`` and numpy arrays/scalars).

We do *not* fall back to ``weights_only=False`` (that would execute arbitrary pickled code).
Instead we keep ``weights_only=True`` and allowlist exactly the types that mmengine / mmpretrain /
mmdet / mmseg checkpoints contain. ``getattr`` appears in those pickles only as
``getattr(HistoryBuffer, 'min' | 'max' | 'mean' | 'current' ...)`` (the buffer's registry of
statistics methods), so instead of allowlisting ``getattr`` itself we allowlist a restricted
version that only resolves public methods of ``HistoryBuffer``.

Installing the allowlist with :func:`torch.serialization.add_safe_globals` makes it apply to every
``torch.load`` call with weights_only (mmengine's ``--resume``, ``load_from``, ``init_cfg``
``Pretrained``, the inferencers, our converters). mmengine's local and http loaders are replaced
by :func:`safe_torch_load`, which turns torch's refusal into an error that names the file, the
type at fault and how to opt in for a checkpoint the user trusts
(``CLUSTERSEG_TRUST_CHECKPOINTS=1``).

A checkpoint can also carry a Python config *as text*, which mmengine would execute: an
inferencer given only ``weights`` runs ``Config.fromstring(checkpoint's cfg)``, and
``Runner.resume`` runs ``Config.fromstring(checkpoint['meta']['config'])`` (a legacy key, only
read for a GPU-count warning). :func:`install_safe_globals` closes both, so config files are
only executed from the paths the user passed (and the ``_base_`` files those name): the
inferencers refuse a checkpoint without a config (:class:`UnsafeConfigError`), and resuming
drops ``meta['config']`` unread, with a warning.
"""
import os
import os.path as osp
import pickle

import numpy as np
import torch

TRUST_ENV = 'CLUSTERSEG_TRUST_CHECKPOINTS'

_INSTALLED = False


class UnsafeCheckpointError(pickle.UnpicklingError):
    """Raised when a checkpoint needs a type outside clusterseg's allowlist."""


class UnsafeConfigError(RuntimeError):
    """Raised instead of executing a Python config that came from a checkpoint file."""


def _history_buffer_getattr(obj, name):
    """``getattr`` restricted to what mmengine's ``HistoryBuffer`` pickles: its own methods."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_') \
            and callable(getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'refusing getattr({obj!r}, {name!r}) while unpickling: only public methods of '
        'mmengine HistoryBuffer may be resolved by name')


def checkpoint_allowlist():
    """The globals that runner checkpoints of the OpenMMLab stack contain (beyond tensors).

    Returns:
        list: entries for :func:`torch.serialization.add_safe_globals`.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    np_core = getattr(np, '_core', None) or np.core  # numpy 2 vs 1
    allow = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        (np_core.multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (np_core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (np_core.multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (np_core.multiarray.scalar, 'numpy.core.multiarray.scalar'),
        # pickles written with protocol 2 name the builtins module '__builtin__'
        (_history_buffer_getattr, 'builtins.getattr'),
        (_history_buffer_getattr, '__builtin__.getattr'),
    ]
    # numpy >= 1.25 pickles dtypes as their concrete classes (numpy.dtypes.Float64DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            cls = getattr(dtypes, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                allow.append((cls, f'numpy.dtypes.{name}'))
    return allow


def trust_all_checkpoints():
    """Whether the user opted out of the allowlist (``CLUSTERSEG_TRUST_CHECKPOINTS=1``)."""
    return os.environ.get(TRUST_ENV, '') == '1'


def safe_torch_load(f, map_location=None, name=None):
    """``torch.load`` with ``weights_only=True`` and clusterseg's allowlist.

    Args:
        f (str | file-like): the checkpoint.
        map_location: as in :func:`torch.load`.
        name (str | None): how to name the checkpoint in errors (defaults to ``f``).

    Raises:
        UnsafeCheckpointError: the file needs a type outside the allowlist; the message names
            the file, the type, and how to opt in for a trusted file.
    """
    install_safe_globals()
    if trust_all_checkpoints():
        return torch.load(f, map_location=map_location, weights_only=False)
    try:
        return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if isinstance(e, UnsafeCheckpointError):
            detail = str(e)
        else:
            detail = str(e).split('\n')[0]
            # torch's message starts with a banner; keep the line naming the global
            for line in str(e).splitlines():
                if 'GLOBAL' in line or 'unrecognized function' in line or 'Can only' in line:
                    detail = line.strip()
                    break
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {name or f!r}: it contains a type outside clusterseg\'s '
            f'allowlist of checkpoint contents ({detail}). Loading it would run code from the file. '
            f'If you trust this file, set {TRUST_ENV}=1 (or pass --trust-checkpoint to '
            'tools/train.py / tools/test.py) to load it with weights_only=False.') from e


def _pickle_globals():
    """``{'module.name': object}`` that plain pickles may resolve: the checkpoint allowlist plus
    ``collections.OrderedDict``, ``_codecs.encode`` (bytes in protocol-2 pickles) and numpy's
    ``_frombuffer`` (arrays in protocol-5 pickles: frombuffer(bytes, dtype).reshape, nothing else)."""
    import codecs
    import collections
    np_core = getattr(np, '_core', None) or np.core
    allowed = {'collections.OrderedDict': collections.OrderedDict,
               '_codecs.encode': codecs.encode,
               'numpy._core.numeric._frombuffer': np_core.numeric._frombuffer,
               'numpy.core.numeric._frombuffer': np_core.numeric._frombuffer}
    for entry in checkpoint_allowlist():
        obj, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        allowed[name] = obj
    return allowed


class _AllowlistUnpickler(pickle.Unpickler):
    """Plain-pickle reader (detectron2 ``.pkl`` weights: dicts of numpy arrays) that resolves
    only the globals of :func:`_pickle_globals`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed = _pickle_globals()

    def find_class(self, module, name):
        obj = self._allowed.get(f'{module}.{name}')
        if obj is None:
            raise UnsafeCheckpointError(f'GLOBAL {module}.{name} is not allowed')
        return obj


def safe_pickle_load(path, name=None):
    """Read a plain pickle file (e.g. detectron2 ``.pkl`` weights) with the same allowlist as
    :func:`safe_torch_load`; anything else (the globals a code-running pickle needs) raises
    :class:`UnsafeCheckpointError` naming the file, unless ``CLUSTERSEG_TRUST_CHECKPOINTS=1``."""
    with open(path, 'rb') as f:
        if trust_all_checkpoints():
            return pickle.load(f, encoding='latin1')
        try:
            return _AllowlistUnpickler(f, encoding='latin1').load()
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f'Refused to load pickle {name or path!r}: it contains a type outside '
                f"clusterseg's allowlist of checkpoint contents ({e}). Loading it would run code "
                f'from the file. If you trust this file, set {TRUST_ENV}=1.') from e


def _load_from_local(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found')
    return safe_torch_load(filename, map_location=map_location, name=filename)


def _load_from_http(filename, map_location=None, model_dir=None):
    # Download through mmengine's cache, then load safely (mmengine's load_url uses plain torch.load).
    from mmengine.dist import get_dist_info
    from torch.hub import download_url_to_file, get_dir
    from urllib.parse import urlparse
    rank, world_size = get_dist_info()
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    if rank == 0 and not osp.exists(cached):
        download_url_to_file(filename, cached, progress=True)
    if world_size > 1:
        torch.distributed.barrier()
    return safe_torch_load(cached, map_location=map_location, name=filename)


def _guard_checkpoint_configs():
    """Never execute a config that a checkpoint carries (see the module docstring)."""
    import warnings

    from mmengine.infer import BaseInferencer
    from mmengine.runner import Runner

    init_model = BaseInferencer._init_model

    def _init_model(self, cfg, weights, device='cpu'):
        if not cfg and weights is not None and not trust_all_checkpoints():
            raise UnsafeConfigError(
                f'{type(self).__name__} got the checkpoint {weights!r} but no config: mmengine '
                'would execute the Python config stored inside the checkpoint, i.e. run code '
                'from the checkpoint file. Pass the config file as `model=CONFIG_PATH` (config '
                'files are only executed from paths you pass). If you trust this checkpoint, '
                f'set {TRUST_ENV}=1.')
        return init_model(self, cfg, weights, device)

    load_checkpoint = Runner.load_checkpoint

    def runner_load_checkpoint(self, filename, *args, **kwargs):
        checkpoint = load_checkpoint(self, filename, *args, **kwargs)
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        if isinstance(meta, dict) and 'config' in meta and not trust_all_checkpoints():
            meta.pop('config')
            warnings.warn(f'checkpoint {filename}: ignored the Python config text in '
                          "meta['config'] (executing it would run code from the checkpoint; "
                          f'set {TRUST_ENV}=1 to let mmengine read it)')
        return checkpoint

    BaseInferencer._init_model = _init_model
    Runner.load_checkpoint = runner_load_checkpoint


def install_safe_globals():
    """Install the allowlist, the safe local/http checkpoint loaders and the guards against
    configs stored in checkpoints (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    torch.serialization.add_safe_globals(checkpoint_allowlist())
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True)
    _guard_checkpoint_configs()
