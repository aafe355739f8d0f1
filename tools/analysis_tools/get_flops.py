"""Parameters and MACs ("FLOPs" in the papers' tables) of the model a config builds.

Counts convolutions, linear layers and all matrix products, attention included (see
clusterseg/utils/complexity.py for the rule).

Example:
    python tools/analysis_tools/get_flops.py configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py --shape 224 224
    python tools/analysis_tools/get_flops.py configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py --shape 512 512
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from clusterseg.engine import adapt_to_device, install  # noqa: E402
from clusterseg.utils.complexity import count_complexity  # noqa: E402


class TensorForward(nn.Module):
    """Wraps a downstream model so that a traced call runs its whole network on an image:
    backbone + neck + heads (mmseg: ``_forward``; mmdet: ``_forward`` with empty proposals;
    mmpretrain: backbone + neck + head)."""

    def __init__(self, model, scope):
        super().__init__()
        self.model, self.scope = model, scope

    def forward(self, x):
        m = self.model
        if self.scope == 'mmpretrain':
            feats = m.extract_feat(x)
            return m.head(feats) if m.with_head else feats
        if self.scope == 'mmseg':
            return m._forward(x)
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(img_shape=x.shape[-2:], pad_shape=x.shape[-2:],
                                             ori_shape=x.shape[-2:], scale_factor=(1., 1.),
                                             batch_input_shape=x.shape[-2:]))
        return m._forward(x, [sample])


def build_model(config, cfg_options=None):
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.default_scope)
    adapt_to_device(cfg, logger=lambda *a: None)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # no weight download for counting
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(cfg.model), cfg.default_scope


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     epilog='Example:' + __doc__.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of the model to count')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
                        help='input size (default 224 224)')
    parser.add_argument('--backbone-only', action='store_true', help='count the backbone alone')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.backbone.arch=small')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py)
    model, scope = build_model(args.config, args.cfg_options)
    net = model.backbone if args.backbone_only else TensorForward(model, scope)
    x = torch.randn(1, 3, *args.shape)
    r = count_complexity(net, (x, ))
    print(f'config : {args.config}')
    print(f'input  : 1x3x{args.shape[0]}x{args.shape[1]}' + (' (backbone only)' if args.backbone_only else ''))
    print(f'params : {r["params"] / 1e6:.2f} M')
    print(f'MACs   : {r["macs"] / 1e9:.2f} G  (conv + linear + matmul incl. attention)')
    return r


if __name__ == '__main__':
    main()
