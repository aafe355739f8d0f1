"""``--compile [BACKEND]`` of tools/train.py and tools/test.py: ``torch.compile`` through MMEngine.

MMEngine 0.10.7 reads ``cfg.compile`` (``True`` or a dict of ``torch.compile`` arguments, e.g.
``dict(backend='inductor')``) in ``Runner.train`` only, after wrapping the model: it replaces
``runner.model.train_step`` by ``torch.compile(runner.model.train_step, **cfg.compile)``
(``Runner._maybe_compile('train_step')``). ``Runner.val`` / ``Runner.test`` (and the validation
inside training) compile nothing. :func:`apply_compile` therefore sets ``cfg.compile`` for the
training step and adds :class:`CompileHook`, which compiles ``val_step`` / ``test_step`` the same
way before the first validation / test iteration. The module's parameters are not renamed (the
bound method is compiled, not the module), so checkpoints keep their keys.

Graph breaks per model family (measured by tests/test_engine/test_compile.py, documented in
docs/en/deployment.md): none in the networks of PaCa-ViT, PSViT, the PaCa / UperNet heads and
kMaX; ClusTR's DPC-kNN breaks the graph where its block sizes follow the data.
"""
import os
import shutil
from typing import Optional, Union

from mmengine.hooks import Hook

from clusterseg.registry import HOOKS

DEFAULT_BACKEND = 'inductor'
CompileArg = Union[None, bool, str, dict]


class CompileUnavailableError(RuntimeError):
    """``--compile`` with a backend this machine cannot run (the message says what is missing)."""


def compile_options(compile_arg: CompileArg) -> Optional[dict]:
    """``torch.compile`` keyword arguments of a ``--compile`` value, or None (no compile).

    ``None`` / ``False``: None. ``True``: ``dict(backend='inductor')``. A str: that backend
    (``'inductor'``, ``'aot_eager'``, ``'eager'``, ...). A dict: as it is (``backend``
    defaulting to inductor; ``mode``, ``dynamic``, ``fullgraph``, ``options`` pass through).
    """
    if compile_arg is None or compile_arg is False:
        return None
    if compile_arg is True:
        opts = {}
    elif isinstance(compile_arg, str):
        opts = dict(backend=compile_arg)
    elif isinstance(compile_arg, dict):
        opts = dict(compile_arg)
    else:
        raise TypeError(f'--compile: expected a backend name, True or a dict of torch.compile '
                        f'arguments, got {type(compile_arg).__name__}')
    opts.setdefault('backend', DEFAULT_BACKEND)
    check_backend(opts['backend'])
    return opts


def _cxx_compiler() -> Optional[str]:
    names = [os.environ.get('CXX'), 'g++', 'c++', 'clang++']
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


def check_backend(backend) -> None:
    """Raise :class:`CompileUnavailableError` for an unknown backend, or inductor without a
    C++ compiler (its CPU kernels are C++ compiled at run time)."""
    if callable(backend):
        return
    import torch._dynamo
    known = set(torch._dynamo.list_backends(exclude_tags=())) | {'inductor'}
    if backend not in known:
        raise CompileUnavailableError(f'--compile {backend}: unknown torch.compile backend; known: '
                                      f'{sorted(known)}')
    if backend == 'inductor' and _cxx_compiler() is None:
        raise CompileUnavailableError(
            "--compile inductor needs a C++ compiler (inductor compiles its CPU kernels with it): "
            "none of $CXX, g++, c++, clang++ is on PATH. Install one (apt-get install g++) or use "
            "--compile aot_eager (graph capture without code generation)")


def apply_compile(cfg, compile_arg: CompileArg, mode: str = 'train'):
    """Turn ``--compile`` into the config: ``cfg.compile`` (MMEngine compiles ``train_step`` in
    ``Runner.train``) and a :class:`CompileHook` (``val_step`` / ``test_step``). ``mode``:
    ``'train'``, ``'val'`` or ``'test'`` (all add the hook: training validates too). Returns
    ``cfg`` (changed in place); ``compile_arg`` None / False leaves it as it is."""
    if mode not in ('train', 'val', 'test'):
        raise ValueError(f"apply_compile: mode must be 'train', 'val' or 'test', got {mode!r}")
    opts = compile_options(compile_arg)
    if opts is None:
        return cfg
    cfg.compile = dict(opts)
    hooks = [h for h in (cfg.get('custom_hooks') or []) if h.get('type') != 'clusterseg.CompileHook']
    hooks.append(dict(type='clusterseg.CompileHook', compile_cfg=dict(opts)))
    cfg.custom_hooks = hooks
    return cfg


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile ``runner.model.val_step`` / ``test_step`` with ``torch.compile(**compile_cfg)``
    before the first validation / test iteration (what MMEngine does for ``train_step``)."""

    priority = 'VERY_LOW'

    def __init__(self, compile_cfg=None):
        self.compile_cfg = dict(compile_cfg or {})
        self.compile_cfg.setdefault('backend', DEFAULT_BACKEND)

    def _compile(self, runner, target):
        import torch
        model = runner.model
        if getattr(model, f'_clusterseg_compiled_{target}', False):
            return
        setattr(model, target, torch.compile(getattr(model, target), **self.compile_cfg))
        setattr(model, f'_clusterseg_compiled_{target}', True)
        runner.logger.info(f'{target} compiled (torch.compile, {self.compile_cfg}); the first '
                           'iterations are slow')

    def before_val(self, runner):
        self._compile(runner, 'val_step')

    def before_test(self, runner):
        self._compile(runner, 'test_step')
