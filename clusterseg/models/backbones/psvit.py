"""PSViT backbone (Chen et al., arXiv 2108.03428): a DeiT-style ViT with token pooling and
attention sharing.

A plain pre-norm ViT (patch embedding, absolute position embedding, cls token, MHSA + MLP
blocks) in which ``pool_after`` lists the layers after which a :class:`TokenPool` halves the
token grid (and optionally widens the channels), and ``share_attn`` marks the layers that reuse
the previous layer's attention map (:class:`SharedAttention`). Both are plain config lists, so a
searched architecture (:mod:`clusterseg.search`, tools/search/psvit_search.py) is just
another arch dict.

Every preset number is our choice (the paper body is unavailable; spec psvit.md §1.2, §4 and
docs/en/psvit.md): they are *reconstructed, not paper-verified*.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_

from clusterseg.models.backbones._cp import maybe_checkpoint
from clusterseg.models.backbones.base import BaseBackbone
from clusterseg.models.layers.drop import DropPath
from clusterseg.models.layers.embed import LayerNorm2d
from clusterseg.models.layers.ffn import MixFFN
from clusterseg.models.layers.token_pool import (FullAttention, SharedAttention, TokenPool,
                                                 check_attention_sharing)
from clusterseg.registry import MODELS


class PSViTBlock(nn.Module):
    """Pre-norm block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``; the
    attention is a :class:`FullAttention` or, with ``share=True``, a :class:`SharedAttention`."""

    def __init__(self, dims, num_heads, share=False, mlp_ratio=4., qkv_bias=True, drop=0.,
                 attn_drop=0., drop_path=0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        attn_cls = SharedAttention if share else FullAttention
        self.attn = attn_cls(dims, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = MixFFN(dims, int(dims * mlp_ratio), drop=drop, with_dwconv=False)

    @property
    def shares_attention(self):
        return self.attn.shares_attention

    def forward(self, x, attn=None, return_attn=False):
        """x: (B, N, C); attn: previous map (B, h, N, N) or (q, k) for a sharing block;
        return_attn: False / True / 'map' / 'qk' (see FullAttention) -> (x, attn | None)."""
        y, attn = self.attn(self.norm1(x), attn, return_attn)
        x = self.drop_path.residual(x, y)
        x = self.drop_path.residual(x, self.mlp(self.norm2(x), None))
        return x, attn


def _stage_of_layers(depth, pool_after):
    """Stage index of each layer: pooling after layer p puts layer p + 1 in the next stage."""
    return [sum(p < l for p in pool_after) for l in range(depth)]


@MODELS.register_module()
class PSViT(BaseBackbone):
    """PSViT: vision transformer with token pooling and attention sharing.

    Paper: "PSViT: Better Vision Transformer via Token Pooling and Attention Sharing",
    B. Chen, P. Li, B. Li et al., arXiv 2108.03428 (no public code; presets reconstructed).

    Args:
        arch (str | dict): a key of :attr:`arch_zoo` or a dict with ``embed_dims`` and
            ``num_heads`` (one entry per stage, i.e. ``len(pool_after) + 1``), ``depth``,
            ``pool_after`` (layer indices, 0-based, after which tokens are pooled),
            ``share_attn`` (one bool per layer: reuse the previous layer's attention map) and
            optionally ``patch_size``, ``mlp_ratio``, ``pool_type``, ``pool_dims``,
            ``pool_kernel``.
        img_size (int | tuple): training size; sets the position-embedding grid
            (``img_size / patch_size``), interpolated (bicubic) for any other input size.
        in_channels (int): image channels.
        pool_after, share_attn, pool_type, pool_dims (optional): override the arch's entries
            (ablations, searched architectures).
        with_cls_token (bool): prepend a cls token (never pooled; widened by its own Linear).
        out_type (str): ``'cls_token'`` -> ((B, C_last), ); ``'avg_featmap'`` -> mean of the last
            stage's patch tokens ((B, C_last), ); ``'featmap'`` -> dense maps of ``out_indices``.
        out_indices (Sequence[int]): for ``'featmap'``: levels ``0..S`` (S stages). Level ``i >= 1``
            is stage ``i - 1``'s normed map at stride ``patch_size * 2**(i - 1)``; level 0 is
            stage 0's map up-sampled x2 by a transposed conv (stride ``patch_size / 2``). With the
            presets (patch 8, two poolings): strides 4 / 8 / 16 / 32 and channels
            ``[C0, C0, C1, C2]``. The cls token is dropped from dense outputs.
        qkv_bias (bool): biases of q, k, v.
        drop_rate (float): dropout after the position embedding and the projections.
        attn_drop_rate (float): attention-weight dropout.
        drop_path_rate (float): stochastic depth, linear from 0 over all layers.
        share_impl (str): how a full layer hands its attention to a sharing one: ``'auto'``
            (default: ``'map'`` for small maps in inference, else ``'qk'``; the faster one in the
            whole network, docs/en/psvit.md "Speed"), ``'map'`` (the
            (B, h, N, N) map; the sharing layer skips q k^T, as the paper counts it) or ``'qk'``
            (q and k; the sharing layer recomputes the same map inside the fused kernel: more MACs,
            no N x N tensor, faster where fused attention beats a materialised map). Same outputs.
        frozen_stages (int): freeze patch / position embedding, cls token and the layers (with
            the pooling into them) of stages ``0..frozen_stages - 1`` (0: embeddings only,
            -1: nothing).
        norm_eval (bool): keep BatchNorm layers (none in PSViT itself) in eval mode.
        with_cp (bool): gradient checkpointing of every block (recomputed in the backward pass:
            less activation memory for more compute; outputs and gradients unchanged).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)``.

    Every load path (``init_cfg``, ``load_checkpoint``, ``load_from``, resume,
    ``load_state_dict``) resizes a checkpoint's position embedding saved for another grid
    (bicubic, the checkpoint's grid taken as square) to ``img_size / patch_size``.

    Shapes: input (B, in_channels, H, W), any H, W (padded right/bottom to a multiple of the
    patch size; each pooling rounds up).
    """

    # Reconstructed presets [R] (docs/en/psvit.md): patch 8 (28x28 tokens at 224), two 2-D
    # depth-wise-conv poolings (28 -> 14 -> 7; FDViT: "two downsampling layers"), channels 1:2:3
    # over the three stages, head dim 32, four layers per stage, and inside every stage each full
    # layer is followed by one sharing layer. Widths are sized so that the classifier's MACs (our
    # counter, 224x224, 1000-way head included) sit just below DeiT-Ti / S / B (1.258 / 4.608 /
    # 17.58 G): tiny 6.24 M / 1.251 G, small 21.25 M / 4.573 G, base 83.34 M / 16.12 G.
    arch_zoo = {
        'tiny': dict(embed_dims=[96, 192, 288], num_heads=[3, 6, 9], depth=12, pool_after=[3, 7],
                     share_attn=[0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]),
        'small': dict(embed_dims=[192, 384, 576], num_heads=[6, 12, 18], depth=12, pool_after=[4, 8],
                      share_attn=[0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]),
        'base': dict(embed_dims=[384, 768, 1152], num_heads=[12, 24, 36], depth=12, pool_after=[4, 8],
                     share_attn=[0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]),
    }
    _arch_defaults = dict(patch_size=8, mlp_ratio=4., pool_type='dwconv', pool_dims='2d',
                          pool_kernel=3)
    arch_required = ('embed_dims', 'num_heads', 'depth', 'pool_after', 'share_attn')
    # a checkpoint may hold the norms / up-sampler of outputs this instance does not use, or lack them
    pretrained_optional_keys = (r'^norm\d', r'^upsample\.')
    OUT_TYPES = ('cls_token', 'avg_featmap', 'featmap')

    def __init__(self, arch='tiny', img_size=224, in_channels=3, pool_after=None, share_attn=None,
                 pool_type=None, pool_dims=None, with_cls_token=True, out_type='cls_token',
                 out_indices=(-1, ), qkv_bias=True, drop_rate=0., attn_drop_rate=0.,
                 drop_path_rate=0.1, share_impl='auto', frozen_stages=-1, norm_eval=False,
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        overrides = dict(pool_after=pool_after, share_attn=share_attn, pool_type=pool_type,
                         pool_dims=pool_dims)
        s = self.resolve_arch(arch, {k: v for k, v in overrides.items() if v is not None})
        self.arch_settings = s
        dims, heads, depth = s['embed_dims'], s['num_heads'], s['depth']
        self.embed_dims, self.depth, self.num_stages = dims, depth, len(dims)
        self.patch_size, self.in_channels = s['patch_size'], in_channels
        self.pool_after, self.share_attn = s['pool_after'], s['share_attn']
        self.stage_of_layer = _stage_of_layers(depth, self.pool_after)
        check_attention_sharing(self.share_attn, [heads[t] for t in self.stage_of_layer],
                                self.stage_of_layer, self.pool_after)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'PSViT: out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError('PSViT: out_type="cls_token" needs with_cls_token=True')
        if out_type == 'featmap' and s['pool_dims'] == '1d' and self.pool_after:
            raise ValueError('PSViT: 1-D token pooling leaves no 2-D grid; out_type="featmap" '
                             '(dense prediction) needs pool_dims="2d"')
        if share_impl not in ('map', 'qk', 'auto'):
            raise ValueError(f"PSViT: share_impl must be 'map', 'qk' or 'auto', got {share_impl!r}")
        self.share_impl = share_impl
        self.out_type, self.with_cls_token = out_type, with_cls_token
        self.num_extra_tokens = int(with_cls_token)
        if out_type == 'featmap':
            out_indices = self.check_out_indices(
                out_indices, self.num_stages + 1, allow_negative=True,
                what='level 0: stride patch/2, level i: stage i-1')
        else:  # one output whatever out_indices says
            out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        self.out_indices = out_indices
        self.set_training_modes(frozen_stages, norm_eval, self.num_stages)

        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_grid = tuple(math.ceil(v / self.patch_size) for v in img_size)
        self.patch_embed = nn.Conv2d(in_channels, dims[0], self.patch_size, self.patch_size)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[0]))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + self.patch_grid[0] * self.patch_grid[1], dims[0]))
        self.drop_after_pos = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.layers = nn.ModuleList([
            PSViTBlock(dims[t], heads[t], share=bool(self.share_attn[l]), mlp_ratio=s['mlp_ratio'],
                       qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[l])
            for l, t in enumerate(self.stage_of_layer)])
        self.pools = nn.ModuleList([
            TokenPool(dims[i], dims[i + 1], pool_type=s['pool_type'], pool_dims=s['pool_dims'],
                      kernel_size=s['pool_kernel'], stride=2, num_extra_tokens=self.num_extra_tokens)
            for i in range(len(self.pool_after))])

        # only the norms (and the up-sampler) that the outputs use, so that no parameter goes
        # without a gradient (DDP with find_unused_parameters=False)
        if out_type == 'featmap':
            self.norm_stages = sorted({max(i - 1, 0) for i in out_indices})
        else:
            self.norm_stages = [self.num_stages - 1]
        for t in self.norm_stages:
            self.add_module(f'norm{t}', nn.LayerNorm(dims[t], eps=1e-6))
        if out_type == 'featmap' and 0 in out_indices:
            self.upsample = nn.Sequential(nn.ConvTranspose2d(dims[0], dims[0], 2, 2),
                                          LayerNorm2d(dims[0], eps=1e-6))
        else:
            self.upsample = None
        self._register_load_state_dict_pre_hook(_fit_pos_embed_hook, with_module=True)

    @property
    def out_channels(self):
        """Channels of each output, in order."""
        if self.out_type != 'featmap':
            return [self.embed_dims[-1]]
        return [self.embed_dims[max(i - 1, 0)] for i in self.out_indices]

    @classmethod
    def validate_arch(cls, s):
        s['embed_dims'], s['num_heads'] = list(s['embed_dims']), list(s['num_heads'])
        s['pool_after'] = [int(p) for p in s['pool_after']]
        s['share_attn'] = [bool(v) for v in s['share_attn']]
        depth, pool_after = s['depth'], s['pool_after']
        if sorted(set(pool_after)) != pool_after or any(not 0 <= p < depth - 1 for p in pool_after):
            raise ValueError(f'PSViT: pool_after must be strictly increasing layer indices in '
                             f'0..{depth - 2}, got {pool_after}')
        cls.check_per_stage(s, ('embed_dims', 'num_heads'), len(pool_after) + 1,
                            why=': len(pool_after) + 1')
        if len(s['share_attn']) != depth:
            raise ValueError(f'PSViT: share_attn needs one entry per layer ({depth}), '
                             f'got {len(s["share_attn"])}')
        return s

    # ------------------------------------------------------------------ weights
    def init_extra_weights(self):
        """DeiT init of the position embedding and the cls token."""
        trunc_normal_(self.pos_embed, std=.02)
        if self.with_cls_token:
            trunc_normal_(self.cls_token, std=.02)

    def adapt_state_dict(self, state, prefix=''):
        """Resize ``state[prefix + 'pos_embed']`` saved for another grid to this instance's
        ``patch_grid`` (in place); other tensors are left to the usual shape checks."""
        key = prefix + 'pos_embed'
        pos = state.get(key)
        if pos is not None and pos.dim() == 3 and pos.shape[-1] == self.pos_embed.shape[-1] \
                and pos.shape != self.pos_embed.shape:
            try:
                state[key] = self._resize_pos_embed(pos, self.patch_grid, self.num_extra_tokens)
            except ValueError as e:
                raise ValueError(f'PSViT: cannot fit {key} of shape {tuple(pos.shape)} to '
                                 f'{tuple(self.pos_embed.shape)} (grid {self.patch_grid}, '
                                 f'{self.num_extra_tokens} extra tokens): {e}') from None
        return state

    @staticmethod
    def _resize_pos_embed(pos_embed, grid, num_extra_tokens):
        """(1, E + h*w, C) -> (1, E + grid[0]*grid[1], C), bicubic over the patch part; the
        source grid is taken as square."""
        extra, patch = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
        n = patch.shape[1]
        src = int(round(n**0.5))
        if src * src != n:
            raise ValueError(f'cannot resize a position embedding of {n} patch tokens: not a '
                             f'square grid')
        return torch.cat([extra, PSViT._interp_grid(patch, (src, src), grid)], dim=1)

    @staticmethod
    def _interp_grid(patch, src, dst):
        if tuple(src) == tuple(dst):
            return patch
        C = patch.shape[-1]
        p = patch.reshape(1, src[0], src[1], C).permute(0, 3, 1, 2)  # (1, C, h, w)
        p = F.interpolate(p, size=dst, mode='bicubic', align_corners=False)
        return p.flatten(2).transpose(1, 2)  # (1, h'*w', C)

    # ------------------------------------------------------------------ forward
    def embed(self, x):
        """Images (B, 3, H, W) -> tokens (B, E + h*w, C0) with position embedding, and (h, w)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'PSViT expects images of shape (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        p = self.patch_size
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed(x)  # (B, C0, h, w)
        B, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, C0)
        E = self.num_extra_tokens
        pos = self.pos_embed
        pos = torch.cat([pos[:, :E], self._interp_grid(pos[:, E:], self.patch_grid, (h, w))], dim=1)
        if E:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        return self.drop_after_pos(x + pos), (h, w)

    def _to_map(self, x, hw, stage):
        B, _, C = x.shape
        x = getattr(self, f'norm{stage}')(x[:, self.num_extra_tokens:])
        return x.transpose(1, 2).reshape(B, C, *hw)  # (B, C, h, w)

    def forward(self, x):
        """x: (B, 3, H, W) -> tuple: ((B, C_last), ) for ``'cls_token'`` / ``'avg_featmap'``;
        (B, C_i, H / s_i, W / s_i) per ``out_indices`` level for ``'featmap'``."""
        x, hw = self.embed(x)
        stage_maps = {}
        attn, pool_iter = None, iter(self.pools)
        for l, layer in enumerate(self.layers):
            next_shares = l + 1 < self.depth and self.share_attn[l + 1]
            x, attn = maybe_checkpoint(self.with_cp, layer, x, attn,
                                       self.share_impl if next_shares else False)
            if l in self.pool_after or l == self.depth - 1:
                t = self.stage_of_layer[l]
                if self.out_type == 'featmap' and t in self.norm_stages:
                    stage_maps[t] = self._to_map(x, hw, t)
                if l != self.depth - 1:
                    x, hw = next(pool_iter)(x, hw)
        if self.out_type == 'cls_token':
            return (getattr(self, f'norm{self.num_stages - 1}')(x[:, 0]), )
        if self.out_type == 'avg_featmap':
            return (getattr(self, f'norm{self.num_stages - 1}')(x[:, self.num_extra_tokens:]).mean(1), )
        outs = []
        for i in self.out_indices:
            outs.append(self.upsample(stage_maps[0]) if i == 0 else stage_maps[i - 1])
        return tuple(outs)

    # ------------------------------------------------------------------ training modes
    def frozen_modules(self):
        """frozen_stages=k freezes the patch embedding and the layers of stages 0..k-1 with the
        poolings into stages 1..k-1 (k=0: the embeddings only)."""
        frozen = [self.patch_embed]
        frozen += [self.layers[l] for l, t in enumerate(self.stage_of_layer) if t < self.frozen_stages]
        frozen += [self.pools[i] for i in range(len(self.pools)) if i + 1 < self.frozen_stages]
        return frozen

    def frozen_parameters(self):
        return [self.pos_embed] + ([self.cls_token] if self.with_cls_token else [])


def _fit_pos_embed_hook(module, state_dict, prefix, *args):
    """``load_state_dict`` pre-hook: every load path resizes a position embedding saved for
    another grid (see :meth:`PSViT.adapt_state_dict`)."""
    module.adapt_state_dict(state_dict, prefix)
