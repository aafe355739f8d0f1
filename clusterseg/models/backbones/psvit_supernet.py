"""The PSViT search space ("compact set") and its weight-sharing supernet.

PSViT learns "the number of tokens in each layer and the choices of layers sharing attention"
from data (arXiv 2108.03428, abstract). The paper's search procedure is not available; ours
[R] (docs/en/psvit.md) is one-shot NAS in the SPOS style:

* **compact set**: an architecture is ``(pool_after, share_attn)`` for a fixed width schedule
  (``embed_dims`` / ``num_heads`` per stage, ``depth`` layers). ``pool_after`` holds
  ``num_stages - 1`` strictly increasing layer indices (optionally restricted to
  ``pool_candidates``); ``share_attn`` marks layers that reuse the previous layer's map, never the
  first layer of a stage, and at most ``max_share_chain`` consecutive sharing layers.
* **supernet**: one weight set for all architectures. Layer ``l`` keeps one block per width it can
  take (the stages it can fall into); a sharing layer uses the *same* block with the V rows of its
  ``qkv`` weight and its ``proj`` (so full and shared versions share V / proj / MLP weights).
  Pooling ``i`` (``dims[i] -> dims[i + 1]``) is one module whatever its position. Every training
  step samples one architecture uniformly from the compact set.
"""
import itertools
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_

from clusterseg.models.layers.token_pool import TokenPool, check_attention_sharing
from .psvit import PSViTBlock, _stage_of_layers


class PSViTSearchSpace:
    """The compact set of pooling positions and sharing masks.

    Args:
        depth (int): number of layers L.
        num_stages (int): token resolutions (number of poolings + 1).
        pool_candidates (Sequence[int] | None): layers after which a pooling may sit
            (default: every layer 0..L-2).
        max_share_chain (int): most consecutive sharing layers (1: a map is reused once).
    """

    def __init__(self, depth, num_stages, pool_candidates=None, max_share_chain=1):
        self.depth, self.num_stages = depth, num_stages
        cands = list(range(depth - 1)) if pool_candidates is None else sorted(set(pool_candidates))
        if any(not 0 <= p < depth - 1 for p in cands) or len(cands) < num_stages - 1:
            raise ValueError(f'pool_candidates must hold >= {num_stages - 1} layer indices in '
                             f'0..{depth - 2}, got {cands}')
        self.pool_candidates = cands
        if max_share_chain < 0:
            raise ValueError(f'max_share_chain must be >= 0, got {max_share_chain}')
        self.max_share_chain = max_share_chain

    # -------------------------------------------------------------- membership
    def repair(self, pool_after, share):
        """Make ``share`` valid for ``pool_after``: stage-first layers full, chains cut."""
        stage = _stage_of_layers(self.depth, pool_after)
        out, run = [], 0
        for l in range(self.depth):
            ok = bool(share[l]) and l > 0 and stage[l] == stage[l - 1] and run < self.max_share_chain
            out.append(ok)
            run = run + 1 if ok else 0
        return tuple(out)

    def is_valid(self, arch):
        pool_after, share = arch
        return (len(pool_after) == self.num_stages - 1 and list(pool_after) == sorted(set(pool_after))
                and all(p in self.pool_candidates for p in pool_after) and len(share) == self.depth
                and self.repair(pool_after, share) == tuple(share))

    def pool_choices(self):
        return list(itertools.combinations(self.pool_candidates, self.num_stages - 1))

    def share_choices(self, pool_after):
        """All valid sharing masks for one pooling layout."""
        stage = _stage_of_layers(self.depth, pool_after)
        masks = [()]
        for l in range(self.depth):
            new = []
            for m in masks:
                new.append(m + (False, ))
                run = 0
                while run < len(m) and m[len(m) - 1 - run]:
                    run += 1
                if l > 0 and stage[l] == stage[l - 1] and run < self.max_share_chain:
                    new.append(m + (True, ))
            masks = new
        return masks

    def __iter__(self):
        for pool_after in self.pool_choices():
            for share in self.share_choices(pool_after):
                yield (tuple(pool_after), share)

    def size(self):
        return sum(len(self.share_choices(p)) for p in self.pool_choices())

    # -------------------------------------------------------------- sampling
    def sample(self, rng=random):
        pool_after = tuple(sorted(rng.sample(self.pool_candidates, self.num_stages - 1)))
        share = tuple(rng.random() < 0.5 for _ in range(self.depth))
        return pool_after, self.repair(pool_after, share)

    def mutate(self, arch, rng=random, prob=0.3):
        """Move each pooling to a neighbouring candidate and flip each share bit with ``prob``."""
        pool_after, share = list(arch[0]), list(arch[1])
        for i in range(len(pool_after)):
            if rng.random() < prob:
                pool_after[i] = rng.choice(self.pool_candidates)
        pool_after = sorted(set(pool_after))
        while len(pool_after) < self.num_stages - 1:  # collisions: refill
            pool_after = sorted(set(pool_after) | {rng.choice(self.pool_candidates)})
        share = [(not s) if rng.random() < prob else s for s in share]
        return tuple(pool_after), self.repair(pool_after, share)

    def crossover(self, a, b, rng=random):
        pool_after = a[0] if rng.random() < 0.5 else b[0]
        share = [x if rng.random() < 0.5 else y for x, y in zip(a[1], b[1])]
        return tuple(pool_after), self.repair(pool_after, share)


class PSViTSupernet(nn.Module):
    """Weight-sharing supernet over :class:`PSViTSearchSpace` (a classifier).

    Args:
        embed_dims (Sequence[int]): channels per stage.
        num_heads (Sequence[int]): heads per stage.
        depth (int): layers.
        num_classes (int): classifier outputs.
        img_size (int): input size (square); sets the position-embedding grid.
        patch_size (int): patch size.
        space (PSViTSearchSpace): the compact set (decides which widths each layer needs).
        mlp_ratio (float), pool_type (str), pool_dims (str), pool_kernel (int): as in PSViT.
        drop_path_rate (float): stochastic depth, linear over the layers.
    """

    def __init__(self, embed_dims, num_heads, depth, num_classes, space, img_size=56, patch_size=8,
                 mlp_ratio=4., pool_type='dwconv', pool_dims='2d', pool_kernel=3, drop_path_rate=0.):
        super().__init__()
        if len(embed_dims) != space.num_stages or len(num_heads) != space.num_stages:
            raise ValueError('embed_dims / num_heads need one entry per stage of the search space')
        self.embed_dims, self.num_heads, self.depth, self.space = list(embed_dims), list(num_heads), depth, space
        self.patch_size, self.img_size, self.mlp_ratio = patch_size, img_size, mlp_ratio
        self.pool_type, self.pool_dims, self.pool_kernel = pool_type, pool_dims, pool_kernel
        grid = math.ceil(img_size / patch_size)
        self.grid = (grid, grid)
        self.patch_embed = nn.Conv2d(3, embed_dims[0], patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[0]))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dims[0]))
        # stages each layer can fall into, over all pooling layouts
        reach = [set() for _ in range(depth)]
        for pool_after in space.pool_choices():
            for l, t in enumerate(_stage_of_layers(depth, pool_after)):
                reach[l].add(t)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.layers = nn.ModuleList()
        for l in range(depth):
            blocks = nn.ModuleDict()
            for t in sorted(reach[l]):
                key = self._key(t)
                if key not in blocks:
                    blocks[key] = PSViTBlock(embed_dims[t], num_heads[t], share=False,
                                             mlp_ratio=mlp_ratio, drop_path=dpr[l])
            self.layers.append(blocks)
        self.pools = nn.ModuleList([
            TokenPool(embed_dims[i], embed_dims[i + 1], pool_type=pool_type, pool_dims=pool_dims,
                      kernel_size=pool_kernel) for i in range(space.num_stages - 1)])
        self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self._init()

    def _key(self, stage):
        return f'c{self.embed_dims[stage]}h{self.num_heads[stage]}'

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.pos_embed, std=.02)
        trunc_normal_(self.cls_token, std=.02)

    def arch_dict(self, arch):
        """The PSViT ``arch`` dict of one candidate ``(pool_after, share_attn)``."""
        pool_after, share = arch
        return dict(embed_dims=list(self.embed_dims), num_heads=list(self.num_heads), depth=self.depth,
                    pool_after=list(pool_after), share_attn=[int(s) for s in share],
                    patch_size=self.patch_size, mlp_ratio=self.mlp_ratio, pool_type=self.pool_type,
                    pool_dims=self.pool_dims, pool_kernel=self.pool_kernel)

    @staticmethod
    def _shared_block(block, x, attn):
        """A full block run as a sharing layer: its own V rows of ``qkv`` and ``proj`` only."""
        a = block.attn
        B, N, C = x.shape
        h = a.num_heads
        y = block.norm1(x)
        bias = a.qkv.bias[2 * C:] if a.qkv.bias is not None else None
        v = F.linear(y, a.qkv.weight[2 * C:], bias).view(B, N, h, C // h).transpose(1, 2)  # (B, h, N, d)
        y = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = x + block.drop_path(a.proj_drop(a.proj(y)))
        return x + block.drop_path(block.mlp(block.norm2(x), None))

    def forward(self, x, arch):
        """x: (B, 3, H, W) with H = W = img_size; arch: ``(pool_after, share_attn)`` -> logits."""
        pool_after, share = arch
        check_attention_sharing(share, [self.num_heads[t] for t in _stage_of_layers(self.depth, pool_after)],
                                _stage_of_layers(self.depth, pool_after), pool_after)
        in_shape = tuple(x.shape)
        x = self.patch_embed(x)  # (B, C0, h, w)
        B, _, h, w = x.shape
        if (h, w) != self.grid:
            raise ValueError(f'the supernet is built for {self.img_size}x{self.img_size} inputs '
                             f'(a {self.grid[0]}x{self.grid[1]} token grid), got images of shape '
                             f'{in_shape} ({h}x{w} tokens): resize or crop to {self.img_size}px')
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.flatten(2).transpose(1, 2)], 1) + self.pos_embed
        hw, stage, attn = (h, w), 0, None
        for l in range(self.depth):
            block = self.layers[l][self._key(stage)]
            if share[l]:
                x = self._shared_block(block, x, attn)
            else:
                want = l + 1 < self.depth and share[l + 1]
                x, attn = block(x, None, return_attn=want)
            if l in pool_after:
                x, hw = self.pools[stage](x, hw)
                stage += 1
        return self.head(self.norm(x[:, 0]))

    def subnet_state_dict(self, arch):
        """Weights inherited by the PSViT built from :meth:`arch_dict` (``backbone.*`` keys for the
        PSViT's ``cls_token`` output and mmpretrain ``VisionTransformerClsHead`` keys)."""
        pool_after, share = arch
        stage = _stage_of_layers(self.depth, pool_after)
        state = {'backbone.patch_embed.weight': self.patch_embed.weight,
                 'backbone.patch_embed.bias': self.patch_embed.bias,
                 'backbone.cls_token': self.cls_token, 'backbone.pos_embed': self.pos_embed}
        for l in range(self.depth):
            block = self.layers[l][self._key(stage[l])]
            for k, v in block.state_dict().items():
                if share[l] and k.startswith('attn.qkv.'):
                    C = v.shape[0] // 3
                    k, v = k.replace('attn.qkv.', 'attn.v.'), v[2 * C:]
                state[f'backbone.layers.{l}.{k}'] = v
        for i, pool in enumerate(self.pools):
            for k, v in pool.state_dict().items():
                state[f'backbone.pools.{i}.{k}'] = v
        last = self.space.num_stages - 1
        state[f'backbone.norm{last}.weight'], state[f'backbone.norm{last}.bias'] = self.norm.weight, self.norm.bias
        state['head.layers.head.weight'], state['head.layers.head.bias'] = self.head.weight, self.head.bias
        return {k: v.detach().clone() for k, v in state.items()}
