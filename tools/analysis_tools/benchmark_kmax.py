"""Time and peak memory of a kMaX-DeepLab-R50 forward vs mmdet's Mask2Former-R50, in the same run.

Both models are built from their configs (kMaX: ``configs/kmax_deeplab/...r50...``; Mask2Former:
mmdet's ``mask2former_r50_8xb2-lsj-50e_coco-panoptic.py`` from the installed package), batch 1,
eval mode, no grad, random weights (time does not depend on them). The forward is backbone +
head up to the per-query class and mask logits (mmdet's ``_forward``); post-processing is excluded.
The best call's time is split into the backbone, the pixel decoder and the transformer decoder
(+ predictor) to show where it goes.

Measured with the shared harness (``clusterseg.utils.benchmark``, as every benchmark tool): each
model / size in its own fresh process; time = best of ``--repeat`` calls after one warm-up; GFLOP
by FlopCounterMode with the GEMM fraction against this machine's fp32 GEMM measured in the same
run; peak memory = growth of the worker's resident set over the timed calls (its high-water mark minus
its resident set just before them). A progress bar over the (size, model) runs goes to stderr
(--no-progress: none).

Example:
    python tools/analysis_tools/benchmark_kmax.py --sizes 641 1281 --threads 2
"""
import argparse
import json
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from clusterseg.utils import benchmark as bm  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402

KMAX_CFG = osp.join(REPO, 'configs/kmax_deeplab/kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py')


def _build(model_name, size):
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import clusterseg.models  # noqa: F401
    init_default_scope('mmdet')
    if model_name == 'kmax':
        cfg = Config.fromfile(KMAX_CFG)
        cfg.model.input_size = (size, size)
    else:
        import mmdet
        cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim/configs/mask2former/'
                                       'mask2former_r50_8xb2-lsj-50e_coco-panoptic.py'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def _parts(model_name, model, x):
    """Timed stages: backbone, pixel decoder (timed by hooks inside the head call), the rest of the head."""
    from mmdet.structures import DetDataSample
    ds = [DetDataSample(metainfo=dict(batch_input_shape=tuple(x.shape[-2:]), img_shape=tuple(x.shape[-2:])))]
    head = model.panoptic_head
    marks = {}
    pre = head.pixel_decoder.register_forward_pre_hook(lambda *a: marks.__setitem__('start', time.perf_counter()))
    post = head.pixel_decoder.register_forward_hook(lambda *a: marks.__setitem__('end', time.perf_counter()))
    try:
        t0 = time.perf_counter()
        feats = model.extract_feat(x)
        t1 = time.perf_counter()
        head(feats, ds)  # kMaX (eval): pixel decoder + kMaX decoder; Mask2Former: its whole head
        t2 = time.perf_counter()
    finally:
        pre.remove(), post.remove()
    pixel = marks['end'] - marks['start']
    return dict(backbone=t1 - t0, pixel_decoder=pixel, transformer_decoder=t2 - t1 - pixel)


def point(model_name, size, repeat):
    """Worker: one model at one size; the parts of the fastest call."""
    import torch
    torch.set_grad_enabled(False)
    model = _build(model_name, size)
    x = torch.randn(1, 3, size, size)
    params = sum(p.numel() for p in model.parameters())
    parts = []
    m = bm.measure(lambda: parts.append(_parts(model_name, model, x)), repeat=max(1, repeat), warmup=1)
    best = parts[1 + m['times'].index(m['time_s'])]  # parts[0]: the warm-up (FLOP-counted) call
    return dict(time_s=m['time_s'], flops=m['flops'], peak_mem_mib=m['peak_mem_mib'], params=params,
                threads=torch.get_num_threads(), parts=best)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     epilog='Example:' + __doc__.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[641, 1281],
                        help='square input sizes (kMaX is built for each)')
    parser.add_argument('--repeat', type=int, default=2, help='timed forwards after the warm-up')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads per run')
    parser.add_argument('--json', help='save the rows here (JSON)')
    parser.add_argument('--csv', help="save the rows here (the harness's CSV schema)")
    add_progress_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    gemm = bm.run_isolated(bm.gemm_gflops, name='fp32 GEMM', threads=args.threads)
    print(f'fp32 GEMM on this machine ({args.threads} threads): {gemm:.1f} GFLOP/s')
    rows = []
    runs = [(size, name) for size in args.sizes for name in ('kmax', 'mask2former')]
    with Progress(len(runs), 'forward runs', enabled=not args.no_progress) as bar:
        for size, name in runs:
            try:
                r = bm.run_isolated(point, dict(model_name=name, size=size, repeat=args.repeat),
                                    name=f'{name} @ {size}', threads=args.threads)
            except bm.WorkerError as e:
                raise SystemExit(f'{e}\n{e.log[-3000:]}')
            bar.update()
            parts = r.pop('parts')
            note = ', '.join(f'{k} {v:.2f}s' for k, v in parts.items())
            rows.append(bm.make_row(name, 'infer', size, 1, gemm_gflops_per_s=gemm, note=note, **r))
            rows[-1]['parts'] = parts
            row = rows[-1]
            echo(f"{name:12s} {size}x{size}: {row['time_s']:.2f} s ({note}), peak +{row['peak_mem_mib']:.0f} MiB, "
                 f"{row['params_M']:.1f}M params, {row['gflop']:.0f} GFLOP, GEMM x{row['gemm_fraction']:.2f}")
    for size in args.sizes:
        k, m = [r for r in rows if r['height'] == size and r['model'] == 'kmax'][0], \
            [r for r in rows if r['height'] == size and r['model'] == 'mask2former'][0]
        print(f'{size}x{size}: kMaX / Mask2Former time {k["time_s"] / m["time_s"]:.2f}x, '
              f'peak memory {k["peak_mem_mib"] / max(m["peak_mem_mib"], 1e-3):.2f}x')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    if args.csv:
        bm.write_csv(rows, args.csv)
    return rows


if __name__ == '__main__':
    main()
