"""Convert an official ClusTR checkpoint (the reference ImageNet classifier) to clusterseg's layout.

The reference's ``head.*`` becomes mmpretrain's ``head.fc.*``; the backbone keys are the same.

Example:
    python tools/model_converters/clustr2clusterseg.py \\
        ClusTR_b2.pth clustr-small_in1k.pth \\
        --config configs/clustr/clustr-small_8xb128-300e_in1k.py

With --config the converted weights are checked against the model the config builds, and a
mismatch lists the missing, unexpected and mis-shaped keys. A progress bar over the steps (read,
convert, check, write) goes to stderr (--no-progress: none).
The reference (YtongXie/ClusTR ClusTR.py) saves the raw state dict or {"model": ...}; both work.
Its b1 / b2 / b3 are clusterseg's tiny / small / base.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.engine import install  # noqa: E402
from clusterseg.models.converters import (converter_parser, clustr_official_to_clusterseg,  # noqa: E402
                                          run_timm_conversion)


def parse_args(argv=None):
    return converter_parser('Convert official ClusTR weights to clusterseg keys.', __doc__).parse_args(argv)


def main(argv=None):
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py)
    return run_timm_conversion('clustr2clusterseg', parse_args(argv), clustr_official_to_clusterseg)


if __name__ == '__main__':
    main()
