"""Key-layout conversion of published checkpoints into clusterseg models."""
import re
from collections import OrderedDict

import numpy as np
import torch

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


# kMaX-DeepLab (detectron2 port) -> clusterseg: tools/model_converters/kmax_d2_to_clusterseg.py
_ASPP = {'_aspp_conv0': 'aspp_conv0', '_aspp_conv1': 'aspp_dilated.0', '_aspp_conv2': 'aspp_dilated.1',
         '_aspp_conv3': 'aspp_dilated.2', '_aspp_pool': 'aspp_pool', '_proj_conv_bn_act': 'proj_conv_bn_act'}
_OS = {'os8': 0, 'os4': 1}


def _resnet_key(key):
    """detectron2 ResNet -> mmdet ResNet(style='pytorch')."""
    m = re.match(r'stem\.conv1\.(weight|norm\.(.+))$', key)
    if m:
        return 'conv1.weight' if m.group(1) == 'weight' else f'bn1.{m.group(2)}'
    m = re.match(r'res(\d)\.(\d+)\.(conv\d|shortcut)\.(weight|norm\.(.+))$', key)
    if not m:
        return None
    stage, block, conv, _, norm_param = m.groups()
    prefix = f'layer{int(stage) - 1}.{block}.'
    if conv == 'shortcut':
        return prefix + ('downsample.0.weight' if norm_param is None else f'downsample.1.{norm_param}')
    n = conv[-1]
    return prefix + (f'conv{n}.weight' if norm_param is None else f'bn{n}.{norm_param}')


def _convnext_key(key):
    """kMaX's D2ConvNeXt -> mmpretrain ConvNeXt."""
    key = key.replace('.dwconv.', '.depthwise_conv.').replace('.pwconv1.', '.pointwise_conv1.')
    return key.replace('.pwconv2.', '.pointwise_conv2.')


def _head_key(key):
    """``sem_seg_head.*`` (without the prefix) -> clusterseg head key, or None if unknown."""
    key = key.replace('_predcitor', '_predictor')
    if key.startswith('predictor._auxiliary_semantic_predictor.'):
        rest = key[len('predictor._auxiliary_semantic_predictor.'):]
        m = re.match(r'_aspp\.(_aspp_conv\d|_aspp_pool|_proj_conv_bn_act)\.(.+)$', rest)
        if m:
            return f'aux_semantic_head.aspp.{_ASPP[m.group(1)]}.{m.group(2)}'
        m = re.match(r'_low_level_projection_(os\d)\.(.+)$', rest)
        if m:
            return f'aux_semantic_head.low_level_projection.{_OS[m.group(1)]}.{m.group(2)}'
        m = re.match(r'_low_level_fusion_(os\d)_conv(\d)_bn_act\.(.+)$', rest)
        if m:
            return f'aux_semantic_head.low_level_fusion_conv{m.group(2)}.{_OS[m.group(1)]}.{m.group(3)}'
        return 'aux_semantic_head.' + rest.lstrip('_')
    if key.startswith('pixel_decoder.'):
        new = 'pixel_decoder.' + '.'.join(p.lstrip('_') for p in key.split('.')[1:])
        new = new.replace('.attention.height_axis.batch_norm_qkv.', '.attention.height_axis.qkv_transform.norm.')
        new = new.replace('.attention.width_axis.batch_norm_qkv.', '.attention.width_axis.qkv_transform.norm.')
        return new
    if key.startswith('predictor.'):
        return 'transformer_decoder.' + '.'.join(p.lstrip('_') for p in key.split('.')[1:])
    return None


def kmax_d2_to_clusterseg(state, head_prefix='panoptic_head'):
    """A kMaX-DeepLab detectron2 state dict (bytedance/kmax-deeplab, spec kmax.md §6; ``.pkl``
    numpy arrays included) -> clusterseg's keys under ``head_prefix`` (``'panoptic_head'``: mmdet
    ``KMaXDeepLab``; ``'decode_head'``: mmseg ``KMaXSegHead``).

    Returns:
        tuple[OrderedDict, list[str]]: the converted state dict, and the source keys that were
        not recognised.
    """
    out, unknown = OrderedDict(), []
    is_convnext = any(k.startswith('backbone.downsample_layers.') for k in state)
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if key in ('pixel_mean', 'pixel_std'):
            continue
        if key.startswith('backbone.'):
            sub = key[len('backbone.'):]
            new = _convnext_key(sub) if is_convnext else _resnet_key(sub)
            new = None if new is None else 'backbone.' + new
        elif key.startswith('sem_seg_head.'):
            new = _head_key(key[len('sem_seg_head.'):])
            new = None if new is None else f'{head_prefix}.{new}'
        else:
            new = None
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    # TF-converted weights (convert-tf-weights-to-d2.py) carry no BN step counter: TF has none.
    # Add it so the result loads strictly (the counter is only read with momentum=None).
    for key in [k for k in out if k.endswith('.running_mean')]:
        out.setdefault(key[:-len('running_mean')] + 'num_batches_tracked', torch.tensor(0))
    return out, unknown


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
