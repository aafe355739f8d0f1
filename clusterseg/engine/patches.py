"""clusterseg's runtime safety: every change clusterseg makes to torch, mmengine and the mm*
libraries, installed by one idempotent :func:`install`.

``import clusterseg`` checks versions and registers modules; it changes nothing in other
libraries. :func:`install` does, once per process:

* **checkpoints are loaded safely** (:mod:`clusterseg.utils.checkpoint`): torch's
  ``weights_only`` allowlist gets the types OpenMMLab runner checkpoints hold; every checkpoint
  scheme mmengine registers is read through :func:`~clusterseg.utils.checkpoint.safe_torch_load`
  (a scheme registered later runs with ``torch.load`` pointed at it); ``Runner.resume`` refuses a
  weights-only file; a config carried inside a checkpoint is never executed (the inferencers
  refuse weights without a config, ``Runner.load_checkpoint`` drops ``meta['config']``);
* **a checkpoint must fit** (:mod:`clusterseg.utils.state_dict`): ``Runner.test`` / ``Runner.val``
  and the mmengine / mmpretrain inferencers load strictly, ``Runner.train`` (``load_from``,
  resume) reports what loaded;
* **writes are atomic**: mmengine's local file backend (checkpoints) and the ``last_checkpoint``
  pointer of ``CheckpointHook`` write to ``NAME.tmp-PID`` and rename; ``Runner.train`` and the
  first write into a folder remove the temporary files of saves that were killed;
* **an empty dataset is an error** naming its ``data_root`` / ``ann_file``
  (``BaseDataset._serialize_data``);
* **the stock inferencers take a model name** of ``model-index.yml`` (``MMSegInferencer(NAME)``,
  ``DetInferencer(NAME)``, mmpretrain's inferencers).

Who calls it: ``tools/train.py`` / ``tools/test.py`` (through
:func:`clusterseg.engine.launch.run`), the converters and analysis tools, the
``clusterseg.apis`` entry points (so the demos), and every clusterseg config: the default
runtime bases import :mod:`clusterseg.engine.install_patches` (``custom_imports``: reading the
config installs it, so the stock inferencers and any launcher get it before a model, checkpoint
or dataset is built) and list :class:`clusterseg.RuntimeSafetyHook` (building a runner from the
config installs it, also where a config replaced ``custom_imports``). docs/en/runtime_safety.md
has the same list for users.
"""
import contextvars
import os
import os.path as osp
import re
import threading

_LOCK = threading.Lock()
_INSTALLED = [False]


def install():
    """Install clusterseg's runtime safety into this process (see the module docstring).
    Idempotent: a second call changes nothing."""
    with _LOCK:
        if _INSTALLED[0]:
            return
        # the order matters where two steps wrap the same function (BaseInferencer._init_model,
        # Runner.load_checkpoint, Runner.train): each wraps what the previous step left
        _install_safe_checkpoints()
        _install_load_checks()
        _install_atomic_local_writes()
        _install_atomic_last_checkpoint()
        _install_orphan_cleanup()
        _install_empty_dataset_check()
        _install_named_models()
        _INSTALLED[0] = True


def installed():
    """Whether :func:`install` ran in this process."""
    return _INSTALLED[0]


# ------------------------------------------------------------------ checkpoint loading
def _install_safe_checkpoints():
    """The allowlist for every ``weights_only`` load, the safe loader of every checkpoint scheme,
    the resume check, and the guards against configs stored in checkpoints."""
    import torch

    from clusterseg.utils.checkpoint import checkpoint_allowlist
    torch.serialization.add_safe_globals(checkpoint_allowlist())
    _guard_checkpoint_loader()
    _guard_checkpoint_configs()


def _guard_checkpoint_loader():
    """Every load goes through the allowlist; a file read for ``Runner.resume`` must be a
    training checkpoint (checked before any weights are loaded into the model)."""
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import CheckpointLoader

    from clusterseg.utils.checkpoint import (SAFE_SCHEMES, check_resumable, resuming,
                                             resuming_from, torch_load_through_allowlist)
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=prefixes, loader=loader, force=True)

    load_checkpoint = CheckpointLoader.load_checkpoint.__func__

    def checked_load_checkpoint(cls, filename, map_location=None, logger='current'):
        loader = cls._get_checkpoint_loader(filename)
        if getattr(loader, '_clusterseg_safe', False):
            checkpoint = load_checkpoint(cls, filename, map_location, logger)
        else:  # a scheme registered by other code: its torch.load calls go through the allowlist
            with torch_load_through_allowlist():
                checkpoint = load_checkpoint(cls, filename, map_location, logger)
        if resuming_from() is not None and resuming_from() == filename:
            check_resumable(checkpoint, filename)
        return checkpoint

    CheckpointLoader.load_checkpoint = classmethod(checked_load_checkpoint)

    resume = Runner.resume

    def checked_resume(self, filename, *args, **kwargs):
        with resuming(filename):
            return resume(self, filename, *args, **kwargs)

    Runner.resume = checked_resume


def _guard_checkpoint_configs():
    """Never execute a config that a checkpoint carries (see :mod:`clusterseg.utils.checkpoint`)."""
    import warnings

    from mmengine.infer import BaseInferencer
    from mmengine.runner import Runner

    from clusterseg.utils.checkpoint import TRUST_ENV, UnsafeConfigError, trust_all_checkpoints
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


# ------------------------------------------------------------------ checkpoint fit
def _install_load_checks():
    """Apply :func:`~clusterseg.utils.state_dict.load_policy` to mmengine's whole-model loads:

    * ``Runner.test`` / ``Runner.val`` load ``load_from`` in ``'eval'`` mode (strict);
      ``Runner.train`` (``load_from``, resume) in ``'train'`` mode;
    * the mmengine inferencers (``MMSegInferencer``, ``DetInferencer``) and mmpretrain's
      inferencers load their weights in ``'eval'`` mode.

    Outside these (``init_cfg`` ``Pretrained``, a direct ``load_checkpoint(model, ...)``), loads
    behave as in mmengine (a warning listing what did not fit).
    """
    import mmengine.runner.checkpoint as ckpt_module
    if getattr(ckpt_module.load_state_dict, '_clusterseg_checked', False):
        return
    from mmengine.infer import BaseInferencer
    from mmengine.runner import Runner

    from clusterseg.utils.checkpoint import resuming_from
    from clusterseg.utils.state_dict import load_policy, load_with_policy, unwrap_model
    mmengine_load_state_dict = ckpt_module.load_state_dict

    def load_state_dict(module, state_dict, strict=False, logger=None):
        if not load_with_policy(module, state_dict, strict):  # no policy for this load
            return mmengine_load_state_dict(module, state_dict, strict, logger)

    load_state_dict._clusterseg_checked = True
    ckpt_module.load_state_dict = load_state_dict  # _load_checkpoint_to_model's global

    mode_var = contextvars.ContextVar('clusterseg_runner_mode', default='train')

    def in_mode(method, mode):
        def wrapped(self, *args, **kwargs):
            token = mode_var.set(mode)
            try:
                return method(self, *args, **kwargs)
            finally:
                mode_var.reset(token)
        wrapped.__name__, wrapped.__doc__ = method.__name__, method.__doc__
        return wrapped

    Runner.train = in_mode(Runner.train, 'train')
    Runner.val = in_mode(Runner.val, 'eval')
    Runner.test = in_mode(Runner.test, 'eval')

    runner_load_checkpoint = Runner.load_checkpoint

    def load_checkpoint(self, filename, *args, **kwargs):
        what = 'resume' if resuming_from() == filename else 'load_from'
        with load_policy(mode_var.get(), name=filename, target=unwrap_model(self.model),
                         what=what):
            return runner_load_checkpoint(self, filename, *args, **kwargs)

    Runner.load_checkpoint = load_checkpoint

    init_model = BaseInferencer._init_model

    def _init_model(self, cfg, weights, device='cpu'):
        with load_policy('eval', name=weights):
            return init_model(self, cfg, weights, device)

    BaseInferencer._init_model = _init_model

    try:
        from mmpretrain.apis.base import BaseInferencer as PretrainInferencer
    except ImportError:  # mmpretrain is optional
        return
    pretrain_init = PretrainInferencer.__init__

    def __init__(self, model, pretrained=True, *args, **kwargs):
        name = pretrained if isinstance(pretrained, str) else None
        with load_policy('eval', name=name):
            pretrain_init(self, model, pretrained, *args, **kwargs)

    PretrainInferencer.__init__ = __init__


# ------------------------------------------------------------------ atomic writes
# NAME.tmp-PID: the temporary file of an atomic write by process PID
_TMP_NAME = re.compile(r'^.+\.tmp-(\d+)$')
_IN_FLIGHT = set()  # this process's temporary files being written now
_SWEPT = set()  # folders already cleaned of orphans by this process


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_orphan_tmp_files(directory):
    """Remove the ``NAME.tmp-PID`` files of atomic writes in ``directory`` whose process is gone.

    A process killed while saving leaves its temporary file behind (the final path keeps the
    previous complete file). A file is an orphan when its PID is not a running process, or is
    this process but not one of its writes in progress (a restart that got the same PID, as in a
    container). A temporary file of another running process is kept: it may be a save in
    progress. PIDs are per machine: a work dir shared by runs on several machines may see one
    machine's in-progress file as an orphan on another (rank 0 saves and cleans).

    Returns:
        list[str]: the removed paths.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TMP_NAME.match(name)
        path = osp.join(directory, name)
        if m is None or osp.abspath(path) in _IN_FLIGHT or not osp.isfile(path):
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            size = osp.getsize(path)
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
        from mmengine.logging import print_log
        print_log(f'removed {path} ({size / 2**20:.1f} MiB), the temporary file of a save that was '
                  f'interrupted (process {pid} is gone)', logger='current')
    return removed


def _sweep_once(directory):
    directory = osp.abspath(directory)
    if directory not in _SWEPT:
        _SWEPT.add(directory)
        remove_orphan_tmp_files(directory)


def _install_orphan_cleanup():
    """Remove the temporary files of interrupted saves (:func:`remove_orphan_tmp_files`) from the
    work dir when ``Runner.train`` starts (main process). Folders outside the work dir (a
    ``CheckpointHook`` ``out_dir``) are swept at their first write. Idempotent."""
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner
    if getattr(Runner.train, '_clusterseg_sweeps', False):
        return
    train = Runner.train

    def wrapped(self, *args, **kwargs):
        if is_main_process():
            _sweep_once(self.work_dir)
        return train(self, *args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = train.__name__, train.__doc__
    wrapped._clusterseg_sweeps = True
    Runner.train = wrapped


def _install_atomic_local_writes():
    """Make mmengine's local file writes (checkpoints included) atomic.

    mmengine writes a checkpoint straight into its final path, so a run killed while saving
    leaves a truncated ``iter_N.pth`` behind. Writing to a temporary file in the same folder and
    renaming it with ``os.replace`` means a checkpoint path either holds a whole file or nothing.
    The first write into a folder removes the temporary files earlier processes left there
    (:func:`remove_orphan_tmp_files`). Idempotent.
    """
    from mmengine.fileio.backends import local_backend
    backend = local_backend.LocalBackend
    if getattr(backend.put, '_clusterseg_atomic', False):
        return

    def put(self, obj, filepath):
        filepath = str(filepath)
        folder = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        _sweep_once(folder)
        tmp = f'{filepath}.tmp-{os.getpid()}'
        _IN_FLIGHT.add(osp.join(folder, osp.basename(tmp)))
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            _IN_FLIGHT.discard(osp.join(folder, osp.basename(tmp)))
            if os.path.exists(tmp):
                os.remove(tmp)

    put._clusterseg_atomic = True
    backend.put = put


class _AtomicTextWriter:
    """A text file opened for writing that appears at its path only once complete."""

    def __init__(self, path, encoding=None):
        self.path = str(path)
        self.tmp = f'{self.path}.tmp-{os.getpid()}'
        _IN_FLIGHT.add(osp.abspath(self.tmp))
        self.f = open(self.tmp, 'w', encoding=encoding)

    def write(self, text):
        return self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
                self.f.close()
                os.replace(self.tmp, self.path)
        finally:
            if not self.f.closed:
                self.f.close()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
            _IN_FLIGHT.discard(osp.abspath(self.tmp))
        return False


def _install_atomic_last_checkpoint():
    """Write the ``last_checkpoint`` pointer (what ``--resume`` reads) atomically.

    mmengine's ``CheckpointHook`` writes ``WORK_DIR/last_checkpoint`` with a plain ``open(..., 'w')``
    right after each checkpoint; a kill in between would leave it empty or truncated, and
    ``--resume`` would then load a wrong path. The pointer is only written after its checkpoint
    was renamed into place (see :func:`_install_atomic_local_writes`), so with this it always names
    a complete checkpoint. Idempotent.
    """
    import builtins

    from mmengine.hooks import checkpoint_hook
    if getattr(getattr(checkpoint_hook, 'open', None), '_clusterseg_atomic', False):
        return

    def _open(file, mode='r', *args, **kwargs):
        if os.path.basename(str(file)) == 'last_checkpoint' and mode == 'w':
            return _AtomicTextWriter(file, encoding=kwargs.get('encoding'))
        return builtins.open(file, mode, *args, **kwargs)

    _open._clusterseg_atomic = True
    checkpoint_hook.open = _open  # module global: shadows the builtin for that module only


# ------------------------------------------------------------------ empty datasets
def _install_empty_dataset_check():
    """Make an mmengine ``BaseDataset`` that found no samples raise :class:`EmptyDatasetError`
    naming its data_root / ann_file / data_prefix, instead of numpy's "need at least one array
    to concatenate" from serializing the empty list. Datasets with samples are unaffected.
    Idempotent."""
    from mmengine.dataset import BaseDataset

    from .errors import EmptyDatasetError, describe_dataset
    orig = BaseDataset._serialize_data
    if getattr(orig, '_clusterseg_checked', False):
        return

    def _serialize_data(self):
        if len(self.data_list) == 0:
            raise EmptyDatasetError(
                f'dataset {describe_dataset(self)} is empty: it found no samples. Check '
                'data_root / ann_file / data_prefix and that the files exist in the expected '
                'layout (docs/en/get_started.md, "Datasets").')
        return orig(self)

    _serialize_data._clusterseg_checked = True
    BaseDataset._serialize_data = _serialize_data


# ------------------------------------------------------------------ model names
def _install_named_models():
    """Let the stock inferencers take a model name of ``model-index.yml`` (idempotent):
    ``MMSegInferencer`` / ``DetInferencer`` (``weights`` None: the published ones) and
    mmpretrain's inferencers (``pretrained`` True: the published ones) receive the model
    :func:`clusterseg.apis.get_model` builds (official layouts converted, strict load) and its
    config."""
    from mmengine.device import get_device
    from mmengine.infer import BaseInferencer

    from clusterseg.apis.model_zoo import _PREBUILT, get_model, is_model_name, resolve_name
    if getattr(BaseInferencer.__init__, '_clusterseg_names', False):
        return
    engine_init = BaseInferencer.__init__
    engine_init_model = BaseInferencer._init_model

    def __init__(self, model=None, weights=None, device=None, scope=None, *args, **kwargs):
        if not is_model_name(model):
            return engine_init(self, model, weights, device, scope, *args, **kwargs)
        info, weights = resolve_name(model, scope, weights)
        device = device or get_device()
        token = _PREBUILT.set(get_model(info.name, pretrained=weights, device=device))
        try:
            return engine_init(self, info.config, None, device, scope, *args, **kwargs)
        finally:
            _PREBUILT.reset(token)

    def _init_model(self, cfg, weights, device='cpu'):
        built = _PREBUILT.get()
        if built is None:
            return engine_init_model(self, cfg, weights, device)
        _PREBUILT.set(None)  # only the model of this inferencer
        return built

    __init__._clusterseg_names = True
    BaseInferencer.__init__ = __init__
    BaseInferencer._init_model = _init_model

    try:
        from mmpretrain.apis.base import BaseInferencer as PretrainInferencer
    except ImportError:  # mmpretrain is optional
        return
    pretrain_init = PretrainInferencer.__init__

    def pretrain_init_named(self, model, pretrained=True, device=None, *args, **kwargs):
        if is_model_name(model):
            info, weights = resolve_name(model, 'mmpretrain', pretrained)
            model = get_model(info.name, pretrained=weights, device=device or get_device())
            pretrained = False
        return pretrain_init(self, model, pretrained, device, *args, **kwargs)

    PretrainInferencer.__init__ = pretrain_init_named
