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


def install_safe_globals():
    """Install the allowlist and the safe local/http checkpoint loaders (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    torch.serialization.add_safe_globals(checkpoint_allowlist())
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True)
