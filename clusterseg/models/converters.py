"""Key-layout conversion of published checkpoints into clusterseg models."""
from collections import OrderedDict

from clusterseg.utils.state_dict import unwrap_state_dict


def timm_classifier_to_clusterseg(checkpoint):
    """Convert a classifier checkpoint in the raw timm layout to clusterseg's mmpretrain layout.

    - Raw ``{stem/stage keys} + head.*`` state dicts (the released ImageNet checkpoints of
      PaCa-ViT and ClusTR, whose backbone keys equal clusterseg's) become ``backbone.*`` and
      ``head.fc.*`` (mmpretrain ``ImageClassifier`` + ``LinearClsHead``).
    - mmdet / mmseg / mmpretrain checkpoints already use ``backbone.* / neck.* / decode_head.*``
      names; they pass through unchanged.

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


def pacavit_official_to_clusterseg(checkpoint):
    """An official PaCa-ViT checkpoint (spec pacavit.md §5; iVMCL/PaCaViT ``models/paca_vit.py``
    keys, teacher variants included) -> clusterseg (:func:`timm_classifier_to_clusterseg`)."""
    return timm_classifier_to_clusterseg(checkpoint)


def clustr_official_to_clusterseg(checkpoint):
    """A checkpoint of the reference ClusTR classifier (YtongXie/ClusTR ``ClusTR.py``:
    ``patch_embed{i} / block{i} / norm{i} / head``) -> clusterseg
    (:func:`timm_classifier_to_clusterseg`)."""
    return timm_classifier_to_clusterseg(checkpoint)


def converter_parser(description, doc):
    """The command line of the timm-layout converters: ``SRC DST [--config C] [--no-progress]``;
    ``doc`` (the tool's docstring) supplies the ``Example:`` section of ``--help``."""
    import argparse

    from clusterseg.utils.progress import add_progress_argument
    parser = argparse.ArgumentParser(description=description, epilog='Example:' + doc.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--config', help='a clusterseg config whose model must accept the weights')
    add_progress_argument(parser)
    return parser


def run_timm_conversion(tool, args, convert):
    """Run a converter parsed by :func:`converter_parser` (safe loading of ``args.src``)."""
    from clusterseg.utils.checkpoint import safe_torch_load
    return run_conversion(tool, args.src, args.dst, load=lambda path: safe_torch_load(path, map_location='cpu'),
                          convert=convert, config=args.config, progress=not args.no_progress)


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
