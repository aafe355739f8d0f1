"""Time, GFLOP, GFLOP/s, GEMM fraction and peak memory of our backbones, their OpenMMLab peers and any configs, side by side.

Backbones (``--models``, default all of them when no config is given): PaCa-ViT tiny / small,
ClusTR tiny / small, PSViT tiny / small (clusterseg) and the peers MiT-b1 (mmseg, SegFormer's
encoder), PVTv2-b1 (mmdet) and Swin-T (mmseg), each with random weights, all output stages and
drop path 0, on a random (B, 3, S, S) batch. Configs (positional, any OpenMMLab scope: mmseg,
mmdet, mmpretrain) run the whole model: ``predict`` in infer mode (backbone, neck, head and the
library's post-processing; no data loading or preprocessing), ``mode='tensor'`` in train mode.

``--mode infer``: eval mode, no grad. ``--mode train``: one train-mode forward + backward of the
mean squared outputs, parameter gradients freed after each step; ``--with-cp`` also runs every
model that has gradient checkpointing with ``with_cp=True`` (the mmseg / mmdet convention) and
prints the saving in peak memory.

Measured with ``clusterseg.utils.benchmark``, the harness every benchmark tool shares:
Time: the best of ``--repeat`` calls after ``--warmup`` calls, in seconds per batch.
GFLOP: torch's FlopCounterMode (matrix products, convolutions, attention); train mode counts 3x
the forward. GEMM fraction: GFLOP/s over this machine's fp32 GEMM GFLOP/s, measured at the start
of the same run with the same threads (a square matmul, --gemm-size).
Peak memory: on CPU the growth of the worker's resident set (its high-water mark over the timed
calls minus its resident set just before them, after the warm-up); on CUDA
``torch.cuda.max_memory_allocated`` over the timed calls minus ``memory_allocated`` before them.
Every (model, batch size, size) point runs in its own fresh process, sizes in increasing order. A
point whose time (or memory), extrapolated from the model's previous size, exceeds
``--max-seconds`` (or the free memory) is skipped with the reason, as is every larger one; a
worker still running after 2 x --max-seconds + 120 s is stopped. A point that fails (an input
size a model cannot take, out of memory) is recorded with its error and left out of the plot.

``--breakdown``: for every backbone point, one more process times each aten op of one step
(forward and backward in train mode) inside a ``TorchDispatchMode`` and prints the time, share,
GFLOP and GFLOP/s of four op classes (matrix products, convolutions, fused attention, the rest:
element-wise ops, norms, softmax, copies), the time outside aten ops, and two ceilings of the GEMM
fraction: the step's FLOPs at the GEMM rate over the time of the matrix products alone, and over
that of every class with FLOPs. A ceiling below a goal says the goal cannot be reached by making
the other classes faster. Backward FLOPs of grouped convolutions are counted per group (torch's
own formula counts a depth-wise weight gradient C times).

Writes ``--csv`` (the harness's one schema) and ``--plot`` (time and peak memory vs size per
model, GEMM fraction bars); ``--out-dir DIR`` puts them at DIR/benchmark.csv and
DIR/benchmark.png. A progress bar over the points goes to stderr (--no-progress: none).

example:
  # the backbone table: ours and the peers at 224, 512 and 1024 px
  python tools/analysis_tools/benchmark.py --sizes 224 512 1024 --csv work_dirs/benchmark/infer.csv \\
      --plot work_dirs/benchmark/infer.png
  # training step, peak memory with and without gradient checkpointing
  python tools/analysis_tools/benchmark.py --mode train --with-cp --sizes 512 --batch-sizes 1 8 \\
      --models pacavit-tiny clustr-tiny psvit-tiny mit-b1 pvtv2-b1 --out-dir work_dirs/benchmark_train
  # where one PaCa-ViT-tiny training step spends its time, by op class
  python tools/analysis_tools/benchmark.py --mode train --sizes 512 --batch-sizes 1 \\
      --models pacavit-tiny --threads 2 --keep-freed-memory --breakdown
  # onnxruntime vs eager and bf16 autocast vs fp32 (speed and output drift), same run
  python tools/analysis_tools/benchmark.py --models pacavit-tiny psvit-tiny --sizes 224 512 --onnx --bf16
  # whole models from configs, any scope
  python tools/analysis_tools/benchmark.py \\
      configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py \\
      configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py \\
      --sizes 64 128 256 512 --batch-sizes 1 4 --out-dir work_dirs/benchmark
"""
import argparse
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from clusterseg.utils import benchmark as bm  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402


# ---------------------------------------------------------------------------- what is built
def _pacavit(arch, **kwargs):
    def build(size, with_cp):
        from clusterseg.models.backbones import PaCaViT
        return PaCaViT(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0., with_cp=with_cp, **kwargs)
    return build


def _clustr(arch):
    def build(size, with_cp):
        from clusterseg.models.backbones import ClusTR
        return ClusTR(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0., with_cp=with_cp)
    return build


def _psvit(arch):
    def build(size, with_cp):
        from clusterseg.models.backbones import PSViT
        # the dense-prediction set-up of configs/psvit/pacahead_*: every stage's feature map
        return PSViT(arch, img_size=size, out_type='featmap', out_indices=(0, 1, 2, 3),
                     drop_path_rate=0., with_cp=with_cp)
    return build


def _mit_b1(size, with_cp):
    from mmseg.models.backbones import MixVisionTransformer
    return MixVisionTransformer(embed_dims=64, num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8],
                                drop_path_rate=0., with_cp=with_cp)


def _pvtv2_b1(size, with_cp):
    from mmdet.models.backbones import PyramidVisionTransformerV2
    return PyramidVisionTransformerV2(embed_dims=64, num_layers=[2, 2, 2, 2], drop_path_rate=0.)


def _swin_t(size, with_cp):
    from mmseg.models.backbones import SwinTransformer
    return SwinTransformer(drop_path_rate=0., with_cp=with_cp)  # its defaults are Swin-T


# name -> build(size, with_cp) and whether with_cp exists; the order is the table's
BACKBONES = {
    'pacavit-tiny': dict(build=_pacavit('tiny'), cp=True),
    'pacavit-small': dict(build=_pacavit('small'), cp=True),
    'clustr-tiny': dict(build=_clustr('tiny'), cp=True),
    'clustr-small': dict(build=_clustr('small'), cp=True),
    'psvit-tiny': dict(build=_psvit('tiny'), cp=True),
    'psvit-small': dict(build=_psvit('small'), cp=True),
    'mit-b1': dict(build=_mit_b1, cp=True),
    'pvtv2-b1': dict(build=_pvtv2_b1, cp=False),
    'swin-t': dict(build=_swin_t, cp=True),
}


def _tensors(out):
    """The tensors in a (nested) model output."""
    import torch
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def _step_fns(model, forward, x, mode):
    """``(step, flop_fn, flop_scale)`` of the harness for ``forward(x)`` in infer or train mode
    (the model put in eval / train mode): a train step is the forward, the backward of the mean
    squared outputs and freeing the gradients."""
    import torch
    if mode == 'infer':
        model.eval()

        def step():
            with torch.no_grad():
                forward(x)
        return step, None, 1  # the first warm-up forward is counted
    model.train()

    def step():
        loss = sum((t.float() ** 2).mean() for t in _tensors(forward(x)) if t.requires_grad)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def flop_fn():
        with torch.no_grad():
            forward(x)
    return step, flop_fn, bm.TRAIN_FLOP_FACTOR


def _point(model, forward, x, mode, repeat, warmup, device):
    """The harness's measurement of one built model: ``forward(x)`` in infer or train mode."""
    import torch
    params = sum(p.numel() for p in model.parameters())
    step, flop_fn, scale = _step_fns(model, forward, x, mode)
    m = bm.measure(step, repeat, warmup, device, flop_fn=flop_fn, flop_scale=scale)
    return dict(time_s=m['time_s'], flops=m['flops'], peak_mem_mib=m['peak_mem_mib'], params=params,
                threads=torch.get_num_threads(), minor_faults=m['minor_faults'])


def breakdown_point(name, size, batch, mode='train', repeat=3, warmup=1, device='cpu', zoo=None):
    """Worker: :func:`clusterseg.utils.benchmark.op_breakdown` of one backbone of ``zoo`` (default
    :data:`BACKBONES`) at one point, with the point's FLOPs as its row counts them
    (``headline_flops``)."""
    import torch
    torch.manual_seed(0)
    model = (zoo or BACKBONES)[name]['build'](size, False).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    step, flop_fn, scale = _step_fns(model, model, x, mode)
    result = bm.op_breakdown(step, repeat, warmup, device)
    result['headline_flops'] = bm.count_flops(flop_fn or step) * scale
    return result


def run_breakdowns(models, sizes, batch_sizes, mode, repeat, warmup, device, threads, gemm,
                   keep_freed=False, worker=None, timeout=None):
    """:func:`breakdown_point` (or ``worker``, same arguments) of every (model, size, batch) in
    its own process; prints each table and returns ``[(model, size, batch, result or error)]``."""
    worker = worker or breakdown_point
    out = []
    for name in models:
        for size in sizes:
            for batch in batch_sizes:
                label = f'{name} {size}px batch {batch} ({mode})'
                try:
                    res = bm.run_isolated(worker, dict(name=name, size=size, batch=batch, mode=mode,
                                                       repeat=repeat, warmup=warmup, device=device),
                                          name=label, threads=threads, timeout=timeout,
                                          keep_freed=keep_freed)
                except bm.WorkerError as e:
                    print(f'\nwhere the time goes, {label}: failed: {e}')
                    out.append((name, size, batch, str(e)))
                    continue
                print(f'\nwhere the time goes, {label}: each aten op timed inside one step, the '
                      f'quickest of {repeat}')
                for line in bm.format_breakdown(res, gemm, res['headline_flops']):
                    print('  ' + line)
                out.append((name, size, batch, res))
    return out


def backbone_point(name, size, batch, mode='infer', with_cp=False, repeat=3, warmup=1,
                   device='cpu', zoo=None):
    """Worker: one backbone of ``zoo`` (default :data:`BACKBONES`) at one point."""
    import torch
    torch.manual_seed(0)
    model = (zoo or BACKBONES)[name]['build'](size, with_cp).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    return _point(model, model, x, mode, repeat, warmup, device)


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


def config_point(config, size, batch, mode='infer', with_cp=False, repeat=3, warmup=1,
                 device='cpu'):
    """Worker: the model of ``config`` (random weights) at one point."""
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
    if with_cp:
        backbone.with_cp = True
    scope = cfg.get('default_scope', 'mmengine')
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).to(device)
        x = torch.rand(batch, 3, size, size, device=device) * 255
        samples = _data_samples(scope, batch, size)
        call = 'predict' if mode == 'infer' else 'tensor'
        return _point(model, lambda inputs: model(inputs, samples, mode=call), x, mode, repeat,
                      warmup, device)


def _build_entry(kind, what, size, device='cpu'):
    """``(model, backbone_only)`` for an entry: a backbone of :data:`BACKBONES` (held as
    ``.backbone`` so the exporter takes its feature maps) or a config's whole model."""
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    if kind == 'backbone':
        holder = nn.Module()
        holder.backbone = BACKBONES[what]['build'](size, False)
        return holder.to(device).eval(), True
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(what)
    if 'input_size' in cfg.model:
        cfg.model.input_size = (size, size)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
        return MODELS.build(cfg.model).to(device).eval(), False


def deploy_point(kind, what, size, batch, check='onnx', repeat=3, warmup=1, device='cpu'):
    """Worker: eager PyTorch against onnxruntime (``check='onnx'``) or fp32 against
    ``torch.autocast(bfloat16)`` (``check='bf16'``) for one entry, timed interleaved in the same
    process (clusterseg/deploy)."""
    import torch
    model, backbone_only = _build_entry(kind, what, size, device)
    x = torch.randn(batch, 3, size, size, device=device)
    if check == 'onnx':
        from clusterseg.deploy.onnx import time_onnx_vs_eager
        r = time_onnx_vs_eager(model, x, repeat=repeat, warmup=warmup, backbone_only=backbone_only)
        return dict(ref_ms=r['eager_ms'], other_ms=r['onnx_ms'], speedup=r['speedup'],
                    max_abs_diff=r['max_abs_diff'], rel_l2=float('nan'), threads=r['threads'])
    from clusterseg.deploy.onnx import export_wrapper
    from clusterseg.deploy.precision import bf16_drift
    wrapper = export_wrapper(model, backbone_only, (size, size))
    r = bf16_drift(wrapper, x, repeat=repeat, warmup=warmup)
    return dict(ref_ms=r['fp32_ms'], other_ms=r['bf16_ms'], speedup=r['speedup'],
                max_abs_diff=r['max_abs_diff'], rel_l2=r['rel_l2'], threads=torch.get_num_threads())


DEPLOY_LABELS = {'onnx': ('eager', 'onnxruntime'), 'bf16': ('fp32', 'bf16 autocast')}


def run_deploy(entries, sizes, batch_sizes, check, repeat=3, warmup=1, device='cpu', threads=None,
               progress=True, timeout=None):
    """``--onnx`` / ``--bf16``: one row per (entry, batch size, size), each in a fresh process."""
    rows = []
    ref, other = DEPLOY_LABELS[check]
    total = len(entries) * len(sizes) * len(batch_sizes)
    with Progress(total, f'{check} points', enabled=progress) as bar:
        for name, kind, what in entries:
            for b in sorted(batch_sizes):
                for s in sorted(sizes):
                    row = dict(model=name, check=check, size=s, batch=b, error='')
                    try:
                        row.update(bm.run_isolated(
                            deploy_point, dict(kind=kind, what=what, size=s, batch=b, check=check,
                                               repeat=repeat, warmup=warmup, device=device),
                            name=f'{name} {s}px B={b} ({check})', threads=threads, timeout=timeout))
                        echo(f"  {name:<22s} {s:5d}px B={b:<3d} {ref} {row['ref_ms']:9.1f} ms  {other} "
                             f"{row['other_ms']:9.1f} ms  x{row['speedup']:.2f}  max|diff| "
                             f"{row['max_abs_diff']:.2e}")
                    except bm.WorkerError as e:
                        row['error'] = e.detail
                        echo(f'  {name:<22s} {s:5d}px B={b:<3d} {check}: {e.detail}')
                    rows.append(row)
                    bar.update()
    return rows


def write_deploy_csv(rows, path):
    import csv
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    cols = ['model', 'check', 'size', 'batch', 'ref_ms', 'other_ms', 'speedup', 'max_abs_diff',
            'rel_l2', 'threads', 'error']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, cols, extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    return path


# ---------------------------------------------------------------------------- driver side
def measure_gemm(device='cpu', threads=None, n=None):
    """This machine's fp32 GEMM GFLOP/s, in a worker with the points' threads."""
    return bm.run_isolated(bm.gemm_gflops, dict(n=n, device=device), name='fp32 GEMM',
                           threads=threads, timeout=600)


def run_points(entries, sizes, batch_sizes, mode='infer', with_cp=False, repeat=3, warmup=1,
               device='cpu', threads=None, max_seconds=None, gemm=None, progress=True,
               worker=backbone_point, skip=None, zoo=None, keep_freed=False):
    """Measure every entry at every (batch size, size), each point in a fresh process.

    Args:
        entries (list[tuple]): ``(name, kind, what)``: kind ``'backbone'`` (``what`` a name of
            ``zoo``) or ``'config'`` (``what`` a config path).
        worker (callable): the backbone worker (a script with its own zoo passes its own).
        skip (callable | None): ``skip(name, size, batch) -> reason or ''`` (a script's rule).
        zoo (dict): backbone name -> dict(build, cp), for which ones have ``with_cp``.
        keep_freed (bool): every worker keeps freed memory (``--keep-freed-memory``,
            :func:`clusterseg.utils.heap.keep_freed_memory`); the rows' note says so.

    Returns:
        list[dict]: rows in the harness's schema, in the order measured.
    """
    zoo = zoo or BACKBONES
    variants = []
    for name, kind, what in entries:
        variants.append((name, kind, what, False))
        if with_cp and (kind == 'config' or zoo[what]['cp']):
            variants.append((name + '+cp', kind, what, True))
    guard = bm.SizeGuard(max_seconds, calls=warmup + repeat + (mode == 'train'), device=device)
    timeout = 2 * max_seconds + 120 if max_seconds else None
    rows = []
    total = len(variants) * len(sizes) * len(batch_sizes)
    with Progress(total, 'benchmark points', enabled=progress) as bar:
        for name, kind, what, cp in variants:
            for b in sorted(batch_sizes):
                for s in sorted(sizes):
                    reason = (skip(name, s, b) if skip else '') or guard.check(name, s, b)
                    row = bm.make_row(name, mode, s, b, device=device, error=reason,
                                      gemm_gflops_per_s=gemm)
                    if not reason:
                        kwargs = dict(size=s, batch=b, mode=mode, with_cp=cp, repeat=repeat,
                                      warmup=warmup, device=device)
                        try:
                            if kind == 'config':
                                r = bm.run_isolated(config_point, dict(config=what, **kwargs),
                                                    name=f'{name} {s}px B={b}', threads=threads,
                                                    timeout=timeout, keep_freed=keep_freed)
                            else:
                                r = bm.run_isolated(worker, dict(name=what, **kwargs),
                                                    name=f'{name} {s}px B={b}', threads=threads,
                                                    timeout=timeout, keep_freed=keep_freed)
                            faults = r.pop('minor_faults', None)
                            note = [osp.basename(what)] if kind == 'config' else []
                            note += ['freed memory kept'] if keep_freed else []
                            if faults is not None and device == 'cpu':
                                note.append(f'{faults / 1e3:.0f}k page faults per call')
                            row = bm.make_row(name, mode, s, b, gemm_gflops_per_s=gemm, device=device,
                                              note='; '.join(note), **r)
                        except bm.WorkerError as e:
                            row['error'] = e.detail
                    guard.record(row)
                    rows.append(row)
                    bar.update()
                    echo(bm.format_row(row))
    return rows


def cp_summary(rows):
    """Lines: peak memory and time with ``with_cp`` against the same model without."""
    lines = []
    plain = {(r['model'], r['height'], r['width'], r['batch']): r for r in rows if not r['error']}
    for r in rows:
        if not r['model'].endswith('+cp') or r['error']:
            continue
        p = plain.get((r['model'][:-3], r['height'], r['width'], r['batch']))
        if p is None:
            continue
        saving = 100 * (1 - r['peak_mem_mib'] / max(p['peak_mem_mib'], 1))
        lines.append(f"{p['model']} {bm.size_label(r)}px batch {r['batch']} ({r['mode']}): with_cp peak "
                     f"{r['peak_mem_mib']:.0f} MiB vs {p['peak_mem_mib']:.0f} MiB ({saving:.0f}% less), "
                     f"time x{r['time_s'] / p['time_s']:.2f}")
    return lines


def plot(rows, path):
    """Time and peak memory vs size (log-log, one line per model and batch size) and the GEMM
    fraction (bars per model, one per size) in one PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in rows if not r['error']]
    lines = list(dict.fromkeys((r['model'], r['batch']) for r in ok))
    several = len({b for _, b in lines}) > 1
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    for ax, key, label in ((axes[0], 'time_s', 'time per batch (s)'),
                           (axes[1], 'peak_mem_mib', 'peak memory (MiB)')):
        for m, b in lines:
            pts = sorted((r['height'], r[key]) for r in ok
                         if (r['model'], r['batch']) == (m, b) and r[key] == r[key] and r[key] > 0)
            if pts:
                ax.plot(*zip(*pts), marker='o', label=f'{m} B={b}' if several else m)
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.set_xlabel('input size S (S x S)')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
    sizes = sorted({r['height'] for r in ok})
    width = 0.8 / max(len(sizes), 1)
    for i, s in enumerate(sizes):
        xs, ys = [], []
        for j, (m, b) in enumerate(lines):
            r = next((r for r in ok if (r['model'], r['batch'], r['height']) == (m, b, s)), None)
            if r is not None and r['gemm_fraction'] == r['gemm_fraction']:
                xs.append(j + (i - (len(sizes) - 1) / 2) * width)
                ys.append(r['gemm_fraction'])
        axes[2].bar(xs, ys, width=width, label=f'{s} px')
    axes[2].set_xticks(range(len(lines)))
    axes[2].set_xticklabels([f'{m} B={b}' if several else m for m, b in lines], rotation=45,
                            ha='right', fontsize=7)
    axes[2].set_ylabel('achieved / fp32 GEMM FLOP/s')
    axes[2].legend(fontsize=7)
    axes[2].grid(True, axis='y', alpha=0.3)
    mode, device = (rows[0]['mode'], rows[0]['device']) if rows else ('', '')
    fig.suptitle(f'{mode} on {device}')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], epilog=__doc__[__doc__.index('Measured with'):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='*', help='config files (any OpenMMLab scope)')
    parser.add_argument('--names', nargs='+', help='one label per config (default: file name)')
    parser.add_argument('--models', nargs='+', choices=list(BACKBONES) + ['all'],
                        help="backbones to include ('all'; default: all when no config is given, "
                             'none otherwise)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 512, 1024],
                        help='square input resolutions S')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1], help='batch sizes B')
    parser.add_argument('--mode', choices=bm.MODES, default='infer',
                        help="'infer': eval, no grad; 'train': forward + backward")
    parser.add_argument('--with-cp', action='store_true',
                        help='also run each model that has it with gradient checkpointing '
                             '(with_cp=True) and print the peak-memory saving (with --mode train)')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='every point keeps freed memory in its process (glibc mallopt, as '
                             'tools/train.py --keep-freed-memory): the timed calls run on the memory '
                             'the warm-up left, and the peak memory counts it')
    parser.add_argument('--repeat', type=int, default=3, help='timed calls per point (best kept)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed calls per point')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--max-seconds', type=float, default=300,
                        help="skip a point whose calls would take longer (extrapolated from the "
                             "model's previous size); 0: no limit")
    parser.add_argument('--gemm-size', type=int, default=None,
                        help='side of the square fp32 matmul of the GEMM throughput '
                             '(default: 2048 on CPU, 8192 on CUDA)')
    parser.add_argument('--csv', help='write the rows here (default: OUT_DIR/benchmark.csv)')
    parser.add_argument('--plot', help='write the plot here (default: OUT_DIR/benchmark.png)')
    parser.add_argument('--out-dir', help='folder for benchmark.csv and benchmark.png '
                                          '(default: work_dirs/benchmark if neither --csv nor --plot)')
    parser.add_argument('--onnx', action='store_true',
                        help='also time onnxruntime against eager PyTorch (same process, same '
                             'threads, interleaved) and print the max |difference| of the outputs')
    parser.add_argument('--bf16', action='store_true',
                        help='also time torch.autocast(bfloat16) inference against fp32 and print '
                             'the drift of the outputs (max |diff|, relative L2)')
    parser.add_argument('--breakdown', action='store_true',
                        help='also time every aten op of one step of each backbone point (forward '
                             'and backward in train mode, in its own process) and print where the '
                             'time goes by op class, with the ceilings of the GEMM fraction')
    add_progress_argument(parser)
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.configs):
        parser.error(f'--names needs one label per config ({len(args.configs)})')
    if args.repeat < 1 or args.warmup < 0:
        parser.error('--repeat must be >= 1 and --warmup >= 0')
    if args.models is None and not args.configs or args.models and 'all' in args.models:
        args.models = list(BACKBONES)
    if args.out_dir is None and args.csv is None and args.plot is None:
        args.out_dir = 'work_dirs/benchmark'
    if args.out_dir:
        args.csv = args.csv or osp.join(args.out_dir, 'benchmark.csv')
        args.plot = args.plot or osp.join(args.out_dir, 'benchmark.png')
    return args


def main(argv=None):
    args = parse_args(argv)
    names = args.names or [osp.splitext(osp.basename(c))[0] for c in args.configs]
    entries = ([(m, 'backbone', m) for m in args.models or []]
               + [(n, 'config', c) for n, c in zip(names, args.configs)])
    gemm = measure_gemm(args.device, args.threads, args.gemm_size)
    print(f'{len(entries)} models x {len(args.sizes)} sizes x {len(args.batch_sizes)} batch sizes, '
          f'{args.mode} on {args.device}; fp32 GEMM (n={args.gemm_size or bm.default_gemm_size(args.device)}): '
          f'{gemm:.1f} GFLOP/s')
    rows = run_points(entries, args.sizes, args.batch_sizes, args.mode, args.with_cp, args.repeat,
                      args.warmup, args.device, args.threads, args.max_seconds or None, gemm,
                      not args.no_progress, keep_freed=args.keep_freed_memory)
    print()
    print(bm.format_table(rows))
    for line in cp_summary(rows):
        print(line)
    files = []
    if args.csv:
        files.append(bm.write_csv(rows, args.csv))
    if args.plot:
        os.makedirs(osp.dirname(osp.abspath(args.plot)), exist_ok=True)
        files.append(plot(rows, args.plot))
    for check in [c for c in ('onnx', 'bf16') if getattr(args, c)]:
        ref, other = DEPLOY_LABELS[check]
        print(f'\n{check}: {other} vs {ref}, same process and threads, interleaved best-of-{args.repeat}')
        extra = run_deploy(entries, args.sizes, args.batch_sizes, check, args.repeat, args.warmup,
                           args.device, args.threads, not args.no_progress,
                           2 * args.max_seconds + 120 if args.max_seconds else None)
        if args.csv:
            files.append(write_deploy_csv(extra, osp.splitext(args.csv)[0] + f'_{check}.csv'))
        rows = rows + extra
    if args.breakdown and args.models:
        run_breakdowns(args.models, args.sizes, args.batch_sizes, args.mode, args.repeat, args.warmup,
                       args.device, args.threads, gemm, keep_freed=args.keep_freed_memory,
                       timeout=2 * args.max_seconds + 120 if args.max_seconds else None)
    print('wrote ' + ', '.join(files))
    return rows


if __name__ == '__main__':
    main()
