"""Loading pretrained state dicts into a module, with errors that list what does not fit.

A whole checkpoint loaded into a model for testing or inference must fit it (no missing,
unexpected or mis-shaped keys) unless a partial load is allowed; one loaded for training
(``load_from``) reports the fraction that loaded and must load something (:func:`load_policy`;
:func:`clusterseg.engine.patches.install` applies it to mmengine's runner and inferencer loads
through :func:`load_with_policy`).
"""
import contextlib
import contextvars
import os
import re
from collections import OrderedDict


class StateDictMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the model."""


def unwrap_state_dict(checkpoint):
    """The state dict inside a checkpoint: ``state_dict`` / ``model`` / raw, ``module.`` stripped."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in checkpoint.items())


def load_pretrained_state_dict(path, prefix=None):
    """Read a checkpoint (safe loading) and return the backbone's state dict.

    Args:
        path (str): local path or URL.
        prefix (str | None): keep only keys under this prefix (stripped). Without it, a
            downstream (mmdet / mmseg / mmpretrain) checkpoint's ``backbone.`` keys are taken.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    state = unwrap_state_dict(CheckpointLoader.load_checkpoint(path, map_location='cpu'))
    if prefix is None and any(k.startswith('backbone.') for k in state):
        prefix = 'backbone'
    if prefix:
        prefix = prefix.rstrip('.') + '.'
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        if not state:
            raise StateDictMismatchError(f'{path}: no keys start with prefix {prefix!r}')
    return state


def check_state_dict_fits(own, state, name='checkpoint', allowed_missing=(), allowed_unexpected=()):
    """Raise :class:`StateDictMismatchError` listing missing, unexpected and mis-shaped keys.

    Args:
        own (dict): the model's ``state_dict()``.
        state (dict): the state dict to load.
        name (str): how to name the load in the message.
        allowed_missing (Iterable[str]): model keys that may be absent from ``state``.
        allowed_unexpected (Iterable[str]): ``state`` keys the model may lack.
    """
    allowed_missing, allowed_unexpected = set(allowed_missing), set(allowed_unexpected)
    missing = sorted(k for k in own if k not in state and k not in allowed_missing)
    unexpected = sorted(k for k in state if k not in own and k not in allowed_unexpected)
    mismatched = sorted(
        f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
        for k in state if k in own and hasattr(state[k], 'shape') and state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        def fmt(title, keys):
            if not keys:
                return ''
            shown = '\n    '.join(keys[:40]) + (f'\n    ... ({len(keys) - 40} more)' if len(keys) > 40 else '')
            return f'\n  {title} ({len(keys)}):\n    {shown}'
        raise StateDictMismatchError(
            f'{name}: the checkpoint does not fit the model.' + fmt('missing keys', missing) +
            fmt('unexpected keys', unexpected) + fmt('shape mismatches', mismatched))


PARTIAL_ENV = 'CLUSTERSEG_ALLOW_PARTIAL_LOAD'
SHOWN_KEYS = 5  # keys of each kind named in a message
# a training load (load_from, resume) that brings less than this fraction of the model's values
# is refused: another model's checkpoint shares at most a few biases with it
NOTHING_LOADED = 0.01


class CheckpointMismatchError(StateDictMismatchError):
    """A checkpoint loaded for testing / inference does not fit the model, or nothing of the
    model is in a checkpoint loaded for training.

    Attributes:
        filename (str): the checkpoint.
        missing, unexpected, mismatched (list[str]): model keys absent from the checkpoint,
            checkpoint keys the model lacks, and ``'key: checkpoint (..) vs model (..)'``.
        loaded, total (int): model tensors that loaded, and the model's tensors.
    """

    def __init__(self, message, filename=None, report=None):
        super().__init__(message)
        self.filename = filename
        report = report or _LoadReport()
        self.missing, self.unexpected = report.missing, report.unexpected
        self.mismatched, self.loaded, self.total = report.mismatched, report.loaded, report.total


class _LoadReport:
    def __init__(self):
        self.missing, self.unexpected, self.mismatched, self.errors = [], [], [], []
        self.loaded = self.total = self.loaded_numel = self.total_numel = 0

    @property
    def complete(self):
        return not (self.missing or self.unexpected or self.mismatched or self.errors)

    def summary(self):
        pct = 100.0 * self.loaded_numel / max(self.total_numel, 1)
        return (f'{self.loaded} of the model\'s {self.total} tensors loaded ({pct:.1f}% of its '
                f'{self.total_numel:,} values)')

    def details(self):
        out = []
        for title, keys in (('missing from the checkpoint', self.missing),
                            ('unexpected (in the checkpoint, not in the model)', self.unexpected),
                            ('shape mismatches (not loaded)', self.mismatched),
                            ('other load errors', self.errors)):
            if keys:
                shown = '\n    '.join(keys[:SHOWN_KEYS])
                more = f'\n    ... and {len(keys) - SHOWN_KEYS} more' if len(keys) > SHOWN_KEYS else ''
                out.append(f'  {title}: {len(keys)}, first {min(len(keys), SHOWN_KEYS)}:\n'
                           f'    {shown}{more}')
        return '\n'.join(out)


class _Policy:
    def __init__(self, mode, name, allow_partial, target=None, what=None):
        self.mode, self.name, self.allow_partial = mode, name, allow_partial
        self.target, self.what, self.applied = target, what, False


_POLICY = contextvars.ContextVar('clusterseg_load_policy', default=None)


@contextlib.contextmanager
def load_policy(mode, name=None, allow_partial=None, target=None, what=None):
    """How the next whole-model load in this context treats a checkpoint that does not fit.

    Args:
        mode (str): ``'eval'`` (testing, inference): missing, unexpected or mis-shaped keys raise
            :class:`CheckpointMismatchError` unless a partial load is allowed. ``'train'``
            (``load_from``, resume): the loaded fraction is logged (a warning when partial), and
            a checkpoint that brings less than 1% of the model's values raises (unless a partial
            load is allowed).
        name (str | None): the checkpoint, for messages (inherited from an enclosing policy).
        allow_partial (bool | None): accept a partial load in ``'eval'`` mode; None: inherit from
            an enclosing policy, else ``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``.
        target (nn.Module | None): apply only to the load into this module (e.g. not an EMA
            copy); None: the first load in the context.
        what (str | None): how the load is named in messages (``'load_from'``, ``'resume'``).
    """
    outer = _POLICY.get()
    if outer is not None:
        name = outer.name if name is None else name
        allow_partial = outer.allow_partial if allow_partial is None else allow_partial
    token = _POLICY.set(_Policy(mode, name, allow_partial, target, what))
    try:
        yield
    finally:
        _POLICY.reset(token)


def partial_load_allowed(allow_partial=None):
    """``allow_partial`` if given, else whether ``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``."""
    if allow_partial is not None:
        return bool(allow_partial)
    return os.environ.get(PARTIAL_ENV, '') == '1'


def unwrap_model(module):
    """The model inside model wrappers (DDP) and test-time-augmentation models."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(module) or isinstance(module, BaseTTAModel):
        module = module.module
    return module


_SIZE_MISMATCH = re.compile(r'size mismatch for (\S+): copying a param with shape (.+) from '
                            r'checkpoint, the shape in current model is (.+)\.')


def _load_with_report(module, state_dict):
    """Load ``state_dict`` into ``module`` as mmengine's ``load_state_dict`` does (same recursion,
    wrappers unwrapped at every level, torch's load hooks run) and report what did not fit."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    from mmengine.runner.checkpoint import _IncompatibleKeys
    missing, unexpected, errors = [], [], []
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = state_dict.copy()
    if metadata is not None:
        state_dict._metadata = metadata

    def load(mod, local_state_dict, prefix=''):
        if is_model_wrapper(mod) or isinstance(mod, BaseTTAModel):
            mod = mod.module
        local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
        mod._load_from_state_dict(local_state_dict, prefix, local_metadata, True, missing,
                                  unexpected, errors)
        for child_name, child in mod._modules.items():
            if child is not None:
                child_prefix = prefix + child_name + '.'
                load(child, {k: v for k, v in local_state_dict.items()
                             if k.startswith(child_prefix)}, child_prefix)
        incompatible = _IncompatibleKeys(missing, unexpected)
        for hook in getattr(mod, '_load_state_dict_post_hooks', {}).values():
            hook(mod, incompatible)

    load(module, state_dict)
    report = _LoadReport()
    report.missing = sorted(k for k in missing if 'num_batches_tracked' not in k)
    report.unexpected = sorted(unexpected)
    bad = set(report.missing)
    for err in errors:
        m = _SIZE_MISMATCH.search(str(err))
        if m:
            bad.add(m.group(1))
            ckpt_shape, model_shape = (re.sub(r'torch\.Size\(\[(.*)\]\)', r'(\1)', g)
                                       for g in m.group(2, 3))
            report.mismatched.append(f'{m.group(1)}: checkpoint {ckpt_shape} vs model {model_shape}')
        else:
            report.errors.append(str(err).strip())
    own = {k: v for k, v in unwrap_model(module).state_dict().items() if 'num_batches_tracked' not in k}
    report.total, report.total_numel = len(own), sum(v.numel() for v in own.values())
    loaded = [v for k, v in own.items() if k not in bad]
    report.loaded, report.loaded_numel = len(loaded), sum(v.numel() for v in loaded)
    return report


_OPT_IN = ('pass --allow-partial-load (tools/test.py, demo/image_demo.py, demo/cluster_demo.py), '
           'allow_partial_load=True (clusterseg.apis.init_inferencer / predict_and_draw), or set '
           f'{PARTIAL_ENV}=1 (any entry point, e.g. the stock inferencers)')


def _apply(policy, report, module, strict):
    import logging

    from mmengine.logging import print_log
    name = policy.name or 'the checkpoint'
    model = type(unwrap_model(module)).__name__
    if policy.mode == 'eval':
        if report.complete:
            return
        if partial_load_allowed(policy.allow_partial) and not strict:
            print_log(f'checkpoint {name} loaded PARTIALLY into {model} (allowed): '
                      f'{report.summary()}; the rest keeps its initial (random) values.\n'
                      f'{report.details()}', logger='current', level=logging.WARNING)
            return
        raise CheckpointMismatchError(
            f'checkpoint {name} does not fit the model {model}: {report.summary()}.\n'
            f'{report.details()}\nTesting or inference with it would use random weights for '
            'everything that did not load. Check that the checkpoint belongs to this config. To '
            f'accept a partial load on purpose, {_OPT_IN}.', name, report)
    what = policy.what or 'load_from'
    if (report.total and report.loaded_numel < NOTHING_LOADED * report.total_numel
            and not partial_load_allowed(policy.allow_partial)):
        raise CheckpointMismatchError(
            f'{what} {name}: (almost) nothing of the model {model} is in this checkpoint: '
            f'{report.summary()}, under {NOTHING_LOADED:.0%} of its values.\n{report.details()}\n'
            'Training would start from random weights although the config asks for these. Check '
            'that the checkpoint belongs to this model (or remove load_from); to load it anyway, '
            f'set {PARTIAL_ENV}=1.', name, report)
    if strict and not report.complete:
        raise CheckpointMismatchError(
            f'{what} {name} does not fit the model {model} (strict=True): {report.summary()}.\n'
            f'{report.details()}', name, report)
    if report.complete:
        print_log(f'{what} {name}: {report.summary()}.', logger='current', level=logging.INFO)
    else:
        print_log(f'{what} {name}: PARTIAL LOAD, {report.summary()}; the rest keeps its '
                  f'initial values.\n{report.details()}', logger='current', level=logging.WARNING)


def load_with_policy(module, state_dict, strict=False):
    """Load ``state_dict`` into ``module`` under the :func:`load_policy` of this context.

    Returns:
        bool: True when the policy applied (the load ran, and raised or logged as the policy
        says); False when no policy applies to this load (none set, already applied to an
        earlier load in the context, or one for another module): nothing was loaded.
    """
    policy = _POLICY.get()
    if policy is None or policy.applied or (
            policy.target is not None and unwrap_model(module) is not policy.target):
        return False
    policy.applied = True
    _apply(policy, _load_with_report(module, state_dict), module, strict)
    return True
