"""Export a clusterseg model (config + checkpoint) to ONNX, optionally checked with onnxruntime.

The ONNX graph takes the preprocessed batch ``input`` (B, 3, H, W): normalised, and for kMaX
padded to its fixed size (what the config's data preprocessor hands the network). Outputs:
classifiers ``logits``; segmentors ``seg_logits`` (kMaX: ``seg_scores``) at the input size;
kMaX-DeepLab panoptic ``class_logits`` and ``mask_logits`` (the mask fusion stays in Python:
clusterseg.deploy.onnx.panoptic_postprocess); ``--backbone-only``: the backbone's feature maps
``feat0``, ``feat1``, ... The checkpoint must fit the model (strict load).

Per model family (docs/en/deployment.md): PaCa-ViT and PSViT models export with ``--dynamic``
(any H, W, batch); ClusTR exports at one size (its cluster counts follow the token count);
kMaX at its fixed input size only; Mask R-CNN only with ``--backbone-only``.

example:
  python tools/deployment/pytorch2onnx.py \\
      configs/pacavit/pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py work_dirs/paca/iter_160000.pth \\
      --shape 512 512 --dynamic --verify --out work_dirs/paca/pacahead_pacavit-tiny.onnx
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__[__doc__.index('The ONNX graph'):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file or model name of model-index.yml')
    parser.add_argument('checkpoint', help="checkpoint file (or 'none': random weights, for trying "
                                           'an export)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), required=True,
                        help='input height and width of the traced graph')
    parser.add_argument('--batch-size', type=int, default=1, help='batch of the traced input')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width (where the model allows it)')
    parser.add_argument('--backbone-only', action='store_true', help='export the backbone alone')
    parser.add_argument('--out', default=None, help='output file (default: CONFIG_NAME.onnx here)')
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with PyTorch on a random input (and, with '
                             '--dynamic, on a second size) and print max|diff|')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='--verify fails (exit 1) above this max|diff|')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 16)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config settings, e.g. model.backbone.num_clusters=[49,49,49,0]')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if any(s <= 0 for s in args.shape):
        parser.error(f'--shape must be two positive ints H W, got {args.shape[0]} {args.shape[1]}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    import clusterseg  # noqa: F401
    from clusterseg.deploy.onnx import ExportError, build_model_for_export, export_onnx, verify_onnx
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint) and '://' not in checkpoint:
        sys.exit(f'error: checkpoint {checkpoint} not found')
    out = args.out or osp.splitext(osp.basename(args.config))[0] + ('_backbone' if args.backbone_only else '') + '.onnx'
    model = build_model_for_export(args.config, checkpoint, args.cfg_options)
    shape = tuple(args.shape)
    try:
        wrapper = export_onnx(model, out, shape, args.batch_size, dynamic=args.dynamic,
                              backbone_only=args.backbone_only, opset=args.opset)
    except ExportError as e:
        sys.exit(f'error: {e}')
    print(f'wrote {out} (opset {args.opset}, input {args.batch_size}x3x{shape[0]}x{shape[1]}'
          f'{", dynamic batch/H/W" if args.dynamic else ""}; outputs {", ".join(wrapper.output_names)})')
    if not args.verify:
        return 0
    torch.manual_seed(0)
    checks = [(args.batch_size, shape)]
    if args.dynamic:  # another batch and size than the traced one
        checks.append((args.batch_size + 1, (shape[0] + 32, shape[1] + 64)))
    worst = 0.
    for b, (h, w) in checks:
        diff = verify_onnx(wrapper, out, torch.randn(b, 3, h, w))
        worst = max(worst, diff)
        print(f'onnxruntime vs PyTorch at {b}x3x{h}x{w}: max|diff| = {diff:.3g}')
    if worst > args.tolerance:
        print(f'error: max|diff| {worst:.3g} > --tolerance {args.tolerance:g}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
