"""Key-layout conversion of published checkpoints into clusterseg models."""
from collections import OrderedDict

from clusterseg.utils.state_dict import unwrap_state_dict


def pacavit_official_to_clusterseg(checkpoint):
    """Convert an official PaCa-ViT checkpoint (spec pacavit.md §5) to clusterseg's layout.

    - ImageNet (timm) checkpoints: raw ``patch_embed.* / stage{i}.* / head.*`` keys become
      ``backbone.*`` and ``head.fc.*`` (mmpretrain ``ImageClassifier`` + ``LinearClsHead``).
    - mmdet / mmseg checkpoints already use ``backbone.* / neck.* / decode_head.*`` names that
      match clusterseg's modules (backbone and PaCa head); they pass through unchanged.

    Args:
        checkpoint (dict): a loaded checkpoint (raw state dict or wrapped in ``state_dict`` /
            ``model``).

    Returns:
        OrderedDict: the converted state dict.
    """
    state = unwrap_state_dict(checkpoint)
    if any(k.startswith(('backbone.', 'decode_head.', 'neck.', 'roi_head.')) for k in state):
        return OrderedDict(state)
    out = OrderedDict()
    for k, v in state.items():
        if k.startswith('head.'):
            out['head.fc.' + k[len('head.'):]] = v
        else:
            out['backbone.' + k] = v
    return out


def check_against_config(state, config):
    """Build the model of ``config`` (without its pretrained init) and check that ``state`` fits
    it exactly; a mismatch raises listing the missing, unexpected and mis-shaped keys."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import clusterseg.models  # noqa: F401  (registers the modules)
    from clusterseg.utils.state_dict import check_state_dict_fits
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    scope_registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    model = scope_registry.MODELS.build(cfg.model)
    check_state_dict_fits(model.state_dict(), state, name=f'converted weights -> {config}')


def run_conversion(tool, src, dst, load, convert, config=None, progress=True):
    """What the converter tools do: read ``src`` with ``load``, map it with ``convert`` (returns a
    state dict), check it against ``config`` if given, and write ``{'state_dict', 'meta'}`` to
    ``dst``; progress over these steps goes to stderr. Returns the state dict."""
    import os
    import os.path as osp

    import torch

    from clusterseg.utils.progress import Progress, echo
    with Progress(4 if config else 3, 'conversion steps', enabled=progress) as bar:
        echo(f'[{tool}] reading {src}')
        loaded = load(src)
        bar.update()
        state = convert(loaded)
        bar.update()
        if config:
            check_against_config(state, config)
            bar.update()
            echo(f'[{tool}] {len(state)} tensors fit {config}')
        os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
        torch.save({'state_dict': state, 'meta': {'converted_from': osp.basename(src)}}, dst)
        bar.update()
    print(f'[{tool}] wrote {len(state)} tensors to {dst}')
    return state
