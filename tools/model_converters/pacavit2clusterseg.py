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
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


import clusterseg  # noqa: E402,F401  (safe checkpoint loading)
from clusterseg.models.converters import (pacavit_official_to_clusterseg,  # noqa: E402
                                          run_conversion)
from clusterseg.utils.checkpoint import safe_torch_load  # noqa: E402
from clusterseg.utils.progress import add_progress_argument  # noqa: E402


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


def main(argv=None):
    args = parse_args(argv)
    run_conversion('pacavit2clusterseg', args.src, args.dst,
                   load=lambda path: safe_torch_load(path, map_location='cpu'),
                   convert=pacavit_official_to_clusterseg, config=args.config,
                   progress=not args.no_progress)


if __name__ == '__main__':
    main()
