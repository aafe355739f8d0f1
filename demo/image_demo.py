"""Predict one image with any clusterseg config + checkpoint and write the drawn prediction.

The task (semantic segmentation, detection/instance segmentation, panoptic segmentation or
classification) comes from the config's ``default_scope``; the drawing is the one mmseg, mmdet or
mmpretrain's own inferencer makes.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

EXAMPLE = """example:
  python demo/image_demo.py demo.jpg \\
      configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py \\
      work_dirs/pacahead_pacavit-tiny/iter_160000.pth --out-file vis.png --device cuda:0
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='model config (its default_scope names the task)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', required=True, help='where to write the drawn prediction')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='accept a checkpoint that does not fit the model (what does not load '
                             'keeps random weights); without it such a checkpoint is an error')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection/instance score threshold for drawing')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from clusterseg.apis import get_task, predict_and_draw
    if not osp.isfile(args.img):
        raise SystemExit(f'image not found: {args.img}')
    out_dir = osp.dirname(osp.abspath(args.out_file))
    os.makedirs(out_dir, exist_ok=True)
    predict_and_draw(args.config, args.checkpoint, args.img, device=args.device,
                     out_file=args.out_file, score_thr=args.score_thr,
                     allow_partial_load=args.allow_partial_load or None)
    print(f'{get_task(args.config)} prediction drawn to {args.out_file}')


if __name__ == '__main__':
    main()
