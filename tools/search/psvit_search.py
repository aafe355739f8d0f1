"""PSViT architecture search: train a weight-sharing supernet once, then search the compact set
of pooling positions and attention-sharing masks under a FLOPs budget, and write a config.

The command line of clusterseg/search/ (search space, supernet, candidate costs, exhaustive /
evolutionary search; the steps are described in clusterseg/search/pipeline.py): the supernet is
trained on an ImageNet-layout set (meta/train.txt), candidates within the budget (MACs of the
PSViT classifier they describe, our counter, at --img-size or --flops-shape) are scored on
meta/val.txt with the inherited weights, exhaustively when the set is small (--search auto), else
by evolution, and the best is written as a config inheriting --base-config (retrain it, or start
from the inherited weights with --export-weights and ``load_from``), with search_results.json.

Progress bars (supernet steps, MACs counting, candidate scoring) go to stderr; the log lines on
stdout and the written files are the same with --no-progress.

Example:
    python tools/misc/make_synthetic_data.py --task cls --out data/synthetic_imagenet
    python tools/search/psvit_search.py --data-root data/synthetic_imagenet \\
        --work-dir work_dirs/psvit_search --flops-budget 40 --epochs 10
    python tools/train.py work_dirs/psvit_search/psvit-searched_1xb32-10e_synthetic-imagenet-64px.py
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from clusterseg.engine import install  # noqa: E402
from clusterseg.search import NoCandidateError  # noqa: E402
from clusterseg.search.pipeline import run  # noqa: E402
from clusterseg.utils.progress import add_progress_argument  # noqa: E402

DEFAULT_BASE = 'configs/psvit/psvit-tiny_1xb32-10e_synthetic-imagenet-64px.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                epilog='Example:' + __doc__.split('Example:')[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', required=True, help='ImageNet-layout root with meta/{train,val}.txt')
    p.add_argument('--work-dir', required=True, help='supernet checkpoint, results and the config go here')
    p.add_argument('--flops-budget', type=float, required=True, help='MACs budget in M (our counter)')
    p.add_argument('--flops-shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='input size for counting (default: --img-size)')
    g = p.add_argument_group('supernet')
    g.add_argument('--embed-dims', type=int, nargs='+', default=[32, 64, 96])
    g.add_argument('--num-heads', type=int, nargs='+', default=[1, 2, 3])
    g.add_argument('--depth', type=int, default=6)
    g.add_argument('--patch-size', type=int, default=8)
    g.add_argument('--img-size', type=int, default=56)
    g.add_argument('--pool-type', default='dwconv', choices=['max', 'avg', 'dwconv'])
    g.add_argument('--pool-candidates', type=int, nargs='+', default=None,
                   help='layers after which a pooling may sit (default: all)')
    g.add_argument('--max-share-chain', type=int, default=1,
                   help='most consecutive layers reusing one attention map')
    g.add_argument('--epochs', type=int, default=10)
    g.add_argument('--batch-size', type=int, default=32)
    g.add_argument('--lr', type=float, default=2e-3)
    g.add_argument('--supernet-ckpt', default=None, help='skip training: load this supernet')
    s = p.add_argument_group('search')
    s.add_argument('--search', default='auto', choices=['auto', 'exhaustive', 'evolution'])
    s.add_argument('--population', type=int, default=16)
    s.add_argument('--generations', type=int, default=5)
    s.add_argument('--parents', type=int, default=4)
    s.add_argument('--mutation-prob', type=float, default=0.3)
    o = p.add_argument_group('output')
    o.add_argument('--base-config', default=DEFAULT_BASE, help='config the written one inherits')
    o.add_argument('--out-config', default=None, help='path of the written config')
    o.add_argument('--export-weights', action='store_true',
                   help='also save the chosen subnet\'s inherited weights (mmpretrain layout)')
    p.add_argument('--seed', type=int, default=0)
    add_progress_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.embed_dims) != len(args.num_heads):
        raise SystemExit('--embed-dims and --num-heads need one entry per stage')
    install()  # clusterseg's runtime safety (clusterseg/engine/patches.py)
    try:
        return run(args, repo=REPO)
    except NoCandidateError as e:
        raise SystemExit(str(e)) from None


if __name__ == '__main__':
    main()
