"""Peak memory and time of ClusTR's DPC-kNN clustering, blockwise (ours) vs naive N x N.

Two measurements per input size, each for both paths in the same run:

* ``cluster``: one DPC-kNN call on stage-1 tokens (N = ceil(H/4) * ceil(W/4), C = 64, the two
  scales M0 = N // 64 and 4 M0 of a stage-1 layer);
* ``forward``: a whole ClusTR backbone forward (default: small = b2), batch 1, eval, no grad,
  split into its clustering (every ``dpc_knn`` call of the fastest timed forward: seconds, share,
  GFLOP counted on the same inputs, GEMM fraction) and the rest.

The naive path (``memory_efficient=False``: the N x N distance matrix in one piece) only runs where
its estimated peak fits in ``--naive-limit-gb``; otherwise it is reported as skipped. Results are
printed with naive / blockwise ratios (memory and time); with ``--csv`` / ``--json`` also saved.

Measured with the shared harness (``clusterseg.utils.benchmark``, as every benchmark tool): each
measurement in its own fresh process; time = best of ``--repeat`` calls after one warm-up; GFLOP
by FlopCounterMode (the distance blocks are batched matrix products) and the GEMM fraction
against this machine's fp32 GEMM measured in the same run; peak memory = on CPU the growth of the
worker's resident set over the timed calls (its high-water mark minus its resident set just before
them), on CUDA ``max_memory_allocated`` minus ``memory_allocated`` before the calls. A progress
bar over the (size, measurement, path) runs goes to stderr (--no-progress: none); the table on
stdout is the same either way.

Example:
    # the issue's sizes on a GPU
    python tools/analysis_tools/benchmark_clustr.py --device cuda
    # a quick CPU check: small sizes, the tiny model
    python tools/analysis_tools/benchmark_clustr.py --sizes 256x256 512x512 --arch tiny --repeat 1
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from clusterseg.models.layers.dpc_cluster import DEFAULT_MAX_BLOCK_ELEMS  # noqa: E402
from clusterseg.utils import benchmark as bm  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402


def _stage1_tokens(h, w):
    return ((h + 3) // 4) * ((w + 3) // 4)  # 7x7 / stride 4 / padding 3


def naive_peak_estimate(h, w):
    """Bytes of the naive path's largest transient: fp32 N x N distances, an N x N bool mask, margin."""
    n = _stage1_tokens(h, w)
    return n * n * (4 + 1 + 1)


def point(kind, h, w, arch, memory_efficient, max_block_elems, device, repeat):
    """Worker: one measurement (``'cluster'`` or ``'forward'``), inputs created up front."""
    from clusterseg.models.backbones import ClusTR
    from clusterseg.models.layers.dpc_cluster import dpc_knn
    torch.manual_seed(0)
    params = None
    if kind == 'cluster':
        n = _stage1_tokens(h, w)
        x = torch.randn(1, n, 64, device=device)
        m0 = n // 64

        def step():
            dpc_knn(x, [m0, 4 * m0], memory_efficient=memory_efficient, max_block_elems=max_block_elems)
    else:
        from clusterseg.models.layers import dpc_cluster
        model = ClusTR(arch, memory_efficient=memory_efficient, max_block_elems=max_block_elems,
                       out_indices=(0, 1, 2, 3)).to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        img = torch.randn(1, 3, h, w, device=device)
        spent, calls = [], []  # per forward: seconds in dpc_knn; the first forward's dpc_knn calls

        def timed_dpc(x, counts, **kw):  # the attention looks dpc_knn up in its module per call
            bm.sync(device)
            t0 = time.perf_counter()
            out = dpc_knn(x, counts, **kw)
            bm.sync(device)
            spent[-1] += time.perf_counter() - t0
            if len(spent) == 1:
                calls.append((x.detach(), counts, kw))
            return out

        def step():
            spent.append(0.)
            with torch.no_grad():
                model(img)
        dpc_cluster.dpc_knn = timed_dpc
    m = bm.measure(step, repeat=max(1, repeat), warmup=1, device=device)
    out = dict(time_s=m['time_s'], flops=m['flops'], peak_mem_mib=m['peak_mem_mib'], params=params,
               threads=torch.get_num_threads())
    if kind == 'forward':  # the timed forwards are the last len(times) ones
        best = min(range(len(m['times'])), key=m['times'].__getitem__)

        def replay():  # the first forward's dpc_knn calls, on their inputs
            return [dpc_knn(x, c, **kw) for x, c, kw in calls]
        out['clustering'] = dict(time_s=spent[len(spent) - len(m['times']) + best],
                                 flops=bm.count_flops(replay), **_products_split(replay, device))
    return out


def _products_split(fn, device):
    """Where the clustering's time goes: self time of its matrix products (``bmm``: the distance
    blocks, pass 2's peaks and pass 3's centres) and of everything else (top-k, group minima,
    gathers, sorts), from one profiled call of ``fn`` (the profiler's own cost is in the rest)."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith('cuda') else [])
    with profile(activities=acts) as prof:
        fn()
        bm.sync(device)
    cuda = device.startswith('cuda')
    total = products = 0.
    for e in prof.key_averages():
        t = (getattr(e, 'self_device_time_total', 0) if cuda else e.self_cpu_time_total) / 1e6
        total += t
        if e.key in ('aten::bmm', 'aten::mm', 'aten::matmul', 'aten::baddbmm', 'aten::addmm'):
            products += t
    return dict(products_s=products, other_s=total - products)


def _measure_isolated(args, kind, h, w, memory_efficient, gemm):
    path = 'blockwise' if memory_efficient else 'naive'
    name = ('dpc-knn' if kind == 'cluster' else f'clustr-{args.arch}') + '/' + path
    tokens = _stage1_tokens(h, w)
    try:
        r = bm.run_isolated(point, dict(kind=kind, h=h, w=w, arch=args.arch,
                                        memory_efficient=memory_efficient,
                                        max_block_elems=args.max_block_elems, device=args.device,
                                        repeat=args.repeat),
                            name=f'{name} {h}x{w}', threads=args.threads)
    except bm.WorkerError as e:
        raise SystemExit(f'{e}\n{e.log[-3000:]}')
    split = r.pop('clustering', None)
    note = f'N1={tokens}'
    if split:
        cl_t, cl_f = split['time_s'], split['flops']
        split.update(share=cl_t / r['time_s'], gemm_fraction=bm.gemm_fraction(cl_f, cl_t, gemm),
                     rest_time_s=r['time_s'] - cl_t,
                     rest_gemm_fraction=bm.gemm_fraction(r['flops'] - cl_f, r['time_s'] - cl_t, gemm))
        split['products_gemm_fraction'] = bm.gemm_fraction(cl_f, split['products_s'], gemm)
        note += (f'; clustering {cl_t:.3f} s ({split["share"]:.0%}), {cl_f / 1e9:.1f} GFLOP, GEMM '
                 f'x{split["gemm_fraction"]:.2f} (profiled: matrix products {split["products_s"]:.3f} s '
                 f'= GEMM x{split["products_gemm_fraction"]:.2f}, the rest of it '
                 f'{split["other_s"]:.3f} s); rest of the network {split["rest_time_s"]:.3f} s, GEMM '
                 f'x{split["rest_gemm_fraction"]:.2f}')
    row = bm.make_row(name, 'infer', (h, w), 1, gemm_gflops_per_s=gemm, device=args.device,
                      note=note, **r)
    if split:
        row['clustering'] = split
    return row


def _default_limit_gb(device):
    frac = 0.8 if device.startswith('cuda') else 0.5
    return frac * bm.available_memory_mib(device) / 1024


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', default=['512x512', '1024x1024', '800x1333'],
                        help='input sizes HxW')
    parser.add_argument('--arch', default='small', help='ClusTR arch of the whole-forward run')
    parser.add_argument('--what', nargs='+', default=['cluster', 'forward'], choices=['cluster', 'forward'])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--max-block-elems', type=int, default=DEFAULT_MAX_BLOCK_ELEMS,
                        help='distance-block size of the blockwise path')
    parser.add_argument('--naive-limit-gb', type=float, default=None,
                        help='run the naive path only if its estimated peak is below this '
                             '(default: 80%% of free GPU memory / 50%% of available RAM)')
    parser.add_argument('--repeat', type=int, default=3, help='timed calls after the warm-up')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads per run')
    parser.add_argument('--csv', default=None, help="also write the rows here (the harness's CSV schema)")
    parser.add_argument('--json', default=None, help='also write the rows here (JSON)')
    add_progress_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    limit = args.naive_limit_gb if args.naive_limit_gb is not None else _default_limit_gb(args.device)
    gemm = bm.run_isolated(bm.gemm_gflops, dict(device=args.device), name='fp32 GEMM', threads=args.threads)
    print(f'device {args.device}, arch {args.arch}, block {args.max_block_elems} elems, '
          f'naive limit {limit:.1f} GiB, torch threads {args.threads or torch.get_num_threads()}, '
          f'fp32 GEMM {gemm:.1f} GFLOP/s')
    rows = []
    sizes = [tuple(int(v) for v in size.lower().split('x')) for size in args.sizes]
    runs = sum(1 + (naive_peak_estimate(h, w) / 2**30 < limit) for h, w in sizes) * len(args.what)
    with Progress(runs, 'clustering runs', enabled=not args.no_progress) as bar:
        for size, (h, w) in zip(args.sizes, sizes):
            for kind in args.what:
                ours = _measure_isolated(args, kind, h, w, True, gemm)
                rows.append(ours)
                bar.update()
                est = naive_peak_estimate(h, w) / 2**30
                naive = None
                if est < limit:
                    naive = _measure_isolated(args, kind, h, w, False, gemm)
                    rows.append(naive)
                    bar.update()
                line = (f'{size:>10} {kind:>8} N1={_stage1_tokens(h, w):>6} | blockwise '
                        f'{ours["peak_mem_mib"]:9.1f} MiB {ours["time_s"]:8.3f} s '
                        f'GEMM x{ours["gemm_fraction"]:.2f} | ')
                if naive is None:
                    line += f'naive skipped (est. {est:.1f} GiB > {limit:.1f} GiB)'
                else:
                    line += (f'naive {naive["peak_mem_mib"]:9.1f} MiB {naive["time_s"]:8.3f} s | '
                             f'memory naive/ours {naive["peak_mem_mib"] / max(1e-3, ours["peak_mem_mib"]):6.2f}x, '
                             f'time naive/ours {naive["time_s"] / ours["time_s"]:5.2f}x')
                echo(line)
                if kind == 'forward':
                    echo(f'{"":>10} {"":>8} {"":>8} | blockwise {ours["note"]}')
    if args.csv:
        bm.write_csv(rows, args.csv)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
