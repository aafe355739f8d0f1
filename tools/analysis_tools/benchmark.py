"""Inference time and peak memory of any set of configs at several resolutions and batch sizes.

Each config's model is built (random weights: time and memory do not depend on them), put in
eval mode, and run on random (B, 3, S, S) batches through its own ``predict`` (backbone, neck,
head and the library's post-processing; the data preprocessor and loading are excluded), for
every resolution S in ``--sizes`` and batch size B in ``--batch-sizes``. Configs from any scope
(mmseg, mmdet, mmpretrain) mix freely, so the clusterseg models and their OpenMMLab peers (e.g.
``configs/demo/segformer_mit-b0_*.py``, stock SegFormer) come out in the same table.

Time: the best (minimum) of ``--repeat`` calls after ``--warmup`` calls, in ms per batch; the
minimum is the figure least disturbed by other processes on a shared machine.
Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the calls (reset per point); on
CPU, the growth of the process's peak RSS over the built model's. Each config runs in its own
subprocess with its points in increasing B*S^2, so on CPU each point's peak is its own (a
larger point cannot have run before it). A point that fails (size constraints, out of memory)
is recorded with its error and left out of the plots.

Writes ``benchmark.csv`` and ``time_vs_resolution.png``, ``memory_vs_resolution.png``
(log-log, one line per model, one panel per batch size) to ``--out-dir``. A progress bar over the
(config, batch size, size) points goes to stderr (--no-progress: none).

example:
  python tools/analysis_tools/benchmark.py \\
      configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py \\
      configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py \\
      --sizes 64 128 256 512 --batch-sizes 1 4 --out-dir work_dirs/benchmark
"""
import argparse
import csv
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from clusterseg.utils.progress import Progress, add_progress_argument  # noqa: E402

FIELDS = ['model', 'config', 'scope', 'batch_size', 'size', 'time_ms', 'peak_mem_mb', 'device',
          'threads', 'error']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__[__doc__.index('Time:'):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='config files (any OpenMMLab scope)')
    parser.add_argument('--names', nargs='+', help='one label per config (default: file name)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[128, 256, 512],
                        help='square input resolutions S')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1], help='batch sizes B')
    parser.add_argument('--repeat', type=int, default=5, help='timed calls per point')
    parser.add_argument('--warmup', type=int, default=1, help='untimed calls per point')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--out-dir', default='work_dirs/benchmark', help='CSV and PNGs go here')
    add_progress_argument(parser)
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.configs):
        parser.error(f'--names needs one label per config ({len(args.configs)})')
    return args


# ---------------------------------------------------------------------------- worker side
def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _data_samples(scope, batch_size, size):
    meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                batch_input_shape=(size, size), scale_factor=(1., 1.), flip=False,
                padding_size=[0, 0, 0, 0])
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta) for _ in range(batch_size)]
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta) for _ in range(batch_size)]
    return None


def _build(config, size, device):
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import clusterseg  # noqa: F401
    cfg = Config.fromfile(config)
    if 'input_size' in cfg.model:  # fixed-size models (kMaX) are built for each size
        cfg.model.input_size = (size, size)
    backbone = cfg.model.get('backbone', {})
    if 'init_cfg' in backbone:
        backbone.init_cfg = None  # no pretrained download
    scope = cfg.get('default_scope', 'mmengine')
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    return scope, model.to(device).eval()


def measure(config, sizes, batch_sizes, repeat=5, warmup=1, device='cpu'):
    """Yields one result dict per (batch size, size), in increasing B*S^2."""
    import torch
    from mmengine.registry import DefaultScope
    cuda = device.startswith('cuda')
    points = sorted(((b, s) for b in batch_sizes for s in sizes), key=lambda p: (p[0] * p[1] ** 2, p))
    rebuild = None
    model = scope = None
    base_rss = None
    for b, s in points:
        row = dict(config=config, batch_size=b, size=s, device=device,
                   threads=torch.get_num_threads(), time_ms=float('nan'),
                   peak_mem_mb=float('nan'), error='')
        try:
            if model is None or rebuild:
                scope, model = _build(config, s, device)
                rebuild = hasattr(model, 'input_size') or 'input_size' in getattr(model, '__dict__', {})
            row['scope'] = scope
            x = torch.rand(b, 3, s, s, device=device) * 255
            samples = _data_samples(scope, b, s)
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            elif base_rss is None:
                base_rss = _peak_rss_mb()
            times = []
            with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
                for i in range(warmup + repeat):
                    if cuda:
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                    model(x, samples, mode='predict')
                    if cuda:
                        torch.cuda.synchronize(device)
                    if i >= warmup:
                        times.append((time.perf_counter() - t0) * 1000)
            row['time_ms'] = min(times)
            row['peak_mem_mb'] = ((torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda
                                  else _peak_rss_mb() - base_rss)
        except Exception as e:  # recorded, and the other points still run
            row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}' if str(e) else type(e).__name__
            if cuda:
                torch.cuda.empty_cache()
        yield row


def worker(args):
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    for row in measure(args.configs[0], args.sizes, args.batch_sizes, args.repeat, args.warmup,
                       args.device):
        print('@@' + json.dumps(row), flush=True)


# ---------------------------------------------------------------------------- driver side
def run_config(args, config):
    """Runs one config in a fresh subprocess; yields its rows as they come."""
    cmd = [sys.executable, osp.abspath(__file__), config, '--worker', '--sizes',
           *map(str, args.sizes), '--batch-sizes', *map(str, args.batch_sizes), '--repeat',
           str(args.repeat), '--warmup', str(args.warmup), '--device', args.device]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n = 0
    for line in proc.stdout:
        if line.startswith('@@'):
            n += 1
            yield json.loads(line[2:])
    err = proc.stderr.read()
    proc.wait()
    if n < len(args.sizes) * len(args.batch_sizes):  # the worker itself died
        tail = err.strip().splitlines()[-1] if err.strip() else f'exit {proc.returncode}'
        done = n
        for b in args.batch_sizes:
            for s in args.sizes:
                if done > 0:
                    done -= 1
                    continue
                yield dict(config=config, batch_size=b, size=s, device=args.device,
                           threads=args.threads, time_ms=float('nan'),
                           peak_mem_mb=float('nan'), error=f'worker failed: {tail[:200]}')


def plot(rows, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in rows if not r['error']]
    batch_sizes = sorted({r['batch_size'] for r in rows})
    models = list(dict.fromkeys(r['model'] for r in rows))
    files = []
    for key, label, name in [('time_ms', 'time per batch (ms)', 'time_vs_resolution.png'),
                             ('peak_mem_mb', 'peak memory (MiB)', 'memory_vs_resolution.png')]:
        fig, axes = plt.subplots(1, len(batch_sizes), figsize=(5 * len(batch_sizes), 4),
                                 squeeze=False)
        for ax, b in zip(axes[0], batch_sizes):
            for m in models:
                pts = sorted((r['size'], r[key]) for r in ok
                             if r['model'] == m and r['batch_size'] == b and r[key] > 0)
                if pts:
                    ax.plot(*zip(*pts), marker='o', label=m)
            ax.set_xscale('log', base=2)
            ax.set_yscale('log')
            ax.set_xlabel('input resolution S (S x S)')
            ax.set_ylabel(label)
            ax.set_title(f'batch size {b} ({rows[0]["device"]})')
            ax.grid(True, which='both', alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = osp.join(out_dir, name)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)
    return files


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    os.makedirs(args.out_dir, exist_ok=True)
    names = args.names or [osp.splitext(osp.basename(c))[0] for c in args.configs]
    total = len(args.configs) * len(args.sizes) * len(args.batch_sizes)
    print(f'benchmarking {len(args.configs)} configs x {len(args.sizes)} sizes x '
          f'{len(args.batch_sizes)} batch sizes on {args.device}')
    rows = []
    with Progress(total, 'benchmark points', enabled=not args.no_progress) as bar:
        for name, config in zip(names, args.configs):
            for row in run_config(args, config):
                row['model'] = name
                rows.append(row)
                bar.update()
    csv_path = osp.join(args.out_dir, 'benchmark.csv')
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction='ignore')
        writer.writeheader()
        for r in sorted(rows, key=lambda r: (names.index(r['model']), r['batch_size'], r['size'])):
            writer.writerow({k: (round(v, 2) if isinstance(v, float) else v)
                             for k, v in r.items()})
    files = plot(rows, args.out_dir)
    for r in rows:
        if r['error']:
            print(f'{r["model"]} B={r["batch_size"]} S={r["size"]}: {r["error"]}')
    print(f'wrote {csv_path}, ' + ', '.join(files))


if __name__ == '__main__':
    main()
