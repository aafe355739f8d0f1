"""Peak memory and time of ClusTR's DPC-kNN clustering, blockwise (ours) vs naive N x N.

Two measurements per input size, each for both paths in the same run:

* ``cluster``: one DPC-kNN call on stage-1 tokens (N = ceil(H/4) * ceil(W/4), C = 64, the two
  scales M0 = N // 64 and 4 M0 of a stage-1 layer);
* ``forward``: a whole ClusTR backbone forward (default: small = b2), batch 1, eval, no grad.

The naive path (``memory_efficient=False``: the N x N distance matrix in one piece) only runs where
its estimated peak fits in ``--naive-limit-gb``; otherwise it is reported as skipped. Results are
printed as a table with naive / blockwise ratios (memory and time); with ``--json`` also saved.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` above the state before the call; on CPU each
measurement runs in a fresh subprocess and reports its peak RSS (``ru_maxrss``) above the RSS
before the call. Time: the best of ``--repeat`` calls after one warm-up (on CPU the warm-up call is
the memory-measuring one). A progress bar over the (size, measurement, path) runs goes to stderr
(--no-progress: none); the table on stdout is the same either way.

Example:
    # the issue's sizes on a GPU
    python tools/analysis_tools/benchmark_clustr.py --device cuda
    # a quick CPU check: small sizes, the tiny model
    python tools/analysis_tools/benchmark_clustr.py --sizes 256x256 512x512 --arch tiny --repeat 1
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

import torch  # noqa: E402

from clusterseg.models.layers.dpc_cluster import DEFAULT_MAX_BLOCK_ELEMS  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402


def _rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _stage1_tokens(h, w):
    return ((h + 3) // 4) * ((w + 3) // 4)  # 7x7 / stride 4 / padding 3


def naive_peak_estimate(h, w):
    """Bytes of the naive path's largest transient: fp32 N x N distances, an N x N bool mask, margin."""
    n = _stage1_tokens(h, w)
    return n * n * (4 + 1 + 1)


def _make(kind, h, w, arch, memory_efficient, max_block_elems, device):
    """(callable, description) of one measurement, inputs created up front."""
    from clusterseg.models.backbones import ClusTR
    from clusterseg.models.layers.dpc_cluster import dpc_knn
    torch.manual_seed(0)
    if kind == 'cluster':
        n = _stage1_tokens(h, w)
        x = torch.randn(1, n, 64, device=device)
        m0 = n // 64
        return lambda: dpc_knn(x, [m0, 4 * m0], memory_efficient=memory_efficient,
                               max_block_elems=max_block_elems)
    model = ClusTR(arch, memory_efficient=memory_efficient, max_block_elems=max_block_elems,
                   out_indices=(0, 1, 2, 3)).to(device).eval()
    img = torch.randn(1, 3, h, w, device=device)

    def run():
        with torch.no_grad():
            return model(img)
    return run


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def measure(kind, h, w, arch, memory_efficient, max_block_elems, device, repeat):
    """Peak bytes above the pre-call state and best seconds of one measurement (this process)."""
    fn = _make(kind, h, w, arch, memory_efficient, max_block_elems, device)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_bytes()
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    # CPU: the memory-measuring call is one of the timed ones (a second process would be needed
    # for a separate warm-up); CUDA: the memory call is the warm-up
    times = [] if device.startswith('cuda') else [first]
    for _ in range(max(1, repeat) - len(times)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return dict(peak_bytes=max(0, int(peak)), seconds=min(times))


def _measure_isolated(args, kind, h, w, memory_efficient):
    """On CPU: one measurement per fresh process, so ru_maxrss is this measurement's peak."""
    if args.device.startswith('cuda'):
        return measure(kind, h, w, args.arch, memory_efficient, args.max_block_elems, args.device,
                       args.repeat)
    cmd = [sys.executable, osp.abspath(__file__), '--_worker',
           json.dumps([kind, h, w, args.arch, memory_efficient, args.max_block_elems, args.device,
                       args.repeat])]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if out.returncode != 0:
        raise RuntimeError(f'worker failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def _default_limit_gb(device):
    if device.startswith('cuda'):
        free, _ = torch.cuda.mem_get_info()
        return 0.8 * free / 2**30
    with open('/proc/meminfo') as f:
        info = dict(line.split(':', 1) for line in f)
    return 0.5 * int(info['MemAvailable'].split()[0]) * 1024 / 2**30


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
    parser.add_argument('--json', default=None, help='also write the results here')
    add_progress_argument(parser)
    parser.add_argument('--_worker', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args._worker is not None:
        print(json.dumps(measure(*json.loads(args._worker))))
        return
    limit = args.naive_limit_gb if args.naive_limit_gb is not None else _default_limit_gb(args.device)
    print(f'device {args.device}, arch {args.arch}, block {args.max_block_elems} elems, '
          f'naive limit {limit:.1f} GiB, torch threads {torch.get_num_threads()}')
    rows = []
    sizes = [tuple(int(v) for v in size.lower().split('x')) for size in args.sizes]
    runs = sum(1 + (naive_peak_estimate(h, w) / 2**30 < limit) for h, w in sizes) * len(args.what)
    with Progress(runs, 'clustering runs', enabled=not args.no_progress) as bar:
        for size, (h, w) in zip(args.sizes, sizes):
            for kind in args.what:
                ours = _measure_isolated(args, kind, h, w, True)
                bar.update()
                est = naive_peak_estimate(h, w) / 2**30
                naive = None
                if est < limit:
                    naive = _measure_isolated(args, kind, h, w, False)
                    bar.update()
                rows.append(dict(size=size, what=kind, tokens=_stage1_tokens(h, w), ours=ours, naive=naive,
                                 naive_estimate_gib=est))
                mb = 2**20
                line = (f'{size:>10} {kind:>8} N1={_stage1_tokens(h, w):>6} | blockwise '
                        f'{ours["peak_bytes"] / mb:9.1f} MiB {ours["seconds"]:8.3f} s | ')
                if naive is None:
                    line += f'naive skipped (est. {est:.1f} GiB > {limit:.1f} GiB)'
                else:
                    line += (f'naive {naive["peak_bytes"] / mb:9.1f} MiB {naive["seconds"]:8.3f} s | '
                             f'memory naive/ours {naive["peak_bytes"] / max(1, ours["peak_bytes"]):6.2f}x, '
                             f'time naive/ours {naive["seconds"] / ours["seconds"]:5.2f}x')
                echo(line)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
