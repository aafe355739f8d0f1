"""ClusTR backbone (Xie et al., arXiv 2208.13138).

A PVTv2-like 4-stage pyramid (strides 4/8/16/32, overlapping patch embeddings, no position
embedding) of pre-norm blocks whose attention runs from the tokens to the means of their
density-peaks clusters (:class:`~clusterseg.models.layers.ClusteredKVAttention`, stages 1-3),
plain MHSA in stage 4, and a Mix-FFN with a shortcut around its depth-wise conv (spec clustr.md §1).
Module names follow the reference (``patch_embed{i}``, ``block{i}``, ``norm{i}``, ``attn.q``,
``attn.kv1/kv2``, ``attn.weight_layer``, ``mlp.fc1/dwconv/fc2``).
"""
import torch
import torch.nn as nn

from clusterseg.models.backbones._cp import maybe_checkpoint
from clusterseg.models.backbones.base import BaseBackbone
from clusterseg.models.layers import ConvDownsample, DropPath, MixFFN, recording_assignments
from clusterseg.models.layers.dpc_cluster import (DEFAULT_MAX_BLOCK_ELEMS, ClusteredKVAttention,
                                                  cluster_counts)
from clusterseg.registry import MODELS


class ClusTRBlock(nn.Module):
    """Pre-norm block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MixFFN(LN(x)))``."""

    def __init__(self, dims, num_heads, sr_ratio, mlp_ratio, cluster_scales=(1, 4), knn_k=5, drop=0.,
                 attn_drop=0., drop_path=0., memory_efficient=None,
                 max_block_elems=DEFAULT_MAX_BLOCK_ELEMS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=1e-6)
        self.attn = ClusteredKVAttention(
            dims, num_heads, sr_ratio=sr_ratio, cluster_scales=cluster_scales, knn_k=knn_k,
            attn_drop=attn_drop, proj_drop=drop, memory_efficient=memory_efficient,
            max_block_elems=max_block_elems)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = MixFFN(dims, int(dims * mlp_ratio), drop=drop, dw_shortcut=True)

    def forward(self, x, hw_shape):
        """x: (B, N, C) -> (B, N, C)."""
        x = self.drop_path.residual(x, self.attn(self.norm1(x), hw_shape))
        x = self.drop_path.residual(x, self.mlp(self.norm2(x), hw_shape))
        return x


@MODELS.register_module()
class ClusTR(BaseBackbone):
    """ClusTR: vision transformer with clustered key/value attention.

    Paper: "ClusTR: Exploring Efficient Self-attention via Clustering for Vision Transformers",
    arXiv 2208.13138.

    Args:
        arch (str | dict): a key of :attr:`arch_zoo` (``b1``/``b2``/``b3`` = ``tiny``/``small``/
            ``base``) or a dict with ``embed_dims``, ``depths``, ``num_heads`` and optionally
            ``mlp_ratios``, ``sr_ratios``.
        in_channels (int): image channels.
        cluster_scales (Sequence[int]): multipliers of ``M0 = N // sr^2`` per clustering layer;
            the reference's (1, 4): two scales with separate K/V projections, outputs summed.
        knn_k (int): neighbours of the DPC-kNN density.
        memory_efficient (bool | None): blockwise DPC-kNN (same assignments, no N x N matrix);
            ``None`` = automatic above ``max_block_elems`` (see
            :func:`~clusterseg.models.layers.dpc_cluster.dpc_knn`).
        max_block_elems (int): size of one distance block of the memory-efficient path.
        out_indices (Sequence[int]): stages whose (normed) maps are returned, 0-based.
        frozen_stages (int): freeze stages ``1..frozen_stages`` with their patch embeddings and
            norms (0: the first patch embedding only, -1: nothing).
        norm_eval (bool): keep BatchNorm layers (none in ClusTR itself) in eval mode while training.
        drop_rate (float): dropout after attention / MLP projections.
        attn_drop_rate (float): attention-weight dropout.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks.
        with_cp (bool): gradient checkpointing of every block (recomputed in the backward pass:
            less activation memory for more compute; outputs and gradients unchanged).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)`` for ImageNet weights
            (an mmpretrain classifier's ``backbone.*`` or a raw backbone state dict).

    Shapes: input (B, in_channels, H, W); output ``tuple`` of (B, C_i, H_i, W_i) for
    ``i in out_indices`` at strides 4, 8, 16, 32 (conv arithmetic of the 7/4/3 and 3/2/1 embeds).
    Stage i needs ``N_i >= sr_i^2`` tokens (e.g. 8x8 at stride 4: images of 32x32 or more).
    """

    arch_zoo = {
        # spec clustr.md §2 (official ClusTR_b{1,2,3}); head_dim 64 everywhere
        'b1': dict(embed_dims=[64, 128, 256, 512], num_heads=[1, 2, 4, 8], depths=[1, 2, 6, 1]),
        'b2': dict(embed_dims=[64, 128, 256, 512], num_heads=[1, 2, 4, 8], depths=[3, 5, 13, 2]),
        'b3': dict(embed_dims=[64, 128, 320, 512], num_heads=[1, 2, 5, 8], depths=[3, 5, 18, 3]),
    }
    # inferred from the parameter counts; only small = 22.7 M is confirmed by the paper
    arch_aliases = {'tiny': 'b1', 'small': 'b2', 'base': 'b3'}
    _arch_defaults = dict(mlp_ratios=[8, 8, 4, 4], sr_ratios=[8, 4, 2, 1])
    arch_required = ('embed_dims', 'depths', 'num_heads')

    def __init__(self, arch='b2', in_channels=3, cluster_scales=(1, 4), knn_k=5, memory_efficient=None,
                 max_block_elems=DEFAULT_MAX_BLOCK_ELEMS, out_indices=(3, ), frozen_stages=-1,
                 norm_eval=False, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.1, with_cp=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.arch_settings = s = self.resolve_arch(arch)
        dims, depths = s['embed_dims'], s['depths']
        self.embed_dims, self.num_stages, self.in_channels = dims, 4, in_channels
        self.sr_ratios, self.cluster_scales = s['sr_ratios'], tuple(cluster_scales)
        self.out_indices = self.check_out_indices(out_indices, 4)
        self.set_training_modes(frozen_stages, norm_eval, 4)

        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        for i in range(4):
            convs = [(7, 4, 3)] if i == 0 else [(3, 2, 1)]
            # LN eps 1e-5 as PVTv2's OverlapPatchEmbed (nn.LayerNorm default); blocks use 1e-6
            self.add_module(f'patch_embed{i + 1}', ConvDownsample(
                in_channels if i == 0 else dims[i - 1], dims[i], convs=convs, eps=1e-5))
            blocks = nn.ModuleList([ClusTRBlock(
                dims[i], s['num_heads'][i], s['sr_ratios'][i], s['mlp_ratios'][i],
                cluster_scales=cluster_scales, knn_k=knn_k, drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[cur + j], memory_efficient=memory_efficient,
                max_block_elems=max_block_elems) for j in range(depths[i])])
            for j, blk in enumerate(blocks):
                blk.attn.layer_name = f'ClusTR block{i + 1}.{j}.attn'
            cur += depths[i]
            self.add_module(f'block{i + 1}', blocks)
            self.add_module(f'norm{i + 1}', nn.LayerNorm(dims[i], eps=1e-6))

    @classmethod
    def validate_arch(cls, s):
        cls.check_per_stage(s, ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios'), 4)
        return s

    # ------------------------------------------------------------------ forward
    def forward(self, x):
        """x: (B, 3, H, W) -> tuple of (B, C_i, H_i, W_i) for the ``out_indices`` stages."""
        return self._run(x)[0]

    @torch.no_grad()
    def cluster_maps(self, x):
        """The cluster contract (:mod:`clusterseg.models.layers.cluster`): the density-peaks
        cluster index of every token in the last block of each clustering stage, per scale.

        Args:
            x (Tensor): (B, 3, H, W) images.

        Returns:
            list[tuple[str, Tensor]]: ``('stage{i}/scale{s}', (B, H_i, W_i) long)`` for stages 1-3
            (``sr_ratio > 1``) and each of ``cluster_scales`` (scale s has
            ``cluster_scales[s] * (N_i // sr_i^2)`` clusters); stage 4 is plain attention.
        """
        last = {i: getattr(self, f'block{i + 1}')[-1].attn for i in range(4)
                if self.sr_ratios[i] > 1 and len(getattr(self, f'block{i + 1}'))}
        with recording_assignments(last.values()):
            _, grids = self._run(x)
            return [(f'stage{i + 1}/scale{s}', a.reshape(-1, *grids[i]))  # (B, N) -> (B, H_i, W_i)
                    for i, attn in last.items() for s, a in enumerate(attn.last_assignment)]

    def _run(self, x):
        """-> (outs of out_indices, per-stage token grid (H_i, W_i))."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ClusTR expects images of shape (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        B, _, H, W = x.shape
        outs, grids = [], []
        for i in range(4):
            x = getattr(self, f'patch_embed{i + 1}')(x)  # (B, C_i, h, w)
            h, w = x.shape[-2:]
            if self.sr_ratios[i] > 1:  # fail before any work, naming the image size
                cluster_counts(h * w, self.sr_ratios[i], self.cluster_scales,
                               where=f'ClusTR stage {i + 1} (input {H}x{W}, token grid {h}x{w})')
            x = x.flatten(2).transpose(1, 2)  # (B, N, C)
            for blk in getattr(self, f'block{i + 1}'):
                x = maybe_checkpoint(self.with_cp, blk, x, (h, w))
            x = getattr(self, f'norm{i + 1}')(x)
            x = x.transpose(1, 2).reshape(B, -1, h, w)  # (B, C, h, w)
            if i in self.out_indices:
                outs.append(x)
            grids.append((h, w))
        return tuple(outs), grids

    # ------------------------------------------------------------------ training modes
    def frozen_modules(self):
        """frozen_stages=k freezes the first patch embedding and stages 1..k (embedding, blocks,
        norm); k=0: the first patch embedding only."""
        frozen = [self.patch_embed1]
        for i in range(1, self.frozen_stages + 1):
            frozen += [getattr(self, f'patch_embed{i}'), getattr(self, f'block{i}'),
                       getattr(self, f'norm{i}')]
        return frozen
