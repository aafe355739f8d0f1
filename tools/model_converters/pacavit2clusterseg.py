"""Convert an official PaCa-ViT checkpoint (ImageNet, COCO or ADE20K; teacher variants included) to clusterseg's layout.

Example:
    python tools/model_converters/pacavit2clusterseg.py \\
        IMNET_224_pacavit_tiny_p2cconv_100_0.pth pacavit-tiny_in1k.pth \\
        --config configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py

With --config the converted weights are checked against the model the config builds, and a
mismatch lists the missing, unexpected and mis-shaped keys. A progress bar over the steps (read,
convert, check, write) goes to stderr (--no-progress: none).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.engine import install  # noqa: E402
from clusterseg.models.converters import (converter_parser, pacavit_official_to_clusterseg,  # noqa: E402
                                          run_timm_conversion)


def parse_args(argv=None):
    return converter_parser('Convert official PaCa-ViT weights to clusterseg keys.', __doc__).parse_args(argv)


def main(argv=None):
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py)
    return run_timm_conversion('pacavit2clusterseg', parse_args(argv), pacavit_official_to_clusterseg)


if __name__ == '__main__':
    main()
