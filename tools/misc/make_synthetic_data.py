"""Generate the deterministic synthetic datasets in their real on-disk formats.

See :mod:`clusterseg.datasets.synthetic` for the layouts and class lists.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # from a checkout

from clusterseg.datasets import synthetic  # noqa: E402
from clusterseg.utils import progress as progress_utils  # noqa: E402

DEFAULT_OUT = dict(
    seg='data/synthetic_ade20k',
    det='data/synthetic_coco',
    panoptic='data/synthetic_coco',
    cls='data/synthetic_imagenet')
# (num_train, num_val, size); cls counts are per class
DEFAULTS = dict(
    seg=(80, 20, 128), det=(64, 16, 128), panoptic=(64, 16, 128), cls=(24, 6, 64))

EPILOG = """examples:
  # everything at the default sizes into data/synthetic_{ade20k,coco,imagenet}
  python tools/misc/make_synthetic_data.py --task all
  # a tiny non-square panoptic set (also writes the instances json)
  python tools/misc/make_synthetic_data.py --task panoptic --out /tmp/coco \\
      --num-train 8 --num-val 4 --size 96 160 --seed 1

--task det writes COCO instances only; --task panoptic writes panoptic and instances
for the same images; --task all runs seg, panoptic and cls. For --task all, --out is
the parent folder of synthetic_ade20k/, synthetic_coco/ and synthetic_imagenet/.
Progress (one bar per split) goes to stderr; --no-progress turns it off.
"""


def parse_args(argv=None):
    """Parse command line arguments.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: Parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Write deterministic synthetic ADE20K / COCO (instances + panoptic) / '
        'ImageNet format datasets.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--task', choices=['seg', 'det', 'panoptic', 'cls', 'all'], default='all',
        help='which dataset to write (default: all)')
    parser.add_argument(
        '--out', default=None,
        help='output root (default: data/synthetic_ade20k, data/synthetic_coco or '
        'data/synthetic_imagenet per task; for --task all the parent folder, default data)')
    parser.add_argument(
        '--num-train', type=int, default=None,
        help='training images (per class for cls); default seg 80, det/panoptic 64, cls 24')
    parser.add_argument(
        '--num-val', type=int, default=None,
        help='validation images (per class for cls); default seg 20, det/panoptic 16, cls 6')
    parser.add_argument(
        '--size', type=int, nargs='+', default=None, metavar='N',
        help='image size: H W, or one number for square images; default 128 (cls 64)')
    parser.add_argument('--seed', type=int, default=0, help='global seed (default 0)')
    parser.add_argument('--no-progress', '--quiet', dest='no_progress', action='store_true',
                        help=progress_utils.NO_PROGRESS_HELP)
    args = parser.parse_args(argv)
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error('--size takes one or two integers (H W)')
    return args


def make_progress(disabled):
    """Build the ``progress(iterable, desc)`` hook passed to the generators.

    Args:
        disabled (bool): Disable progress output.

    Returns:
        callable | None: The hook (one bar per split, on stderr), or None when disabled.
    """
    if disabled:
        return None

    def progress(iterable, desc):
        items = list(iterable)
        return progress_utils.track(items, desc=f'{desc} ({len(items)} images)')

    return progress


def run_task(task, out, args, progress):
    """Run one generator and return its summary."""
    num_train, num_val, size = DEFAULTS[task]
    size = args.size if args.size is not None else size
    if isinstance(size, list) and len(size) == 1:
        size = size[0]
    fn = dict(
        seg=synthetic.make_seg,
        det=synthetic.make_det,
        panoptic=synthetic.make_panoptic,
        cls=synthetic.make_cls)[task]
    return fn(
        out,
        num_train=num_train if args.num_train is None else args.num_train,
        num_val=num_val if args.num_val is None else args.num_val,
        size=size,
        seed=args.seed,
        progress=progress)


def main(argv=None):
    """Entry point."""
    args = parse_args(argv)
    progress = make_progress(args.no_progress)
    if args.task == 'all':
        parent = args.out or 'data'
        jobs = [(t, osp.join(parent, osp.basename(DEFAULT_OUT[t])))
                for t in ('seg', 'panoptic', 'cls')]
    else:
        jobs = [(args.task, args.out or DEFAULT_OUT[args.task])]
    t0 = time.time()
    summaries = []
    for task, out in jobs:
        summaries.append(run_task(task, out, args, progress))
    print('\nWritten:')
    for s in summaries:
        print(synthetic.summarise(s))
    print(f'done in {time.time() - t0:.1f}s (seed {args.seed})')


if __name__ == '__main__':
    main()
