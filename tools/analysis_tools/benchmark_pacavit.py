"""Speed and memory of the PaCa-ViT-tiny backbone against its global-MHSA variant and peer backbones.

Every (model, size, batch) point runs in its own subprocess, so peak memory (growth of the process's
peak RSS over the built model) is not polluted by the previous point. Time is the best of --repeat
forwards (no grad, eval). Printed: the table, ratios against PaCa-ViT-tiny, time(1024)/time(512),
PaCa-ViT-tiny's achieved GFLOP/s at 512 as a fraction of this machine's fp32 GEMM GFLOP/s measured in
the same run, and a profile of where the PaCa-ViT-tiny forward spends its time. A progress bar over
the (model, size, batch) points goes to stderr (--no-progress: none).

Example:
    python tools/analysis_tools/benchmark_pacavit.py --sizes 224 512 1024 --batch-sizes 1 8
    python tools/analysis_tools/benchmark_pacavit.py --sizes 224 --batch-sizes 1 --repeat 1   # quick
    # training memory with and without gradient checkpointing
    python tools/analysis_tools/benchmark_pacavit.py --mode train --with-cp --sizes 512 --batch-sizes 8 \\
        --models pacavit-tiny --repeat 1
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402

MODELS = ('pacavit-tiny', 'pacavit-tiny-mhsa', 'mit-b1', 'pvtv2-b1')
# global MHSA is quadratic in the stage-1 tokens: above this many it is skipped (est. minutes per image)
MHSA_MAX_TOKENS = 128 * 128


def build(name, with_cp=False):
    """The backbone called ``name`` (all with 4 output stages); ``with_cp``: gradient checkpointing
    (PaCa-ViT and MiT)."""
    import torch  # noqa: F401
    if name.startswith('pacavit'):
        from clusterseg.models.backbones import PaCaViT
        clusters = [0, 0, 0, 0] if name.endswith('mhsa') else None
        return PaCaViT('tiny', out_indices=(0, 1, 2, 3), num_clusters=clusters, drop_path_rate=0.,
                       with_cp=with_cp)
    if name == 'mit-b1':
        from mmseg.models.backbones import MixVisionTransformer
        return MixVisionTransformer(embed_dims=64, num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8],
                                    with_cp=with_cp)
    if name == 'pvtv2-b1':
        from mmdet.models.backbones import PyramidVisionTransformerV2
        return PyramidVisionTransformerV2(embed_dims=64, num_layers=[2, 2, 2, 2])
    raise KeyError(f'unknown model {name!r}; choose from {MODELS}')


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(name, size, batch, repeat, mode='infer', with_cp=False):
    """One point: ``'infer'`` times a no-grad eval forward, ``'train'`` a train-mode forward +
    backward of the sum of squared outputs (peak memory then includes the kept activations)."""
    import torch
    torch.manual_seed(0)
    model = build(name, with_cp).train(mode == 'train')
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 3, size, size)
    base = _peak_rss_mib()
    best = float('inf')
    with torch.set_grad_enabled(mode == 'train'):
        for i in range(repeat + 1):  # the first call warms up
            t0 = time.perf_counter()
            outs = model(x)
            if mode == 'train':
                sum((o ** 2).mean() for o in outs).backward()
                model.zero_grad(set_to_none=True)
            del outs
            if i:
                best = min(best, time.perf_counter() - t0)
    return dict(model=name + ('+cp' if with_cp else ''), size=size, batch=batch, mode=mode, params=params,
                time_s=best, peak_mib=_peak_rss_mib() - base)


def gemm_gflops(n=2048, repeat=3):
    """This machine's fp32 matrix-multiply throughput (GFLOP/s)."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile_pacavit(size=512, top=8):
    """Self CPU time per op of one PaCa-ViT-tiny forward, largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    model = build('pacavit-tiny').eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def run_point(name, size, batch, repeat, mode='infer', with_cp=False):
    cmd = [sys.executable, __file__, '--_worker', json.dumps([name, size, batch, repeat, mode, with_cp])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(model=name, size=size, batch=batch, error=proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    parser.add_argument('--out', help='write the rows as JSON here')
    add_progress_argument(parser)
    parser.add_argument('--_worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        print(json.dumps(worker(*json.loads(args._worker))))
        return
    import torch
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    rows = []
    cps = [False, True] if args.with_cp else [False]
    points = [(m, s, b, cp) for b in args.batch_sizes for s in args.sizes for m in args.models for cp in cps
              if not cp or m in ('pacavit-tiny', 'mit-b1')]
    print(f'mode: {args.mode}')
    with Progress(len(points), 'benchmark points', enabled=not args.no_progress) as bar:
        for i, (m, s, b, cp) in enumerate(points, 1):
            if m.endswith('mhsa') and (s // 4)**2 > MHSA_MAX_TOKENS:
                row = dict(model=m, size=s, batch=b, error=f'skipped: quadratic in {(s // 4)**2} stage-1 tokens')
            else:
                row = run_point(m, s, b, args.repeat, args.mode, cp)
            rows.append(row)
            bar.update()
            shown = (f"{row['time_s']:.3f} s, +{row['peak_mib']:.0f} MiB" if 'time_s' in row else row['error'])
            echo(f"[{i}/{len(points)}] {m + ('+cp' if cp else ''):<18} {s:>4}px batch {b}: {shown}")

    def get(m, s, b):
        return next((r for r in rows if (r['model'], r['size'], r['batch']) == (m, s, b) and 'time_s' in r), None)

    print('\nratios against pacavit-tiny (peer / PaCa: > 1 means PaCa is faster / smaller)')
    for b in args.batch_sizes:
        for s in args.sizes:
            ref = get('pacavit-tiny', s, b)
            if ref is None:
                continue
            parts = []
            for m in args.models[1:] if args.models[0] == 'pacavit-tiny' else args.models:
                r = get(m, s, b)
                if r is not None and m != 'pacavit-tiny':
                    parts.append(f"{m}: time x{r['time_s'] / ref['time_s']:.2f}, "
                                 f"memory x{r['peak_mib'] / max(ref['peak_mib'], 1):.2f}")
            print(f'  {s}px batch {b}: ' + ('; '.join(parts) or '-'))
    if args.with_cp:
        for m in ('pacavit-tiny', 'mit-b1'):
            for b in args.batch_sizes:
                for s in args.sizes:
                    plain, cp = get(m, s, b), get(m + '+cp', s, b)
                    if plain and cp:
                        print(f"{m} {s}px batch {b} ({args.mode}): with_cp peak {cp['peak_mib']:.0f} MiB vs "
                              f"{plain['peak_mib']:.0f} MiB ({100 * (1 - cp['peak_mib'] / max(plain['peak_mib'], 1)):.0f}% "
                              f"less), time x{cp['time_s'] / plain['time_s']:.2f}")
    if args.mode == 'train':
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(rows, f, indent=1)
        return rows
    for b in args.batch_sizes:
        a, c = get('pacavit-tiny', 512, b), get('pacavit-tiny', 1024, b)
        if a and c:
            print(f"time(1024)/time(512), pacavit-tiny, batch {b}: {c['time_s'] / a['time_s']:.2f} "
                  '(goal <= 4.5; 4.0 is linear in the pixels)')
    ref = get('pacavit-tiny', 512, 1)
    if ref is not None:
        from clusterseg.utils.complexity import count_complexity
        macs = count_complexity(build('pacavit-tiny'), (torch.randn(1, 3, 512, 512), ))['macs']
        achieved = 2 * macs / ref['time_s'] / 1e9
        peak = gemm_gflops()
        print(f'pacavit-tiny 512px: {2 * macs / 1e9:.1f} GFLOP in {ref["time_s"]:.3f} s = {achieved:.1f} '
              f'GFLOP/s; fp32 GEMM on this machine: {peak:.1f} GFLOP/s; fraction {achieved / peak:.2f} '
              '(goal >= 0.5)')
        print('where the 512px forward spends its time (self CPU time per op):')
        for key, frac in profile_pacavit(512):
            print(f'  {frac * 100:5.1f} %  {key}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    os.environ.setdefault('CLUSTERSEG_SKIP_VERSION_CHECK', '0')
    main()
