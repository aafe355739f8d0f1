"""Speed and memory of the PaCa-ViT-tiny backbone against its global-MHSA variant and peer backbones.

What it builds: PaCa-ViT-tiny, the same network with global MHSA in every stage instead of
patch-to-cluster attention (``num_clusters=[0, 0, 0, 0]``), and the peers MiT-b1 (mmseg) and
PVTv2-b1 (mmdet), as ``tools/analysis_tools/benchmark.py`` builds them. What it compares:
ratios against PaCa-ViT-tiny (time and peak memory), time(1024)/time(512), the GEMM fraction of
PaCa-ViT-tiny at 512 px (goal >= 0.5), the peak-memory saving of ``with_cp`` in train mode, and a
profile of where the PaCa-ViT-tiny forward spends its time.

Measured with the shared harness (``clusterseg.utils.benchmark``; see ``benchmark.py --help``):
every (model, size, batch) point in its own fresh process, time = best of --repeat calls after
one warm-up, GFLOP by FlopCounterMode (train: 3x the forward), GEMM fraction against this
machine's fp32 GEMM measured in the same run, peak memory = growth of the worker's resident set
over the timed calls (CPU). Global MHSA is quadratic in the stage-1 tokens: above 128 x 128 of them it
is skipped. A progress bar over the points goes to stderr (--no-progress: none).

Example:
    python tools/analysis_tools/benchmark_pacavit.py --sizes 224 512 1024 --batch-sizes 1 8
    python tools/analysis_tools/benchmark_pacavit.py --sizes 224 --batch-sizes 1 --repeat 1   # quick
    # training memory with and without gradient checkpointing
    python tools/analysis_tools/benchmark_pacavit.py --mode train --with-cp --sizes 512 --batch-sizes 8 \\
        --models pacavit-tiny --repeat 1
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.utils import benchmark as bm  # noqa: E402
from clusterseg.utils.progress import add_progress_argument  # noqa: E402
from tools.analysis_tools import benchmark as bench  # noqa: E402

MODELS = ('pacavit-tiny', 'pacavit-tiny-mhsa', 'mit-b1', 'pvtv2-b1')
# global MHSA is quadratic in the stage-1 tokens: above this many it is skipped (est. minutes per image)
MHSA_MAX_TOKENS = 128 * 128
ZOO = {m: bench.BACKBONES[m] for m in MODELS if m in bench.BACKBONES}
ZOO['pacavit-tiny-mhsa'] = dict(build=bench._pacavit('tiny', num_clusters=[0, 0, 0, 0]), cp=False)


def point(name, **kwargs):
    """Worker: one backbone of :data:`ZOO` at one point."""
    return bench.backbone_point(name, zoo=ZOO, **kwargs)


def skip_mhsa(name, size, batch):
    tokens = (size // 4)**2
    if name.startswith('pacavit-tiny-mhsa') and tokens > MHSA_MAX_TOKENS:
        return f'skipped: quadratic in {tokens} stage-1 tokens'
    return ''


def profile_pacavit(size=512, top=8):
    """Worker: self CPU time per op of one PaCa-ViT-tiny forward, largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    model = ZOO['pacavit-tiny']['build'](size, False).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     epilog='Example:' + __doc__.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 512, 1024],
                        help='square input sizes')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8], help='batch sizes')
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS,
                        help='backbones to compare')
    parser.add_argument('--repeat', type=int, default=2, help='timed forwards per point (best kept)')
    parser.add_argument('--mode', choices=['infer', 'train'], default='infer',
                        help="'train': forward + backward in train mode (time and peak memory)")
    parser.add_argument('--with-cp', action='store_true',
                        help='also run each model with gradient checkpointing (with_cp=True; PaCa-ViT '
                             'and MiT) and print the peak-memory saving (use with --mode train)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--max-seconds', type=float, default=300,
                        help='skip points extrapolated to take longer (0: no limit)')
    parser.add_argument('--out', help='write the rows as JSON here')
    parser.add_argument('--csv', help="write the rows here (the harness's CSV schema)")
    add_progress_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    gemm = bench.measure_gemm('cpu', args.threads)
    print(f'mode: {args.mode}; fp32 GEMM on this machine: {gemm:.1f} GFLOP/s')
    rows = bench.run_points([(m, 'backbone', m) for m in args.models], args.sizes, args.batch_sizes,
                            args.mode, args.with_cp, args.repeat, 1, 'cpu', args.threads,
                            args.max_seconds or None, gemm, not args.no_progress, worker=point,
                            skip=skip_mhsa, zoo=ZOO)

    def get(m, s, b):
        return next((r for r in rows if (r['model'], r['height'], r['batch']) == (m, s, b)
                     and not r['error']), None)

    print('\nratios against pacavit-tiny (peer / PaCa: > 1 means PaCa is faster / smaller)')
    for b in args.batch_sizes:
        for s in args.sizes:
            ref = get('pacavit-tiny', s, b)
            if ref is None:
                continue
            parts = []
            for m in args.models:
                r = get(m, s, b)
                if r is not None and m != 'pacavit-tiny':
                    parts.append(f"{m}: time x{r['time_s'] / ref['time_s']:.2f}, "
                                 f"memory x{r['peak_mem_mib'] / max(ref['peak_mem_mib'], 1):.2f}")
            print(f'  {s}px batch {b}: ' + ('; '.join(parts) or '-'))
    for line in bench.cp_summary(rows):
        print(line)
    if args.mode == 'infer':
        for b in args.batch_sizes:
            a, c = get('pacavit-tiny', 512, b), get('pacavit-tiny', 1024, b)
            if a and c:
                print(f"time(1024)/time(512), pacavit-tiny, batch {b}: {c['time_s'] / a['time_s']:.2f} "
                      '(goal <= 4.5; 4.0 is linear in the pixels)')
        ref = get('pacavit-tiny', 512, 1)
        if ref is not None:
            print(f"pacavit-tiny 512px: {ref['gflop']:.1f} GFLOP in {ref['time_s']:.3f} s = "
                  f"{ref['gflops_per_s']:.1f} GFLOP/s; fp32 GEMM on this machine: {gemm:.1f} GFLOP/s; "
                  f"fraction {ref['gemm_fraction']:.2f} (goal >= 0.5)")
            print('where the 512px forward spends its time (self CPU time per op):')
            for key, frac in bm.run_isolated(profile_pacavit, dict(size=512), name='profile pacavit-tiny',
                                             threads=args.threads):
                print(f'  {frac * 100:5.1f} %  {key}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    if args.csv:
        bm.write_csv(rows, args.csv)
    return rows


if __name__ == '__main__':
    main()
