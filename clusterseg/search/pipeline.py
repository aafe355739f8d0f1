"""The PSViT search end to end: data, supernet training, scoring, the search, the written config.

1. The supernet (:class:`~clusterseg.search.PSViTSupernet`) is trained on an ImageNet-layout set
   (``meta/train.txt``) with one architecture sampled uniformly from the compact set per step.
2. Every candidate's MACs come from our counter on the PSViT classifier it describes
   (:class:`~clusterseg.search.cost.CandidateCost`).
3. Candidates within the budget are scored by top-1 (ties: lower loss) on ``meta/val.txt`` with
   the inherited supernet weights: exhaustively when the set is small (``search='auto'``), else
   by an evolutionary search (:mod:`clusterseg.search.evolution`).
4. The best one is written as a config inheriting a base config, plus ``search_results.json``
   with every scored candidate (and optionally the subnet's inherited weights).

:func:`run` takes the namespace of ``tools/search/psvit_search.py`` (its ``--help`` documents
every field).
"""
import json
import math
import os
import os.path as osp
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clusterseg.utils.progress import Progress, echo
from .cost import CandidateCost
from .evolution import describe, evolutionary_search, exhaustive_search
from .space import PSViTSearchSpace
from .supernet import PSViTSupernet

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
CONFIG_NAME = 'psvit-searched_1xb32-10e_synthetic-imagenet-64px.py'


def log(msg):
    echo(f'[psvit_search {time.strftime("%H:%M:%S")}] {msg}')


def load_split(root, split, size):
    """meta/{split}.txt of an ImageNet-layout folder -> (images (N, 3, S, S) normalised, labels (N, ))."""
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
        imgs.append(torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1))  # (3, S, S)
        labels.append(int(label))
    x = (torch.stack(imgs) - MEAN) / STD
    return x, torch.tensor(labels)


def train_supernet(net, space, data, epochs, batch_size, lr, rng, progress=True):
    """SPOS training: AdamW, warm-up over the first epoch then cosine, flips, label smoothing 0.1;
    one architecture sampled from ``space`` (with ``rng``) per step."""
    x, y = data
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = max(1, math.ceil(len(x) / batch_size))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1., (i + 1) / max(1, steps_per_epoch)) * 0.5 * (1 + math.cos(math.pi * i / total)))
    net.train()
    with Progress(total, 'supernet training steps', enabled=progress) as bar:
        for epoch in range(epochs):
            perm = torch.randperm(len(x))
            losses, correct = [], 0
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size:(i + 1) * batch_size]
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
            log(f'supernet epoch {epoch + 1}/{epochs}: loss {sum(losses) / len(losses):.4f}, '
                f'train top-1 (sampled archs) {100 * correct / len(x):.1f}%')


@torch.no_grad()
def evaluate(net, arch, data, batch_size=64):
    """Top-1 (%) and mean cross-entropy of ``arch`` with the supernet's weights."""
    net.eval()
    x, y = data
    correct, loss = 0, 0.
    for i in range(0, len(x), batch_size):
        logits = net(x[i:i + batch_size], arch)
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction='sum').item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return 100. * correct / len(x), loss / len(x)


def search(net, space, val, args, rng, num_classes):
    """Search ``space`` under ``args.flops_budget`` -> (best, {arch: (top-1, -loss)}, cost, shape)."""
    shape = tuple(args.flops_shape or (args.img_size, args.img_size))
    cost = CandidateCost(net, shape, num_classes)

    def score(arch):
        acc, loss = evaluate(net, arch, val)
        log(f'  {describe(arch)}: {cost.macs(arch):.2f} M MACs, val top-1 {acc:.1f}%, loss {loss:.4f}')
        return acc, -loss

    size = space.size()
    mode = args.search
    if mode == 'auto':
        mode = 'exhaustive' if size <= args.population * args.generations else 'evolution'
    log(f'compact set: {size} architectures; search: {mode}; budget {args.flops_budget} M MACs at '
        f'{shape[0]}x{shape[1]}')
    show = not args.no_progress
    if mode == 'exhaustive':
        best, scores = exhaustive_search(space, cost.macs, args.flops_budget, score, log=log,
                                         progress=show)
    else:
        best, scores = evolutionary_search(
            space, cost.macs, args.flops_budget, score, rng, population=args.population,
            generations=args.generations, parents=args.parents, mutation_prob=args.mutation_prob,
            log=log, progress=show)
    return best, scores, cost, shape


def write_config(path, base, arch_dict, img_size, info, repo=None):
    """Write a config inheriting ``base`` with ``arch_dict`` as the backbone's arch; ``base`` is
    referred to relatively when ``path`` lies inside ``repo``, else absolutely."""
    base_abs = osp.abspath(base)
    out_dir = osp.dirname(osp.abspath(path))
    inside = repo is not None and osp.commonpath([out_dir, osp.abspath(repo)]) == osp.abspath(repo)
    base_ref = osp.relpath(base_abs, out_dir) if inside else base_abs
    arch_lines = ',\n'.join(f'            {k}={v!r}' for k, v in arch_dict.items())
    text = (
        f'# PSViT architecture found by tools/search/psvit_search.py.\n'
        + ''.join(f'# {line}\n' for line in info) +
        f"_base_ = ['{base_ref}']\n"
        'model = dict(\n'
        '    backbone=dict(\n'
        f'        img_size={img_size},\n'
        '        arch=dict(\n'
        '            _delete_=True,\n'
        f'{arch_lines})),\n'
        f"    head=dict(in_channels={arch_dict['embed_dims'][-1]}))\n")
    os.makedirs(out_dir, exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def run(args, repo=None):
    """The whole search for the CLI's namespace ``args``; ``repo`` resolves a relative
    ``args.base_config`` and decides whether the written config refers to it relatively.
    Returns the contents of ``search_results.json``."""
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    if len(args.embed_dims) != len(args.num_heads):
        raise ValueError(f'--embed-dims {args.embed_dims} and --num-heads {args.num_heads} need one '
                         f'entry per stage')
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
        train_supernet(net, space, train, args.epochs, args.batch_size, args.lr, rng,
                       progress=not args.no_progress)
        torch.save(net.state_dict(), ckpt)
        log(f'supernet saved to {ckpt}')

    best, scores, cost, shape = search(net, space, val, args, rng, num_classes)
    arch_dict = net.arch_dict(best)
    acc = scores[best][0]
    mmacs, mparams = cost(best)
    log(f'best: {describe(best)}: {mmacs:.2f} M MACs, {mparams:.3f} M params, '
        f'supernet val top-1 {acc:.1f}%')
    results = dict(
        budget_mmacs=args.flops_budget, flops_shape=list(shape), space_size=space.size(),
        best=dict(arch=arch_dict, mmacs=mmacs, mparams=mparams, top1=acc),
        scored=[dict(pool_after=list(a[0]), share_attn=[int(s) for s in a[1]], mmacs=cost.macs(a),
                     top1=s[0], loss=-s[1]) for a, s in sorted(scores.items(), key=lambda kv: kv[1], reverse=True)])
    with open(osp.join(args.work_dir, 'search_results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    out = args.out_config or osp.join(args.work_dir, CONFIG_NAME)
    info = [f'search space: depth {args.depth}, dims {args.embed_dims}, heads {args.num_heads}, '
            f'{space.size()} architectures; budget {args.flops_budget} M MACs at {shape[0]}x{shape[1]}',
            f'chosen: {describe(best)}: {mmacs:.2f} M MACs, {mparams:.3f} M params '
            f'(classifier, {num_classes} classes), supernet val top-1 {acc:.1f}%',
            'retrain from scratch (or load_from the --export-weights file to start from the supernet)']
    base = args.base_config
    if repo is not None and not osp.exists(base) and osp.exists(osp.join(repo, base)):
        base = osp.join(repo, base)
    write_config(out, base, arch_dict, args.img_size, info, repo=repo)
    log(f'config written to {out}')
    if args.export_weights:
        wpath = osp.join(args.work_dir, 'psvit-searched_inherited.pth')
        torch.save(dict(state_dict=net.subnet_state_dict(best), meta=dict(arch=arch_dict)), wpath)
        log(f'inherited weights written to {wpath}')
    log(f'done in {time.time() - t0:.1f} s')
    return results
