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
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.engine import install  # noqa: E402
from clusterseg.utils.checkpoint import safe_pickle_load, safe_torch_load  # noqa: E402
from clusterseg.models.converters import (check_against_config, kmax_d2_to_clusterseg,  # noqa: E402,F401
                                          run_conversion)
from clusterseg.utils.progress import add_progress_argument  # noqa: E402

# the key mapping lives in the package (clusterseg.apis.get_model converts on the fly with it)
convert = kmax_d2_to_clusterseg


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
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py)

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
