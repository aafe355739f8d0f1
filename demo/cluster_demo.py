"""Show the learned clusters next to the prediction, as one PNG.

Panels, left to right: the model's drawn prediction (as demo/image_demo.py makes it), each
PaCa-ViT stage's patch-to-cluster assignment (argmax over the M clusters, one colour per
cluster) or ClusTR's density-peaks clusters, a PaCa head's per-class clusters, and kMaX-DeepLab's
k-means clusters (each pixel's argmax over the object queries in the last decoder layer).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

EXAMPLE = """example:
  python demo/cluster_demo.py demo.jpg \\
      configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py \\
      work_dirs/pacahead_pacavit-tiny/iter_160000.pth --out-file clusters.png
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config of a model with clusters (PaCa-ViT, ClusTR, PaCa head, '
                        'kMaX-DeepLab)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', required=True, help='where to write the PNG')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--allow-partial-load', action='store_true',
                        help='accept a checkpoint that does not fit the model (what does not load '
                             'keeps random weights); without it such a checkpoint is an error')
    parser.add_argument('--height', type=int, default=256, help='panel height in pixels')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection/instance score threshold for drawing')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmcv

    from clusterseg.apis import draw_prediction, inference_model, init_inferencer
    from clusterseg.visualization import cluster_maps, compose_panels
    if not osp.isfile(args.img):
        raise SystemExit(f'image not found: {args.img}')
    inferencer = init_inferencer(args.config, args.checkpoint, args.device,
                                 allow_partial_load=args.allow_partial_load or None)
    try:
        maps = cluster_maps(inferencer, args.img)
    except ValueError as e:
        raise SystemExit(str(e))
    sample = inference_model(inferencer, args.img)
    vis = draw_prediction(inferencer, args.img, sample, args.score_thr)
    os.makedirs(osp.dirname(osp.abspath(args.out_file)), exist_ok=True)
    mmcv.imwrite(mmcv.rgb2bgr(compose_panels(vis, maps, args.height)), args.out_file)
    print(f'prediction and {len(maps)} cluster maps ({", ".join(t for t, _ in maps)}) '
          f'written to {args.out_file}')


if __name__ == '__main__':
    main()
