"""Convert an official PaCa-ViT checkpoint (ImageNet, COCO or ADE20K) to clusterseg's layout.

Example:
    python tools/model_converters/pacavit2clusterseg.py \\
        IMNET_224_pacavit_tiny_p2cconv_100_0.pth pacavit-tiny_in1k.pth \\
        --config configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py

With --config the converted weights are checked against the model the config builds, and a
mismatch lists the missing, unexpected and mis-shaped keys. A progress bar over the steps (read,
convert, check, write) goes to stderr (--no-progress: none).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

import clusterseg  # noqa: E402,F401  (safe checkpoint loading)
from clusterseg.models.converters import pacavit_official_to_clusterseg  # noqa: E402
from clusterseg.utils.checkpoint import safe_torch_load  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert official PaCa-ViT weights to clusterseg keys.',
        epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--config', help='a clusterseg config whose model must accept the weights')
    add_progress_argument(parser)
    return parser.parse_args(argv)


def check_against_config(state, config):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from clusterseg.utils.state_dict import check_state_dict_fits
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    scope_registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    model = scope_registry.MODELS.build(cfg.model)
    check_state_dict_fits(model.state_dict(), state, name=f'converted weights -> {config}')


def main(argv=None):
    args = parse_args(argv)
    steps = 4 if args.config else 3  # read, convert, (check), write
    with Progress(steps, 'conversion steps', enabled=not args.no_progress) as bar:
        echo(f'[pacavit2clusterseg] reading {args.src}')
        official = safe_torch_load(args.src, map_location='cpu')
        bar.update()
        state = pacavit_official_to_clusterseg(official)
        bar.update()
        if args.config:
            check_against_config(state, args.config)
            bar.update()
            echo(f'[pacavit2clusterseg] {len(state)} tensors fit {args.config}')
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        torch.save({'state_dict': state, 'meta': {'converted_from': osp.basename(args.src)}}, args.dst)
        bar.update()
    print(f'[pacavit2clusterseg] wrote {len(state)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
