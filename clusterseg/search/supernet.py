"""The weight-sharing PSViT supernet (SPOS-style one-shot NAS [R], docs/en/psvit.md).

One weight set for all architectures of a :class:`~clusterseg.search.PSViTSearchSpace`. Layer
``l`` keeps one full block per width it can take (the stages it can fall into); a sharing layer
runs the *same* block as the backbone's sharing layer (:class:`PSViTBlock` with
:class:`~clusterseg.models.layers.token_pool.SharedAttention`) whose ``v`` is the V rows of the
full block's ``qkv`` weight, so full and shared versions share V / proj / MLP weights. Pooling
``i`` (``dims[i] -> dims[i + 1]``) is one module whatever its position. Every training step
samples one architecture uniformly from the compact set.
"""
import math

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from torch.func import functional_call

from clusterseg.models.backbones.psvit import PSViTBlock, _stage_of_layers
from clusterseg.models.layers.token_pool import TokenPool, check_attention_sharing


def as_sharing_block(tensors, dims):
    """Names / tensors of a full :class:`PSViTBlock` -> those of the sharing block it acts as:
    ``attn.qkv.*`` (3C rows: q, k, v) becomes ``attn.v.*`` (its last C rows); the rest is kept.
    Views, not copies: gradients reach the full block's weights."""
    out = {}
    for k, v in tensors.items():
        if k.startswith('attn.qkv.'):
            k, v = k.replace('attn.qkv.', 'attn.v.'), v[2 * dims:]  # (3C, ...) -> (C, ...)
        out[k] = v
    return out


class PSViTSupernet(nn.Module):
    """Weight-sharing supernet over a :class:`~clusterseg.search.PSViTSearchSpace` (a classifier).

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
        # per layer, the sharing block each full block acts as: a parameter-less template (its
        # tensors on the meta device, never registered) called with the full block's tensors
        self._sharing_templates = {}
        self.drop_path_rates = dpr
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

    def _shared_block(self, layer, key, x, attn):
        """Layer ``layer``'s full block ``key`` run as a sharing layer (its V rows and proj)."""
        block = self.layers[layer][key]
        tmpl = self._sharing_templates.get((layer, key))
        if tmpl is None:
            a = block.attn
            with torch.device('meta'):
                tmpl = PSViTBlock(a.dims, a.num_heads, share=True, mlp_ratio=self.mlp_ratio,
                                  qkv_bias=a.qkv.bias is not None,
                                  drop_path=self.drop_path_rates[layer])
            self._sharing_templates[(layer, key)] = tmpl
        tensors = as_sharing_block(dict(block.named_parameters()), block.attn.dims)
        tmpl.train(block.training)
        x, _ = functional_call(tmpl, tensors, (x, attn), strict=True)
        return x

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
                x = self._shared_block(l, self._key(stage), x, attn)
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
            tensors = block.state_dict()
            if share[l]:
                tensors = as_sharing_block(tensors, block.attn.dims)
            for k, v in tensors.items():
                state[f'backbone.layers.{l}.{k}'] = v
        for i, pool in enumerate(self.pools):
            for k, v in pool.state_dict().items():
                state[f'backbone.pools.{i}.{k}'] = v
        last = self.space.num_stages - 1
        state[f'backbone.norm{last}.weight'], state[f'backbone.norm{last}.bias'] = self.norm.weight, self.norm.bias
        state['head.layers.head.weight'], state['head.layers.head.bias'] = self.head.weight, self.head.bias
        return {k: v.detach().clone() for k, v in state.items()}
