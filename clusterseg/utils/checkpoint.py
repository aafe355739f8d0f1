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

Installed with :func:`torch.serialization.add_safe_globals` (by
:func:`clusterseg.engine.patches.install`), the allowlist applies to every ``torch.load`` call with
weights_only (mmengine's ``--resume``, ``load_from``, ``init_cfg``
``Pretrained``, the inferencers, our converters). Every checkpoint scheme mmengine registers
(local paths, ``http(s)://``, ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` /
``openmmlab://``, ``mmcls://``, ``pavi://``, ``s3://`` / ``petrel://``) is replaced by a loader
that ends in :func:`safe_torch_load`: mmengine's own model-zoo loaders end in
``torch.hub.load_state_dict_from_url``, whose default is ``weights_only=False``, so a file planted
in the hub cache would run code at ``load_from=torchvision://resnet18``. A scheme registered later
by other code runs with ``torch.load`` pointed at :func:`safe_torch_load` for the duration of the
call. :func:`safe_torch_load` turns torch's refusal into an error that names the file, the type at
fault and how to opt in for a checkpoint the user trusts (``CLUSTERSEG_TRUST_CHECKPOINTS=1``), and
a file that is no checkpoint at all (empty, truncated, random bytes) into
:class:`CheckpointFileError` naming the file and what is wrong with it; ``--resume`` from a file
with weights only is :class:`NotResumableCheckpointError`.

A checkpoint can also carry a Python config *as text*, which mmengine would execute: an
inferencer given only ``weights`` runs ``Config.fromstring(checkpoint's cfg)``, and
``Runner.resume`` runs ``Config.fromstring(checkpoint['meta']['config'])`` (a legacy key, only
read for a GPU-count warning). :func:`clusterseg.engine.patches.install` closes both, so config
files are only executed from the paths the user passed (and the ``_base_`` files those name): the
inferencers refuse a checkpoint without a config (:class:`UnsafeConfigError`), and resuming
drops ``meta['config']`` unread, with a warning.

This module changes nothing in torch or mmengine by itself: :func:`safe_torch_load` and
:func:`safe_pickle_load` apply the allowlist to their own load only, and
:func:`clusterseg.engine.patches.install` (run by the tools, the ``clusterseg.apis`` entry points
and the default runtime configs) installs the allowlist, the scheme loaders and the guards into
mmengine.
"""
import contextlib
import contextvars
import io
import os
import os.path as osp
import pickle
import re

import numpy as np
import torch

TRUST_ENV = 'CLUSTERSEG_TRUST_CHECKPOINTS'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """Raised when a checkpoint needs a type outside clusterseg's allowlist."""


class UnsafeConfigError(RuntimeError):
    """Raised instead of executing a Python config that came from a checkpoint file."""


class CheckpointFileError(RuntimeError):
    """A checkpoint file that cannot be read as one (empty, truncated, not a checkpoint).

    Attributes:
        filename (str): the file, as the user named it.
        problem (str): what is wrong with it.
    """

    def __init__(self, filename, problem):
        super().__init__(f'checkpoint {filename}: {problem}')
        self.filename, self.problem = filename, problem


class NotResumableCheckpointError(CheckpointFileError):
    """``--resume`` from a file that holds no training state (weights only)."""


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


def safe_torch_load(f, map_location=None, name=None, _load=None):
    """``torch.load`` with ``weights_only=True`` and clusterseg's allowlist.

    Args:
        f (str | file-like): the checkpoint.
        map_location: as in :func:`torch.load`.
        name (str | None): how to name the checkpoint in errors (defaults to ``f``).

    Raises:
        UnsafeCheckpointError: the file needs a type outside the allowlist; the message names
            the file, the type, and how to opt in for a trusted file.
        CheckpointFileError: the file is empty, truncated or not a checkpoint at all; the
            message names the file and the problem (no opt-in helps there).
    """
    load = _load or torch.load
    name = name or (str(f) if isinstance(f, (str, os.PathLike)) else repr(f))
    trusted = trust_all_checkpoints()
    try:
        with _allowlisted():
            return load(f, map_location=map_location, weights_only=not trusted)
    except OSError:
        raise  # missing file, a directory, no permission: the OS error names the path
    except Exception as e:
        kind, detail = _diagnose(f, e, trusted)
        if kind == 'other':  # not about the file's contents (e.g. map_location to a missing GPU)
            raise
        if kind == 'file':
            raise CheckpointFileError(name, detail) from e
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {name}: it contains a type outside clusterseg\'s '
            f'allowlist of checkpoint contents ({detail}). Loading it would run code from the file. '
            f'If you trust this file, set {TRUST_ENV}=1 (or pass --trust-checkpoint to '
            'tools/train.py / tools/test.py) to load it with weights_only=False.') from e


@contextlib.contextmanager
def _allowlisted():
    """The allowlist in torch's ``weights_only`` globals for the duration, where
    :func:`clusterseg.engine.patches.install` has not put it there for good (only the entries
    added here are removed again)."""
    present = set(torch.serialization.get_safe_globals())
    missing = [entry for entry in checkpoint_allowlist() if entry not in present]
    if not missing:
        yield
        return
    with torch.serialization.safe_globals(missing):
        yield


# the lines of torch's weights_only refusal that name a type / function outside the allowlist
# (or our restricted getattr's refusal, which torch re-raises as text); anything else it raises
# (``Unsupported operand 197``, an IndexError, ...) is a damaged file
_REFUSED = re.compile(
    r'GLOBAL|unrecognized function|Can only (create|build)|must be imported|refusing getattr')


# what torch raises for a file it cannot read to its end (a cut-short zip, legacy file or pickle)
_DAMAGED = re.compile(r'PytorchStreamReader|zip archive|central directory|unexpected EOF|'
                      r'Ran out of input|truncated|corrupt|invalid load key|Unsupported operand')
_DAMAGED_TYPES = (EOFError, pickle.UnpicklingError, UnicodeDecodeError, IndexError, KeyError)


def _refused_type(e):
    """The allowlist refusal in ``e`` (one line), or None when ``e`` is not one."""
    if isinstance(e, UnsafeCheckpointError):
        return str(e)
    if not isinstance(e, pickle.UnpicklingError):
        return None
    for line in str(e).splitlines():
        if _REFUSED.search(line):
            return line.replace('WeightsUnpickler error:', '').strip()
    return None


def _head_and_size(f):
    """(first 8 bytes, size in bytes) of a path or a seekable file object; (b'', None) if unknown."""
    try:
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'rb') as fh:
                return fh.read(8), os.path.getsize(f)
        pos = f.tell()
        f.seek(0)
        head = f.read(8)
        size = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return head, size
    except (OSError, AttributeError, ValueError):
        return b'', None


def _first_pickle(f):
    """Read the first pickle of ``f`` with the allowlist: ``('ok', value)``, ``('unsafe', detail)``
    (it names a global outside the allowlist) or ``('bad', None)`` (not a complete pickle)."""
    try:
        fh = open(f, 'rb') if isinstance(f, (str, os.PathLike)) else f
        try:
            fh.seek(0)
            return 'ok', _AllowlistUnpickler(fh, encoding='latin1').load()
        finally:
            if fh is not f:
                fh.close()
    except UnsafeCheckpointError as e:
        return 'unsafe', str(e)
    except Exception:
        return 'bad', None


def _diagnose(f, e, trusted):
    """Why ``torch.load(f)`` raised ``e``: ``('unsafe', the type refused)``, ``('file', a
    sentence saying what is wrong with the file)``, from torch's error and the file's first bytes,
    or ``('other', None)`` for an error that is not about the file's contents."""
    detail = None if trusted else _refused_type(e)
    if detail is not None:
        return 'unsafe', detail
    head, size = _head_and_size(f)
    msg = str(e).split('\n')[0].split('. This is an internal')[0]
    if size == 0:
        return 'file', ('the file is empty (0 bytes): a save, copy or download that wrote it was '
                        'cut short. Save or download it again.')
    damaged = (f'the file ({size} bytes) is truncated or damaged: it starts like a PyTorch '
               f'checkpoint but cannot be read to its end ({type(e).__name__}: {msg}). A save, '
               'copy or download was probably cut short; save or download it again.')
    looks_damaged = isinstance(e, _DAMAGED_TYPES) or bool(_DAMAGED.search(str(e)))
    if head.startswith(b'PK\x03\x04'):  # torch.save's zip archive
        return ('file', damaged) if looks_damaged else ('other', None)
    if head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04', b'\x05'):  # a pickle
        kind, value = _first_pickle(f)
        if kind == 'unsafe' and not trusted:
            return 'unsafe', value
        if 'Invalid magic number' in str(e) or kind == 'ok' and not (
                isinstance(value, int) and value == torch.serialization.MAGIC_NUMBER):
            return 'file', (f'the file ({size} bytes) is a plain pickle, not a checkpoint written '
                            'by torch.save (detectron2 .pkl weights: convert them with '
                            'tools/model_converters/).')
        if kind == 'bad' or looks_damaged:
            return 'file', damaged  # torch's legacy format (or a pickle) cut short
        return 'other', None
    return 'file', (f'the file ({size} bytes, starting with {head!r}) is not a PyTorch '
                    "checkpoint: neither torch.save's zip format nor a pickle. Check the path.")


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
        except Exception as e:  # not a pickle, or cut short
            size = os.path.getsize(path)
            problem = ('the file is empty (0 bytes)' if size == 0 else
                       f'the file ({size} bytes) is not a complete pickle ({type(e).__name__}: {e})')
            raise CheckpointFileError(name or path, problem) from e


def _safe_loader(fn):
    """Mark ``fn`` as a checkpoint-scheme loader that reads only through :func:`safe_torch_load`."""
    fn._clusterseg_safe = True
    fn.__name__ = fn.__name__.lstrip('_')  # mmengine logs "Loads checkpoint by NAME[10:] backend"
    return fn


@_safe_loader
def _load_from_local(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found')
    return safe_torch_load(filename, map_location=map_location, name=filename)


@_safe_loader
def _load_from_http(filename, map_location=None, model_dir=None, name=None):
    """Download through torch hub's cache (as mmengine / torch do), then load safely: mmengine's
    ``load_url`` is ``torch.hub.load_state_dict_from_url``, which loads with weights_only=False."""
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
    return safe_torch_load(cached, map_location=map_location,
                           name=f'{cached} (downloaded from {name or filename})')


@_safe_loader
def _load_from_torchvision(filename, map_location=None):
    """``torchvision://NAME`` (``modelzoo://NAME``, deprecated): torchvision's URL for NAME."""
    from mmengine.runner.checkpoint import get_torchvision_models
    model_name = filename.split('://', 1)[1]
    urls = get_torchvision_models()
    if model_name not in urls:
        raise KeyError(f'{filename}: torchvision has no weights named {model_name!r}')
    return _load_from_http(urls[model_name], map_location=map_location,
                           name=f'{urls[model_name]}, for {filename}')


@_safe_loader
def _load_from_openmmlab(filename, map_location=None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: mmengine's hub json (plus
    ``$MMENGINE_HOME/open_mmlab.json``) maps NAME to a URL or a path under ``$MMENGINE_HOME``."""
    from mmengine.runner.checkpoint import (_get_mmengine_home, get_deprecated_model_names,
                                            get_external_models)
    import warnings
    scheme, model_name = filename.split('://', 1)
    deprecated = get_deprecated_model_names()
    if model_name in deprecated:
        warnings.warn(f'{scheme}://{model_name} is deprecated in favor of '
                      f'{scheme}://{deprecated[model_name]}')
        model_name = deprecated[model_name]
    urls = get_external_models()
    if model_name not in urls:
        raise KeyError(f'{filename}: no OpenMMLab model named {model_name!r}')
    url = urls[model_name]
    if url.startswith(('http://', 'https://')):
        return _load_from_http(url, map_location=map_location, name=f'{url}, for {filename}')
    return _load_from_local(osp.join(_get_mmengine_home(), url), map_location=map_location)


@_safe_loader
def _load_from_mmcls(filename, map_location=None):
    """``mmcls://NAME``: an mmcls model zoo URL; keeps the backbone's weights (as mmengine)."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    model_name = filename[len('mmcls://'):]
    urls = get_mmcls_models()
    if model_name not in urls:
        raise KeyError(f'{filename}: no mmcls model named {model_name!r}')
    return _process_mmcls_checkpoint(
        _load_from_http(urls[model_name], map_location=map_location,
                        name=f'{urls[model_name]}, for {filename}'))


@_safe_loader
def _load_from_pavi(filename, map_location=None):
    """``pavi://PATH``: downloaded from PAVI's model cloud into a temporary folder."""
    import tempfile
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.')
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return safe_torch_load(downloaded, map_location=map_location,
                               name=f'{filename} (downloaded to {downloaded})')


@_safe_loader
def _load_from_ceph(filename, map_location=None, backend='petrel'):
    """``s3://`` / ``petrel://`` (optionally ``NAME:s3://``): read through mmengine's backend."""
    import mmengine.fileio
    file_backend = mmengine.fileio.get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return safe_torch_load(buffer, map_location=map_location, name=filename)


# every scheme mmengine 0.10.7 registers (mmengine/runner/checkpoint.py), and its safe loader
SAFE_SCHEMES = {
    '': _load_from_local,
    ('http://', 'https://'): _load_from_http,
    ('modelzoo://', 'torchvision://'): _load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): _load_from_openmmlab,
    'mmcls://': _load_from_mmcls,
    'pavi://': _load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): _load_from_ceph,
}

# the file being read by Runner.resume (its contents must be a training checkpoint)
_RESUMING = contextvars.ContextVar('clusterseg_resuming', default=None)


@contextlib.contextmanager
def resuming(filename):
    """Mark ``filename`` as the file ``Runner.resume`` reads for the duration (see
    :func:`resuming_from`)."""
    token = _RESUMING.set(filename)
    try:
        yield
    finally:
        _RESUMING.reset(token)


def resuming_from():
    """The checkpoint ``Runner.resume`` is reading in this context, or None."""
    return _RESUMING.get()


@contextlib.contextmanager
def torch_load_through_allowlist():
    """Point ``torch.load`` at :func:`safe_torch_load` for the duration (a loader we did not write
    may pass ``weights_only=False``; the opt-in still applies)."""
    original = torch.load

    def load(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
        return safe_torch_load(f, map_location=map_location, _load=original)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def check_resumable(checkpoint, filename):
    """Raise :class:`NotResumableCheckpointError` unless ``checkpoint`` holds what
    ``Runner.resume`` reads: ``meta['epoch']``, ``meta['iter']`` and ``message_hub``."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    lacking = [k for k in ('epoch', 'iter') if not isinstance(meta, dict) or k not in meta]
    lacking = [f"meta['{k}']" for k in lacking]
    if not isinstance(checkpoint, dict) or 'message_hub' not in checkpoint:
        lacking.append('message_hub')
    if not lacking:
        return
    keys = ', '.join(map(str, list(checkpoint)[:8])) if isinstance(checkpoint, dict) else \
        type(checkpoint).__name__
    raise NotResumableCheckpointError(
        filename,
        f'cannot resume from it: it holds model weights only, not a training checkpoint (its '
        f'top-level keys: {keys}; it lacks {", ".join(lacking)}, which the runner saves with '
        'every checkpoint and resuming reads). To start training from these weights use '
        f'load_from instead (tools/train.py CONFIG --cfg-options load_from={filename}); to '
        'resume, pass a checkpoint a training run saved (WORK_DIR/epoch_N.pth or iter_N.pth), '
        'or --resume without a value for the latest one in the work dir.')
