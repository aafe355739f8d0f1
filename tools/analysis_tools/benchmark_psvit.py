"""Benchmark PSViT's attention sharing: time and memory of a sharing layer vs a full layer, and
of the PSViT presets vs DeiT of the same budget, in one run (not a test; prints a table).

Layers (one pre-norm block = attention + MLP, and the attention module alone), at two shapes:
DeiT-Ti's (N = 197 tokens, C = 192, 3 heads) and PSViT-tiny's first stage (N = 785, C = 96,
3 heads at 224x224). Variants: ``full`` (fused SDPA, map not kept), ``full + map handed on``
(the layer before a sharing one: it materialises softmax(QK^T)), ``shared (map)`` (reuses a
given map: V projection + proj only), and the ``share_impl='qk'`` pair (q, k handed on; the
sharing layer recomputes the map inside the fused kernel). Goal: shared <= 0.75x full.

Models (the whole network, at each of ``--resolutions``, default 224 and 512): DeiT-Ti/S/B
(mmpretrain ``VisionTransformer``, 224 only), PSViT with the same pooling but no sharing
(``share_attn`` all 0: every shared layer replaced by a full one), and the PSViT presets with the
default ``share_impl`` ('auto') and with 'qk' and 'map'.

Measured with the shared harness (``clusterseg.utils.benchmark``), in this process because the
variants of a group are timed round-robin (``best_of_interleaved``), so that load from other
processes hits all of them alike. Time: best-of-``--repeats`` time of forward (no_grad) and of
forward + backward. On CPU it is the process's CPU time (default one thread), which stays
meaningful on a shared, oversubscribed machine; on CUDA wall time. GFLOP: FlopCounterMode of
the forward. Memory: ``saved``, the bytes of the tensors autograd saves for backward
(activations, de-duplicated by storage, inputs excluded: the shared map is owned by the previous
layer; this is not a peak); on CUDA also ``peak``, the harness's peak memory of a forward +
backward (``max_memory_allocated`` minus ``memory_allocated`` before it).
A progress bar over the measured groups goes to stderr (--no-progress: none).

Example:
    python tools/analysis_tools/benchmark_psvit.py --batch-size 8
    python tools/analysis_tools/benchmark_psvit.py --skip-models   # layers only (seconds)
"""
import argparse
import inspect
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from clusterseg.models.backbones.psvit import PSViT, PSViTBlock  # noqa: E402
from clusterseg.models.layers.token_pool import FullAttention, SharedAttention  # noqa: E402
from clusterseg.utils import benchmark as bm  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402


def saved_bytes(fn, inputs):
    """Bytes of the tensors autograd saves during ``fn(*inputs)`` (unique storages, inputs excluded)."""
    seen, skip = {}, {t.untyped_storage().data_ptr() for t in inputs if torch.is_tensor(t)}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    del out
    return sum(seen.values())


def measure_group(named, repeats, device):
    """Time a group of ``(name, module, inputs)`` *interleaved* (round-robin over the variants,
    best of ``repeats``), so that load from other processes hits all of them alike.

    Returns: dict name -> dict(fwd ms, both = fwd+bwd ms, saved MiB, peak MiB (CUDA), gflop).
    """
    prepared = []
    for name, module, inputs in named:
        module = module.to(device)
        inputs = tuple(t.to(device) if torch.is_tensor(t) else t for t in inputs)
        prepared.append((name, module, inputs))

    def fwd(module, inputs):
        module.eval()
        with torch.no_grad():
            module(*inputs)

    def both(module, inputs):
        module.train()
        module.zero_grad(set_to_none=True)
        out = module(*inputs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().mean().backward()

    # on CPU the process's CPU time, not wall time: the machine may be shared, and CPU time
    # counts the work done whatever the other processes do (wall time on CUDA)
    clock = time.perf_counter if device.type == 'cuda' else time.process_time
    res = {name: {} for name, _, _ in prepared}
    for key, fn in (('fwd', fwd), ('both', both)):
        best = bm.best_of_interleaved(
            {name: (lambda fn=fn, m=module, i=inputs: fn(m, i)) for name, module, inputs in prepared},
            repeat=repeats, warmup=1, device=str(device), clock=clock)
        for name, seconds in best.items():
            res[name][key] = seconds * 1e3
    for name, module, inputs in prepared:
        module.train()

        def loss(*a, module=module):
            out = module(*a)
            out = out[0] if isinstance(out, (tuple, list)) else out
            return out.float().mean()

        res[name]['saved'] = saved_bytes(loss, inputs) / 2**20
        res[name]['peak'] = float('nan')
        if device.type == 'cuda':
            with bm.PeakMemory(device) as mem:
                loss(*inputs).backward()
            module.zero_grad(set_to_none=True)
            res[name]['peak'] = mem.mib
        module.eval()
        with torch.no_grad():
            res[name]['gflop'] = bm.count_flops(lambda m=module, i=inputs: m(*i)) / 1e9
    return res


class _Wrap(nn.Module):
    """Calls a layer with fixed keyword arguments (what the benchmark times)."""

    def __init__(self, layer, **kwargs):
        super().__init__()
        self.layer, self.kwargs = layer, kwargs

    def forward(self, *args):
        return self.layer(*args, **self.kwargs)[0]


class _QKShared(nn.Module):
    """A sharing layer fed the previous layer's (q, k) (``share_impl='qk'``)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, q, k):
        return self.layer(x, (q, k))[0]


class _DeiT(nn.Module):
    def __init__(self, arch):
        super().__init__()
        from mmpretrain.models import VisionTransformer
        self.backbone = VisionTransformer(arch=arch, img_size=224, patch_size=16, drop_path_rate=0.)
        self.head = nn.Linear(self.backbone.embed_dims, 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


class _PSViT(nn.Module):
    def __init__(self, arch, **kwargs):
        super().__init__()
        self.backbone = PSViT(arch, drop_path_rate=0., **kwargs)
        self.head = nn.Linear(self.backbone.embed_dims[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def row(name, r, ref=None):
    ratio = ''
    if ref is not None:
        ratio = (f"  x{r['fwd'] / ref['fwd']:.2f} / x{r['both'] / ref['both']:.2f} / "
                 f"x{r['saved'] / ref['saved']:.2f} / x{r['gflop'] / ref['gflop']:.2f}")
    peak = '' if r['peak'] != r['peak'] else f"  peak {r['peak']:8.1f} MiB"
    echo(f"  {name:<34s} {r['gflop']:7.3f} GFLOP  fwd {r['fwd']:8.2f} ms  fwd+bwd {r['both']:8.2f} ms  "
         f"saved {r['saved']:8.1f} MiB{peak}{ratio}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                epilog='Example:' + __doc__.split('Example:')[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-size', type=int, default=8, help='batch for the layer benchmark')
    p.add_argument('--model-batch-size', type=int, default=2, help='batch for the model benchmark')
    p.add_argument('--repeats', type=int, default=5, help='timed rounds (best kept)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--device', default='cpu', help='cpu or cuda[:i]')
    p.add_argument('--skip-models', action='store_true', help='layers only (seconds)')
    p.add_argument('--sizes', nargs='+', default=['tiny', 'small', 'base'],
                   choices=['tiny', 'small', 'base'], help='PSViT / DeiT sizes of the model benchmark')
    p.add_argument('--resolutions', nargs='+', type=int, default=[224, 512],
                   help='input sizes of the whole-network comparison (DeiT only at 224)')
    add_progress_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    clock = 'wall' if dev.type == 'cuda' else 'CPU'
    print(f'device {dev} ({clock} time), {torch.get_num_threads()} threads, torch {torch.__version__}; ratios are '
          'fwd / fwd+bwd / saved memory / GFLOP vs the full layer (or DeiT)')
    results = {}
    B = args.batch_size
    groups = 4 + (0 if args.skip_models else len(args.sizes) * len(args.resolutions))  # 2 shapes x (block, attention) + models
    with Progress(groups, 'measured groups', enabled=not args.no_progress) as bar:
        for label, N, C, h in [('DeiT-Ti layer (N=197, C=192, h=3)', 197, 192, 3),
                               ('PSViT-tiny stage 0 (N=785, C=96, h=3)', 785, 96, 3)]:
            echo(f'\n{label}, batch {B}')
            x = torch.randn(B, N, C)
            with torch.no_grad():
                amap = torch.softmax(torch.randn(B, h, N, N), -1)
            for unit in ('block', 'attention'):
                if unit == 'block':
                    full, shared = PSViTBlock(C, h), PSViTBlock(C, h, share=True)
                else:
                    full, shared = FullAttention(C, h), SharedAttention(C, h)
                with torch.no_grad():
                    qk = tuple(torch.randn(B, h, N, C // h) for _ in range(2))
                g = measure_group([('full', _Wrap(full), (x, )),
                                   ('map', _Wrap(full, return_attn='map'), (x, )),
                                   ('shared', _Wrap(shared), (x, amap)),
                                   ('qk', _Wrap(full, return_attn='qk'), (x, )),
                                   ('shared_qk', _QKShared(shared), (x, ) + qk)], args.repeats, dev)
                bar.update()
                r_full, r_map, r_shared = g['full'], g['map'], g['shared']
                row(f'{unit}: full (SDPA)', r_full)
                row(f'{unit}: full + map handed on', r_map, r_full)
                row(f'{unit}: shared (map)', r_shared, r_full)
                row(f'{unit}: full + (q, k) handed on', g['qk'], r_full)
                row(f'{unit}: shared (q, k; fused)', g['shared_qk'], r_full)
                results[(label, unit, 'qk')] = (r_full, g['qk'], g['shared_qk'])
                results[(label, unit, 'map')] = (r_full, r_map, r_shared)
        if not args.skip_models:
            Bm = args.model_batch_size
            deit = {'tiny': 'deit-tiny', 'small': 'deit-small', 'base': 'deit-base'}
            for res in args.resolutions:
                x = torch.randn(Bm, 3, res, res)
                for size in args.sizes:
                    echo(f'\nmodels at {res}x{res}, batch {Bm}: {size}')
                    no_share = [0] * len(PSViT.arch_zoo[size]['share_attn'])
                    # the whole network with sharing against the same network with every shared
                    # layer replaced by a full one; DeiT (224-px position embedding) only at 224
                    named = [('deit', _DeiT(deit[size]), (x, ))] if res == 224 else []
                    named += [('noshare', _PSViT(size, share_attn=no_share, img_size=res), (x, )),
                              ('preset', _PSViT(size, img_size=res), (x, )),
                              ('preset_qk', _PSViT(size, share_impl='qk', img_size=res), (x, )),
                              ('preset_map', _PSViT(size, share_impl='map', img_size=res), (x, ))]
                    g = measure_group(named, args.repeats, dev)
                    bar.update()
                    r_noshare = g['noshare']
                    r_ref = g.get('deit')
                    if r_ref is not None:
                        row(f'DeiT-{size}', r_ref)
                    row(f'PSViT-{size}, no sharing', r_noshare, r_ref)
                    impl = inspect.signature(PSViT).parameters['share_impl'].default
                    row(f'PSViT-{size} (preset, default {impl!r})', g['preset'], r_ref)
                    row(f"PSViT-{size} (preset, share_impl='qk')", g['preset_qk'], r_ref)
                    row(f"PSViT-{size} (preset, share_impl='map')", g['preset_map'], r_ref)
                    for key, label in (('preset', impl), ('preset_qk', 'qk'), ('preset_map', 'map')):
                        r = g[key]
                        echo(f"  whole network, sharing ({label}) vs no sharing at {res}: "
                             f"fwd x{r['fwd'] / r_noshare['fwd']:.2f}, "
                             f"fwd+bwd x{r['both'] / r_noshare['both']:.2f}, "
                             f"saved x{r['saved'] / r_noshare['saved']:.2f}")
    print('\nsummary: shared / full (goal <= 0.75); pair = (full handing on + shared) / (2 x full), i.e.'
          ' what sharing saves in a network, the hand-off included; map / qk = share_impl:')
    for (label, unit, impl), (r_full, r_map, r_shared) in results.items():
        pair = {k: (r_map[k] + r_shared[k]) / (2 * r_full[k]) for k in ('fwd', 'both', 'saved', 'gflop')}
        print(f"  {label:<40s} {unit:<9s} {impl:<3s} fwd {r_shared['fwd'] / r_full['fwd']:.2f}  "
              f"fwd+bwd {r_shared['both'] / r_full['both']:.2f}  saved {r_shared['saved'] / r_full['saved']:.2f}  "
              f"GFLOP {r_shared['gflop'] / r_full['gflop']:.2f}   | pair: fwd {pair['fwd']:.2f}  "
              f"fwd+bwd {pair['both']:.2f}  saved {pair['saved']:.2f}  GFLOP {pair['gflop']:.2f}")
    return results


if __name__ == '__main__':
    main()
