"""Convert a kMaX-DeepLab PyTorch (detectron2) checkpoint to clusterseg's mmdet / mmseg layout.

The official PyTorch port (bytedance/kmax-deeplab) saves ``{'model': state_dict}`` (``.pth``) or
TF-converted ``{'model': {name: ndarray}}`` (``.pkl``). Key layout: spec kmax.md §6. The head's
module names here are the port's minus the leading underscores (and ``_predcitor`` ->
``predictor``), so most keys are a rename; the ResNet-50 backbone follows the standard
detectron2 -> mmdet rules, ConvNeXt the detectron2 -> mmpretrain ones.

Example:
    python tools/model_converters/kmax_d2_to_clusterseg.py \\
        kmax_r50.pth kmax-deeplab_r50_coco-panoptic.pth \\
        --config configs/kmax_deeplab/kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py

``--head-prefix decode_head`` writes mmseg keys (``KMaXSegHead``) instead of mmdet's
``panoptic_head``. With --config the converted weights are checked against the model the config
builds, and a mismatch lists the missing, unexpected and mis-shaped keys. A progress bar over the
steps (read, convert, check, write) goes to stderr (--no-progress: none).
Class order: COCO's detectron2 contiguous order (80 things, 53 stuff, void) is mmdet's, so no
permutation is applied; TF-converted ADE20K / Cityscapes classifiers must be permuted first.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clusterseg  # noqa: E402,F401  (safe checkpoint loading)
from clusterseg.utils.checkpoint import safe_pickle_load, safe_torch_load  # noqa: E402
from clusterseg.models.converters import check_against_config, run_conversion  # noqa: E402,F401
from clusterseg.utils.progress import add_progress_argument  # noqa: E402

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


def convert(state, head_prefix='panoptic_head'):
    """Return (converted OrderedDict, list of source keys that were not recognised)."""
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


def load_d2_checkpoint(path):
    if path.endswith('.pkl'):
        ckpt = safe_pickle_load(path)  # allowlisted: numpy arrays, dicts
    else:
        ckpt = safe_torch_load(path, map_location='cpu')
    return ckpt.get('model', ckpt)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert kMaX-DeepLab detectron2 weights to clusterseg keys.',
        epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='detectron2 checkpoint (.pth, or TF-converted .pkl)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--config', help='a clusterseg config whose model must accept the weights')
    parser.add_argument('--head-prefix', default='panoptic_head',
                        help="'panoptic_head' (mmdet KMaXDeepLab) or 'decode_head' (mmseg KMaXSegHead)")
    add_progress_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def convert_all(d2_state):
        state, unknown = convert(d2_state, args.head_prefix)
        if unknown:
            shown = '\n  '.join(unknown[:40])
            raise SystemExit(f'[kmax_d2_to_clusterseg] {len(unknown)} keys have no mapping:\n  {shown}')
        return state

    run_conversion('kmax_d2_to_clusterseg', args.src, args.dst, load=load_d2_checkpoint,
                   convert=convert_all, config=args.config, progress=not args.no_progress)


if __name__ == '__main__':
    main()
