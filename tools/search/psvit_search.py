"""PSViT architecture search: train a weight-sharing supernet once, then search the compact set
of pooling positions and attention-sharing masks under a FLOPs budget, and write a config.

1. The supernet (clusterseg/models/backbones/psvit_supernet.py) is trained on an ImageNet-layout
   set (``meta/train.txt``) with one architecture sampled uniformly from the compact set per step.
2. Every candidate's MACs come from our counter (clusterseg/utils/complexity.py) on the PSViT
   classifier it describes, at the supernet's input size (or --flops-shape).
3. Candidates within the budget are scored by top-1 (ties: lower loss) on ``meta/val.txt`` with
   the inherited supernet weights: exhaustively when the set is small (``--search auto``), else by
   an evolutionary search (mutation + crossover, top-k parents).
4. The best one is written as a config inheriting --base-config (retrain it from scratch, or
   start from the inherited weights with --export-weights and ``load_from``), plus
   ``search_results.json`` with every scored candidate.

Progress bars (supernet steps, MACs counting, candidate scoring) go to stderr; the log lines on
stdout and the written files are the same with --no-progress.

Example:
    python tools/misc/make_synthetic_data.py --task cls --out data/synthetic_imagenet
    python tools/search/psvit_search.py --data-root data/synthetic_imagenet \\
        --work-dir work_dirs/psvit_search --flops-budget 40 --epochs 10
    python tools/train.py work_dirs/psvit_search/psvit-searched_1xb32-10e_synthetic-imagenet-64px.py
"""
import argparse
import json
import math
import os
import os.path as osp
import random
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from clusterseg.models.backbones.psvit import PSViT, PSViTBlock, _stage_of_layers  # noqa: E402
from clusterseg.models.backbones.psvit_supernet import PSViTSearchSpace, PSViTSupernet  # noqa: E402
from clusterseg.models.layers.token_pool import pooled_hw  # noqa: E402
from clusterseg.utils.complexity import count_complexity  # noqa: E402
from clusterseg.utils.progress import Progress, add_progress_argument, echo, track  # noqa: E402

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
DEFAULT_BASE = 'configs/psvit/psvit-tiny_1xb32-10e_synthetic-imagenet-64px.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                epilog='Example:' + __doc__.split('Example:')[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', required=True, help='ImageNet-layout root with meta/{train,val}.txt')
    p.add_argument('--work-dir', required=True, help='supernet checkpoint, results and the config go here')
    p.add_argument('--flops-budget', type=float, required=True, help='MACs budget in M (our counter)')
    p.add_argument('--flops-shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='input size for counting (default: --img-size)')
    g = p.add_argument_group('supernet')
    g.add_argument('--embed-dims', type=int, nargs='+', default=[32, 64, 96])
    g.add_argument('--num-heads', type=int, nargs='+', default=[1, 2, 3])
    g.add_argument('--depth', type=int, default=6)
    g.add_argument('--patch-size', type=int, default=8)
    g.add_argument('--img-size', type=int, default=56)
    g.add_argument('--pool-type', default='dwconv', choices=['max', 'avg', 'dwconv'])
    g.add_argument('--pool-candidates', type=int, nargs='+', default=None,
                   help='layers after which a pooling may sit (default: all)')
    g.add_argument('--max-share-chain', type=int, default=1,
                   help='most consecutive layers reusing one attention map')
    g.add_argument('--epochs', type=int, default=10)
    g.add_argument('--batch-size', type=int, default=32)
    g.add_argument('--lr', type=float, default=2e-3)
    g.add_argument('--supernet-ckpt', default=None, help='skip training: load this supernet')
    s = p.add_argument_group('search')
    s.add_argument('--search', default='auto', choices=['auto', 'exhaustive', 'evolution'])
    s.add_argument('--population', type=int, default=16)
    s.add_argument('--generations', type=int, default=5)
    s.add_argument('--parents', type=int, default=4)
    s.add_argument('--mutation-prob', type=float, default=0.3)
    o = p.add_argument_group('output')
    o.add_argument('--base-config', default=DEFAULT_BASE, help='config the written one inherits')
    o.add_argument('--out-config', default=None, help='path of the written config')
    o.add_argument('--export-weights', action='store_true',
                   help='also save the chosen subnet\'s inherited weights (mmpretrain layout)')
    p.add_argument('--seed', type=int, default=0)
    add_progress_argument(p)
    return p.parse_args(argv)


def log(msg):
    echo(f'[psvit_search {time.strftime("%H:%M:%S")}] {msg}')


def load_split(root, split, size):
    """meta/{split}.txt of an ImageNet-layout folder -> (images (N, 3, S, S) normalised, labels)."""
    meta = osp.join(root, 'meta', f'{split}.txt')
    if not osp.exists(meta):
        raise FileNotFoundError(f'{meta} not found: --data-root must be an ImageNet-layout folder '
                                f'(make one with tools/misc/make_synthetic_data.py --task cls --out {root})')
    imgs, labels = [], []
    for line in open(meta):
        if not line.strip():
            continue
        name, label = line.rsplit(maxsplit=1)
        im = Image.open(osp.join(root, split, name)).convert('RGB').resize((size, size), Image.BILINEAR)
        imgs.append(torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1))
        labels.append(int(label))
    x = (torch.stack(imgs) - MEAN) / STD
    return x, torch.tensor(labels)


class _Classifier(nn.Module):
    """The PSViT classifier a candidate describes (what the FLOPs are counted on)."""

    def __init__(self, arch, img_size, num_classes):
        super().__init__()
        self.backbone = PSViT(arch=arch, img_size=img_size, drop_path_rate=0.)
        self.head = nn.Linear(arch['embed_dims'][-1], num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def train_supernet(net, space, data, args, rng):
    x, y = data
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = max(1, math.ceil(len(x) / args.batch_size))
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1., (i + 1) / max(1, steps_per_epoch)) * 0.5 * (1 + math.cos(math.pi * i / total)))
    net.train()
    with Progress(total, 'supernet training steps', enabled=not args.no_progress) as bar:
        for epoch in range(args.epochs):
            perm = torch.randperm(len(x))
            losses, correct = [], 0
            for i in range(steps_per_epoch):
                idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
                xb = x[idx]
                flip = torch.rand(len(idx)) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
                arch = space.sample(rng)
                logits = net(xb, arch)
                loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                correct += (logits.argmax(1) == y[idx]).sum().item()
                bar.update()
            log(f'supernet epoch {epoch + 1}/{args.epochs}: loss {sum(losses) / len(losses):.4f}, '
                f'train top-1 (sampled archs) {100 * correct / len(x):.1f}%')


@torch.no_grad()
def evaluate(net, arch, data, batch_size=64):
    net.eval()
    x, y = data
    correct, loss = 0, 0.
    for i in range(0, len(x), batch_size):
        logits = net(x[i:i + batch_size], arch)
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction='sum').item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return 100. * correct / len(x), loss / len(x)


def fmt(arch):
    return f'pool_after={list(arch[0])} share={"".join("S" if s else "F" for s in arch[1])}'


def search(net, space, val, args, rng, num_classes):
    shape = tuple(args.flops_shape or (args.img_size, args.img_size))
    flops_cache, scores = {}, {}

    # MACs are additive over the layers, so each candidate's count is composed from our counter
    # run once per (stage, full/shared) block and once on a whole classifier for the rest
    # (patch embedding, poolings, norm, head); a test checks it against the counter on the
    # written config's model.
    block_cost = {}

    def layer_macs(stage, shared, tokens):
        key = (stage, shared)
        if key not in block_cost:
            C, h = net.embed_dims[stage], net.num_heads[stage]
            blk = PSViTBlock(C, h, share=shared, mlp_ratio=net.mlp_ratio)
            x = torch.randn(1, tokens[stage], C)
            inputs = (x, torch.rand(1, h, tokens[stage], tokens[stage])) if shared else (x, )
            block_cost[key] = count_complexity(blk, inputs)['macs']
        return block_cost[key]

    tokens, hw = [], tuple(math.ceil(v / args.patch_size) for v in shape)
    for t in range(space.num_stages):
        tokens.append(1 + hw[0] * hw[1])
        hw = pooled_hw(hw, net.pool_kernel, 2, net.pool_dims)
    rest = {}

    def macs(arch):
        if arch not in flops_cache:
            stages = _stage_of_layers(net.depth, arch[0])
            body = sum(layer_macs(t, bool(s), tokens) for t, s in zip(stages, arch[1]))
            if not rest:
                r = count_complexity(_Classifier(net.arch_dict(arch), shape, num_classes),
                                     (torch.randn(1, 3, *shape), ))
                rest['macs'] = r['macs'] - body
            params = sum(p.numel() for p in _Classifier(net.arch_dict(arch), shape, num_classes).parameters())
            flops_cache[arch] = ((rest['macs'] + body) / 1e6, params / 1e6)
        return flops_cache[arch][0]

    def score(arch):
        if arch not in scores:
            acc, loss = evaluate(net, arch, val)
            scores[arch] = (acc, -loss)
            log(f'  {fmt(arch)}: {flops_cache[arch][0]:.2f} M MACs, val top-1 {acc:.1f}%, loss {loss:.4f}')
        return scores[arch]

    size = space.size()
    mode = args.search
    if mode == 'auto':
        mode = 'exhaustive' if size <= args.population * args.generations else 'evolution'
    log(f'compact set: {size} architectures; search: {mode}; budget {args.flops_budget} M MACs at '
        f'{shape[0]}x{shape[1]}')
    show = not args.no_progress
    if mode == 'exhaustive':
        fit = [a for a in track(space, size, 'counting MACs', show) if macs(a) <= args.flops_budget]
        if not fit:
            raise SystemExit(f'no architecture fits {args.flops_budget} M MACs: the cheapest needs '
                             f'{min(flops_cache.values())[0]:.2f} M')
        log(f'{len(fit)} of {size} fit the budget; scoring them')
        for a in track(fit, desc='scoring candidates', enabled=show):
            score(a)
    else:
        def sample_fit(make, tries=200):
            for _ in range(tries):
                a = make()
                if macs(a) <= args.flops_budget:
                    return a
            return None

        pop = []
        for _ in range(args.population * 10):
            a = sample_fit(lambda: space.sample(rng))
            if a is None:
                break
            if a not in pop:
                pop.append(a)
            if len(pop) == args.population:
                break
        if not pop:
            raise SystemExit(f'no sampled architecture fits {args.flops_budget} M MACs (cheapest seen: '
                             f'{min(v[0] for v in flops_cache.values()):.2f} M)')
        for gen in range(args.generations):
            for a in track(pop, desc=f'generation {gen + 1}/{args.generations}: scoring', enabled=show):
                score(a)
            ranked = sorted(scores, key=lambda a: scores[a], reverse=True)
            parents = ranked[:args.parents]
            best = ranked[0]
            log(f'generation {gen + 1}/{args.generations}: best {fmt(best)} top-1 {scores[best][0]:.1f}% '
                f'({flops_cache[best][0]:.2f} M MACs); {len(scores)} scored')
            if gen == args.generations - 1:
                break
            children = []
            for _ in range(args.population * 10):
                if len(children) == args.population:
                    break
                if rng.random() < 0.5:
                    a = sample_fit(lambda: space.mutate(rng.choice(parents), rng, args.mutation_prob), 20)
                else:
                    a = sample_fit(lambda: space.crossover(rng.choice(parents), rng.choice(parents), rng), 20)
                if a is not None and a not in scores and a not in children:
                    children.append(a)
            pop = children or pop
    best = max(scores, key=lambda a: scores[a])
    return best, scores, flops_cache, shape


def write_config(path, base, arch_dict, img_size, info):
    base_abs = osp.abspath(base)
    if not osp.exists(base_abs) and osp.exists(osp.join(REPO, base)):
        base_abs = osp.join(REPO, base)
    out_dir = osp.dirname(osp.abspath(path))
    # relative inside the repository (portable), absolute when written elsewhere
    inside = osp.commonpath([out_dir, REPO]) == REPO
    base_rel = osp.relpath(base_abs, out_dir) if inside else base_abs
    arch_lines = ',\n'.join(f'            {k}={v!r}' for k, v in arch_dict.items())
    text = (
        f'# PSViT architecture found by tools/search/psvit_search.py.\n'
        + ''.join(f'# {line}\n' for line in info) +
        f"_base_ = ['{base_rel}']\n"
        'model = dict(\n'
        '    backbone=dict(\n'
        f'        img_size={img_size},\n'
        '        arch=dict(\n'
        '            _delete_=True,\n'
        f'{arch_lines})),\n'
        f"    head=dict(in_channels={arch_dict['embed_dims'][-1]}))\n")
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    if len(args.embed_dims) != len(args.num_heads):
        raise SystemExit('--embed-dims and --num-heads need one entry per stage')
    t0 = time.time()
    train = load_split(args.data_root, 'train', args.img_size)
    val = load_split(args.data_root, 'val', args.img_size)
    num_classes = int(max(train[1].max(), val[1].max())) + 1
    log(f'data: {len(train[0])} train / {len(val[0])} val images, {num_classes} classes, '
        f'{args.img_size}px')
    space = PSViTSearchSpace(args.depth, len(args.embed_dims), args.pool_candidates, args.max_share_chain)
    net = PSViTSupernet(args.embed_dims, args.num_heads, args.depth, num_classes, space,
                        img_size=args.img_size, patch_size=args.patch_size, pool_type=args.pool_type)
    log(f'supernet: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, '
        f'{args.depth} layers, dims {args.embed_dims}')
    ckpt = osp.join(args.work_dir, 'supernet.pth')
    if args.supernet_ckpt:
        net.load_state_dict(torch.load(args.supernet_ckpt, map_location='cpu', weights_only=True))
        log(f'loaded supernet from {args.supernet_ckpt}')
    else:
        train_supernet(net, space, train, args, rng)
        torch.save(net.state_dict(), ckpt)
        log(f'supernet saved to {ckpt}')

    best, scores, flops, shape = search(net, space, val, args, rng, num_classes)
    arch_dict = net.arch_dict(best)
    acc = scores[best][0]
    log(f'best: {fmt(best)}: {flops[best][0]:.2f} M MACs, {flops[best][1]:.3f} M params, '
        f'supernet val top-1 {acc:.1f}%')
    results = dict(
        budget_mmacs=args.flops_budget, flops_shape=list(shape), space_size=space.size(),
        best=dict(arch=arch_dict, mmacs=flops[best][0], mparams=flops[best][1], top1=acc),
        scored=[dict(pool_after=list(a[0]), share_attn=[int(s) for s in a[1]], mmacs=flops[a][0],
                     top1=s[0], loss=-s[1]) for a, s in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)])
    with open(osp.join(args.work_dir, 'search_results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    out = args.out_config or osp.join(args.work_dir, 'psvit-searched_1xb32-10e_synthetic-imagenet-64px.py')
    info = [f'search space: depth {args.depth}, dims {args.embed_dims}, heads {args.num_heads}, '
            f'{space.size()} architectures; budget {args.flops_budget} M MACs at {shape[0]}x{shape[1]}',
            f'chosen: {fmt(best)}: {flops[best][0]:.2f} M MACs, {flops[best][1]:.3f} M params '
            f'(classifier, {num_classes} classes), supernet val top-1 {acc:.1f}%',
            'retrain from scratch (or load_from the --export-weights file to start from the supernet)']
    write_config(out, args.base_config, arch_dict, args.img_size, info)
    log(f'config written to {out}')
    if args.export_weights:
        wpath = osp.join(args.work_dir, 'psvit-searched_inherited.pth')
        torch.save(dict(state_dict=net.subnet_state_dict(best), meta=dict(arch=arch_dict)), wpath)
        log(f'inherited weights written to {wpath}')
    log(f'done in {time.time() - t0:.1f} s')
    return results


if __name__ == '__main__':
    main()
