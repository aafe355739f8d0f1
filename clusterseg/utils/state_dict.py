"""Loading pretrained state dicts into a module, with errors that list what does not fit."""
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
