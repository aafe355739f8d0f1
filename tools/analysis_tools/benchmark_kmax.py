"""Time and peak memory of a kMaX-DeepLab-R50 forward vs mmdet's Mask2Former-R50, in the same run.

Both models are built from their configs (kMaX: ``configs/kmax_deeplab/...r50...``; Mask2Former:
mmdet's ``mask2former_r50_8xb2-lsj-50e_coco-panoptic.py`` from the installed package), batch 1,
eval mode, no grad, random weights (time does not depend on them). The forward is backbone +
head up to the per-query class and mask logits (mmdet's ``_forward``); post-processing is excluded.
Each model/size runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) above the RSS before
the forward is its own. The time is the best of ``--repeat`` calls after one warm-up and is split
into the backbone, the pixel decoder and the transformer decoder (+ predictor) to show where it goes.
A progress bar over the (size, model) runs goes to stderr (--no-progress: none).

Example:
    python tools/analysis_tools/benchmark_kmax.py --sizes 641 1281 --threads 2
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from clusterseg.utils.progress import Progress, add_progress_argument, echo  # noqa: E402

KMAX_CFG = osp.join(REPO, 'configs/kmax_deeplab/kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py')


def _rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


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


def child(model_name, size, repeat, threads):
    import torch
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    model = _build(model_name, size)
    x = torch.randn(1, 3, size, size)
    params = sum(p.numel() for p in model.parameters())
    base = _rss()
    _parts(model_name, model, x)  # warm-up, also the memory measurement
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    best = None
    for _ in range(repeat):
        t = _parts(model_name, model, x)
        if best is None or sum(t.values()) < sum(best.values()):
            best = t
    print(json.dumps(dict(model=model_name, size=size, params=params, peak_rss_mb=peak / 2 ** 20,
                          time_s=sum(best.values()), parts=best)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     epilog='Example:' + __doc__.split('Example:')[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[641, 1281],
                        help='square input sizes (kMaX is built for each)')
    parser.add_argument('--repeat', type=int, default=2, help='timed forwards after the warm-up')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads per run')
    parser.add_argument('--json', help='save the results here')
    add_progress_argument(parser)
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]), args.repeat, args.threads)
    rows = []
    runs = [(size, name) for size in args.sizes for name in ('kmax', 'mask2former')]
    with Progress(len(runs), 'forward runs', enabled=not args.no_progress) as bar:
        for size, name in runs:
            out = subprocess.run([sys.executable, __file__, '--child', name, str(size), '--repeat', str(args.repeat),
                                  '--threads', str(args.threads)], capture_output=True, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            bar.update()
            line = [ln for ln in out.stdout.splitlines() if ln.startswith('{')]
            if out.returncode or not line:
                raise SystemExit(f'{name} @ {size} failed:\n{out.stderr[-3000:]}')
            rows.append(json.loads(line[-1]))
            r = rows[-1]
            parts = ', '.join(f'{k} {v:.2f}s' for k, v in r['parts'].items())
            echo(f"{name:12s} {size}x{size}: {r['time_s']:.2f} s ({parts}), peak +{r['peak_rss_mb']:.0f} MB, "
                 f"{r['params'] / 1e6:.1f}M params")
    for size in args.sizes:
        k, m = [r for r in rows if r['size'] == size and r['model'] == 'kmax'][0], \
            [r for r in rows if r['size'] == size and r['model'] == 'mask2former'][0]
        print(f'{size}x{size}: kMaX / Mask2Former time {k["time_s"] / m["time_s"]:.2f}x, '
              f'peak memory {k["peak_rss_mb"] / m["peak_rss_mb"]:.2f}x')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
