"""Forward + backward of the depth-wise convs of PaCa-ViT: F.conv2d against depthwise_conv2d.

What it builds: for each (batch, channels, grid, kernel) point, the (B, C, H, W) channels-last
view of (B, H*W, C) tokens that the backbones pass, a (C, 1, k, k) kernel and a bias. What it
compares, in one process, the two interleaved on the same tensors: ``F.conv2d`` (oneDNN's forward
and backward) against :func:`clusterseg.models.layers.dwconv.depthwise_conv2d` (the same forward;
for k >= 5 the backward as depth-wise convs, the weight gradient from the stacked padded planes),
as process CPU time of forward + backward (best of --repeat after a warm-up, the shared
harness's ``best_of_interleaved``, each point in its own process by ``run_isolated``), their
ratio (> 1: ours is faster) and the largest difference of the three gradients relative to their
largest value. The default points are PaCa-ViT-tiny's at 512 px: the 7x7 clustering conv of
stages 1-3 and the Mix-FFN's 3x3 conv (on 4C channels) of stages 1-3.

Example:
    python tools/analysis_tools/benchmark_dwconv.py --batch-sizes 1 8 --threads 1
    python tools/analysis_tools/benchmark_dwconv.py --points 96x128x7 --repeat 3   # one shape
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.utils import benchmark as bm  # noqa: E402

# PaCa-ViT-tiny at 512 px: channels x grid x kernel (clustering 7x7 on C, Mix-FFN 3x3 on 4C)
DEFAULT_POINTS = ('96x128x7', '192x64x7', '320x32x7', '384x128x3', '768x64x3', '1280x32x3')


def _point(text):
    try:
        C, H, k = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--points: expected CxHxK (e.g. 96x128x7), got {text!r}')
    if min(C, H, k) < 1:
        raise argparse.ArgumentTypeError(f'--points: C, H and K must be >= 1, got {text!r}')
    return C, H, k


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     epilog='Example:' + __doc__.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--points', type=_point, nargs='+', default=[_point(p) for p in DEFAULT_POINTS],
                        metavar='CxHxK', help='channels x square grid x kernel size')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1], help='batch sizes')
    parser.add_argument('--repeat', type=int, default=5, help='timed calls of each (best kept)')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    return parser.parse_args(argv)


def measure(B, C, H, k, repeat):
    """Worker (one point, in its own process): ``dict(stock_s, ours_s, grad_rel_diff)``."""
    import torch
    import torch.nn.functional as F

    from clusterseg.models.layers.dwconv import depthwise_conv2d
    tokens = torch.randn(B, H * H, C, requires_grad=True)
    w = torch.randn(C, 1, k, k, requires_grad=True)
    b = torch.randn(C, requires_grad=True)
    g = torch.randn(B, H * H, C)

    def step(conv):
        x = tokens.view(B, H, H, C).permute(0, 3, 1, 2)  # channels-last view, as the backbones
        y = conv(x).permute(0, 2, 3, 1).reshape(B, H * H, C)
        return torch.autograd.grad(y, (tokens, w, b), g)

    stock = lambda x: F.conv2d(x, w, b, 1, k // 2, 1, C)  # noqa: E731
    ours = lambda x: depthwise_conv2d(x, w, b)  # noqa: E731
    ref, got = step(stock), step(ours)
    diff = max(((a - r).abs().max() / r.abs().max().clamp_min(1e-30)).item() for a, r in zip(got, ref))
    best = bm.best_of_interleaved({'stock': lambda: step(stock), 'ours': lambda: step(ours)},
                                  repeat=repeat, warmup=1, clock=time.process_time)
    return dict(stock_s=best['stock'], ours_s=best['ours'], grad_rel_diff=diff)


def main(argv=None):
    args = parse_args(argv)
    print(f'depth-wise conv, forward + backward, process CPU time at {args.threads} thread(s), '
          f'best of {args.repeat}; ratio = F.conv2d / depthwise_conv2d (> 1: ours is faster)')
    print(f"{'B':>3} {'C':>5} {'HxW':>9} {'k':>2}  {'F.conv2d':>10} {'ours':>10} {'ratio':>7}  "
          'max rel grad diff')
    rows = []
    for B in args.batch_sizes:
        for C, H, k in args.points:
            r = bm.run_isolated(measure, dict(B=B, C=C, H=H, k=k, repeat=args.repeat),
                                name=f'depth-wise conv B={B} C={C} {H}x{H} k={k}', threads=args.threads)
            stock, ours = r['stock_s'], r['ours_s']
            rows.append(dict(batch=B, channels=C, size=H, kernel=k, ratio=stock / ours, **r))
            print(f'{B:>3} {C:>5} {f"{H}x{H}":>9} {k:>2}  {stock * 1e3:>8.1f}ms {ours * 1e3:>8.1f}ms '
                  f'{stock / ours:>6.2f}x  {r["grad_rel_diff"]:.1e}', flush=True)
    return rows


if __name__ == '__main__':
    main()
