"""Scope helpers for scripts and tests (mirrors mmdet/mmseg's ``register_all_modules``)."""
import importlib


def register_all_modules(init_default_scope=None):
    """Import every clusterseg module so it registers itself; optionally set the default scope.

    Args:
        init_default_scope (str | None): if given (``'mmseg'``, ``'mmdet'``, ``'mmpretrain'``),
            make it the current default scope, as the runner does from ``cfg.default_scope``.
    """
    for name in ('clusterseg.models', 'clusterseg.datasets', 'clusterseg.engine'):
        importlib.import_module(name)
    if init_default_scope is not None:
        from mmengine.registry import init_default_scope as _init
        _init(init_default_scope)
