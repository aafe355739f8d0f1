"""Speed and memory of the PaCa-ViT-tiny backbone against its global-MHSA variant and peer backbones.

What it builds: PaCa-ViT-tiny; ``pacavit-tiny-naive``, the same weights run the straightforward
way (:func:`naive_pacavit`: NCHW convs, einsum attention, no fusions; same outputs and gradients,
tests/test_models/test_backbones/test_pacavit_train_equivalence.py); the same network with
global MHSA in every stage instead of patch-to-cluster attention (``num_clusters=[0, 0, 0, 0]``),
and the peers MiT-b1 (mmseg) and PVTv2-b1 (mmdet), as ``tools/analysis_tools/benchmark.py`` builds
them. What it compares:
ratios against PaCa-ViT-tiny (time and peak memory), time(1024)/time(512), the GEMM fraction of
PaCa-ViT-tiny at 512 px (goal >= 0.5; train mode: >= 0.65, and the naive network's time over
PaCa-ViT-tiny's, goal >= 1.5), the peak-memory saving of ``with_cp`` in train mode, and a
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
    # training step: GEMM fraction and the ratio to the straightforward network
    python tools/analysis_tools/benchmark_pacavit.py --mode train --sizes 512 --batch-sizes 1 8 \\
        --models pacavit-tiny pacavit-tiny-naive --threads 1 --repeat 3
    # where the training step's time goes, by op class, with the ceilings of the GEMM fraction
    python tools/analysis_tools/benchmark_pacavit.py --mode train --sizes 512 --batch-sizes 1 8 \\
        --models pacavit-tiny --threads 2 --repeat 3 --keep-freed-memory --breakdown
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

MODELS = ('pacavit-tiny', 'pacavit-tiny-naive', 'pacavit-tiny-mhsa', 'mit-b1', 'pvtv2-b1')
# global MHSA is quadratic in the stage-1 tokens: above this many it is skipped (est. minutes per image)
MHSA_MAX_TOKENS = 128 * 128


def naive_pacavit(model):
    """``forward(x)`` of a PaCaViT (conv clustering, no teacher, no dropout / drop path) written
    the straightforward way, on the same modules and weights: every conv an NCHW ``F.conv2d`` on
    a contiguous map (tokens <-> maps by transpose + reshape + contiguous, the mmseg convention),
    the 1x1 clustering convs as convs, attention as einsum + softmax, the Mix-FFN's shortcut as a
    separate add. The peer that says what PaCaViT's own layout and fusions buy (same outputs)."""
    import torch
    import torch.nn.functional as F
    if model.paca_teacher is not None or model.arch_settings['clustering'] != 'conv':
        raise ValueError('naive_pacavit: only the conv-clustering variants without a teacher')

    def conv(m, x, groups=1):
        return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, groups)

    def ln2d(norm, x):  # (B, C, H, W) -> LN over C -> (B, C, H, W) contiguous
        y = F.layer_norm(x.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias,
                         norm.eps)
        return y.permute(0, 3, 1, 2).contiguous()

    def to_map(t, H, W):  # (B, N, C) -> (B, C, H, W) contiguous
        return t.transpose(1, 2).reshape(t.shape[0], -1, H, W).contiguous()

    def block(blk, t, H, W, z):
        B, N, C = t.shape
        a, y = blk.attn, blk.norm1_before(t)
        if a.num_clusters:
            if a.clustering is not None:
                dw, _, pw1, _, pw2 = a.clustering.clustering
                logits = conv(pw2, F.gelu(conv(pw1, F.gelu(conv(dw, to_map(y, H, W), C)))))
                z = logits.flatten(2).softmax(-1)  # (B, M, N)
            c = a.cluster_norm(torch.einsum('bmn,bnc->bmc', z, y))  # (B, M, C)
        else:
            c = y
        h = a.num_heads
        q = a.q(y).reshape(B, N, h, -1)
        k, v = a.k(c).reshape(B, c.shape[1], h, -1), a.v(c).reshape(B, c.shape[1], h, -1)
        attn = (torch.einsum('bnhd,bmhd->bhnm', q, k) * a.scale).softmax(-1)  # (B, h, N, M)
        t = t + a.proj(torch.einsum('bhnm,bmhd->bnhd', attn, v).reshape(B, N, C))
        mlp = blk.mlp
        u = to_map(mlp.fc1(blk.norm2_before(t)), H, W)  # (B, 4C, H, W)
        if mlp.dwconv is not None:
            d = conv(mlp.dwconv.dwconv, u, u.shape[1])
            u = u + d if mlp.dwconv.shortcut else d
        return t + mlp.fc2(F.gelu(u.flatten(2).transpose(1, 2))), z

    def forward(x):
        pe = model.patch_embed
        for c in pe.proj:
            x = conv(c, x)
        x = ln2d(pe.norm, x)
        outs = []
        for i in range(4):
            B, C, H, W = x.shape
            t, z = x.flatten(2).transpose(1, 2), None  # (B, N, C)
            for blk in getattr(model, f'stage{i + 1}'):
                t, z = block(blk, t, H, W, z)
            x = to_map(getattr(model, f'norm{i + 1}')(t), H, W)
            outs.append(x)
            if i < 3:
                tr = getattr(model, f'transition{i + 1}')
                x = ln2d(tr.norm, conv(tr.proj, x))
        return tuple(outs[j] for j in model.out_indices)
    return forward


class NaivePaCaViT(__import__('torch').nn.Module):
    """A PaCaViT run through :func:`naive_pacavit` (same parameters, same outputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self._forward = naive_pacavit(model)

    def forward(self, x):
        return self._forward(x)


def _naive(arch):
    build = bench._pacavit(arch)
    return lambda size, with_cp: NaivePaCaViT(build(size, False))


ZOO = {m: bench.BACKBONES[m] for m in MODELS if m in bench.BACKBONES}
ZOO['pacavit-tiny-naive'] = dict(build=_naive('tiny'), cp=False)
ZOO['pacavit-tiny-mhsa'] = dict(build=bench._pacavit('tiny', num_clusters=[0, 0, 0, 0]), cp=False)


def point(name, **kwargs):
    """Worker: one backbone of :data:`ZOO` at one point."""
    return bench.backbone_point(name, zoo=ZOO, **kwargs)


def breakdown_worker(name, **kwargs):
    """Worker: where the time of one step of a backbone of :data:`ZOO` goes, by op class."""
    return bench.breakdown_point(name, zoo=ZOO, **kwargs)


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
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='every point keeps freed memory in its process (glibc mallopt, as '
                             'tools/train.py --keep-freed-memory); the peak memory counts it')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--max-seconds', type=float, default=300,
                        help='skip points extrapolated to take longer (0: no limit)')
    parser.add_argument('--out', help='write the rows as JSON here')
    parser.add_argument('--csv', help="write the rows here (the harness's CSV schema)")
    parser.add_argument('--breakdown', action='store_true',
                        help='also time every aten op of one step of each point (in its own '
                             'process) and print where the time goes by op class, with the '
                             'ceilings of the GEMM fraction (see tools/analysis_tools/benchmark.py)')
    add_progress_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    gemm = bench.measure_gemm('cpu', args.threads)
    print(f'mode: {args.mode}; fp32 GEMM on this machine: {gemm:.1f} GFLOP/s'
          + ('; freed memory kept in every process' if args.keep_freed_memory else ''))
    rows = bench.run_points([(m, 'backbone', m) for m in args.models], args.sizes, args.batch_sizes,
                            args.mode, args.with_cp, args.repeat, 1, 'cpu', args.threads,
                            args.max_seconds or None, gemm, not args.no_progress, worker=point,
                            skip=skip_mhsa, zoo=ZOO, keep_freed=args.keep_freed_memory)

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
    if args.mode == 'train':
        for b in args.batch_sizes:
            for s in args.sizes:
                ref, naive = get('pacavit-tiny', s, b), get('pacavit-tiny-naive', s, b)
                if ref is None:
                    continue
                line = (f"train step pacavit-tiny {s}px batch {b}: GEMM fraction "
                        f"{ref['gemm_fraction']:.2f} (goal >= 0.65)")
                if naive is not None:
                    line += (f"; the straightforward network (pacavit-tiny-naive) takes "
                             f"x{naive['time_s'] / ref['time_s']:.2f} its time (goal >= 1.5), "
                             f"GEMM fraction {naive['gemm_fraction']:.2f}")
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
    if args.breakdown:
        bench.run_breakdowns([m for m in args.models if m in ZOO], args.sizes, args.batch_sizes,
                             args.mode, args.repeat, 1, 'cpu', args.threads, gemm,
                             keep_freed=args.keep_freed_memory, worker=breakdown_worker,
                             timeout=2 * args.max_seconds + 120 if args.max_seconds else None)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    if args.csv:
        bm.write_csv(rows, args.csv)
    return rows


if __name__ == '__main__':
    main()
