"""PaCa-ViT backbone (Grainger et al., CVPR 2023).

A 4-stage pyramid (strides 4/8/16/32) of pre-norm blocks whose attention runs from the patches
to M learned soft clusters (:class:`~clusterseg.models.layers.PaCaAttention`), with a Mix-FFN.
Module names follow the published checkpoints (``patch_embed``, ``stage{i}``, ``norm{i}``,
``transition{i}``, ``paca_teacher``), so they load without renaming (spec pacavit.md §5).
"""
import torch
import torch.nn as nn

from clusterseg.models.backbones._cp import maybe_checkpoint
from clusterseg.models.backbones.base import BaseBackbone
from clusterseg.models.layers import ConvDownsample, MixFFN, PaCaAttention
from clusterseg.models.layers.drop import DropPath
from clusterseg.models.layers.paca_teacher import PaCaTeacherConvMixer
from clusterseg.registry import MODELS


class PaCaBlock(nn.Module):
    """Pre-norm block: ``x + DropPath(PaCa(LN(x)))``, then ``x + DropPath(MixFFN(LN(x)))``."""

    def __init__(self, dims, num_heads, num_clusters, clustering, mlp_ratio=4., clustering_kernel_size=7,
                 drop=0., attn_drop=0., drop_path=0., with_dwconv_in_mlp=True,
                 with_shortcut_in_mlp=True):
        super().__init__()
        self.norm1_before = nn.LayerNorm(dims, eps=1e-6)
        self.attn = PaCaAttention(
            dims, num_heads, num_clusters, clustering=clustering,
            clustering_kernel_size=clustering_kernel_size, mlp_ratio=mlp_ratio,
            attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2_before = nn.LayerNorm(dims, eps=1e-6)
        self.mlp = MixFFN(dims, int(dims * mlp_ratio), drop=drop, with_dwconv=with_dwconv_in_mlp,
                          dw_shortcut=with_shortcut_in_mlp)

    def forward(self, x, hw_shape, z=None, return_attn=False):
        """x: (B, N, C); z: (B, M, N) or None -> (x, z[, attn])."""
        res = self.attn(self.norm1_before(x), hw_shape, z, return_attn=return_attn)
        x = self.drop_path.residual(x, res[0])
        x = self.drop_path.residual(x, self.mlp(self.norm2_before(x), hw_shape))
        return (x, ) + tuple(res[1:])


@MODELS.register_module()
class PaCaViT(BaseBackbone):
    """PaCa-ViT: patch-to-cluster attention vision transformer.

    Paper: "PaCa-ViT: Learning Patch-to-Cluster Attention in Vision Transformers", CVPR 2023.

    Args:
        arch (str | dict): a key of :attr:`arch_zoo` or a dict with ``embed_dims``, ``depths``,
            ``num_heads``, ``mlp_ratios``, ``num_clusters``, ``clustering`` and optionally
            ``onsite_clustering`` and ``teacher_depths``.
        in_channels (int): image channels.
        num_clusters (list[int] | None): per-stage M, overriding the arch's; this is the
            reference's ``downstream_cluster_num`` (its ADE20K configs use [200, 200, 200, 0]).
            0 = plain self-attention in that stage.
        onsite_clustering (list[int] | None): per stage, where z is computed: 0 = in the first
            block only, reused by the others (stage-wise, default); 1 = in every block
            (block-wise); k >= 2 = every k-th block.
        clustering (str | None): ``'conv'`` / ``'mlp'`` / ``'linear'``, overriding the arch's.
        out_indices (Sequence[int]): stages whose (normed) maps are returned, 0-based.
        frozen_stages (int): freeze the stem and stages ``1..frozen_stages`` (0: the stem only,
            -1: nothing).
        norm_eval (bool): keep the (teacher's) BatchNorm layers in eval mode while training.
        drop_rate (float): dropout after attention / MLP projections.
        attn_drop_rate (float): attention-weight dropout.
        drop_path_rate (float): stochastic depth, linear from 0 over all blocks.
        pretrained_ignore_keys (Sequence[str]): regexes of checkpoint keys to skip when loading
            ``init_cfg=dict(type='Pretrained')`` (e.g. the M=100 clustering output conv when
            ``num_clusters`` is 200); any other missing, unexpected or mis-shaped key is an error.
        with_cp (bool): gradient checkpointing of every block (recomputed in the backward pass:
            less activation memory for more compute; outputs and gradients unchanged).
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)`` for ImageNet weights
            in the official or clusterseg layout.

    Shapes: input (B, in_channels, H, W), any H, W (each stride-2 conv rounds up); output
    ``tuple`` of (B, C_i, ceil(H/s_i), ceil(W/s_i)) for ``i in out_indices``, s = 4, 8, 16, 32.
    """

    arch_zoo = {
        # spec pacavit.md §3: dims, depths, heads [2, 4, 8, 16], MLP ratio 4, M per stage
        'tiny': dict(embed_dims=[96, 192, 320, 384], depths=[2, 2, 4, 2], num_clusters=[100, 100, 100, 0],
                     clustering='conv'),
        'small': dict(embed_dims=[96, 192, 320, 384], depths=[3, 3, 10, 3],
                      num_clusters=[100, 100, 100, 0], clustering='conv'),
        'small-mlp': dict(embed_dims=[96, 192, 320, 384], depths=[3, 3, 10, 3],
                          num_clusters=[100, 100, 100, 0], clustering='mlp'),
        'base': dict(embed_dims=[96, 192, 384, 512], depths=[3, 3, 18, 3],
                     num_clusters=[100, 100, 100, 0], clustering='conv'),
        # ConvMixer clustering teacher (spec §2.7): z comes from the teacher in every stage
        'tiny-teacher': dict(embed_dims=[96, 192, 320, 384], depths=[2, 2, 2, 2],
                             num_clusters=[100, 100, 100, 100], clustering=None,
                             teacher_depths=[2, 2, 2, 2]),
        'small-teacher': dict(embed_dims=[96, 192, 320, 384], depths=[3, 3, 7, 3],
                              num_clusters=[100, 100, 100, 100], clustering=None,
                              teacher_depths=[2, 2, 2, 2]),
        'base-teacher': dict(embed_dims=[96, 192, 384, 512], depths=[3, 3, 16, 3],
                             num_clusters=[100, 100, 100, 100], clustering=None,
                             teacher_depths=[2, 2, 4, 2]),
    }
    _arch_defaults = dict(num_heads=[2, 4, 8, 16], mlp_ratios=[4, 4, 4, 4], clustering_kernel_size=7,
                          onsite_clustering=[0, 0, 0, 0], teacher_depths=None)
    arch_required = ('embed_dims', 'depths', 'num_clusters')

    def __init__(self, arch='tiny', in_channels=3, num_clusters=None, onsite_clustering=None,
                 clustering='arch', out_indices=(3, ), frozen_stages=-1, norm_eval=False,
                 drop_rate=0., attn_drop_rate=0., drop_path_rate=0.1, pretrained_ignore_keys=(),
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        overrides = {} if clustering == 'arch' else dict(clustering=clustering)
        if num_clusters is not None:
            overrides['num_clusters'] = list(num_clusters)
        if onsite_clustering is not None:
            overrides['onsite_clustering'] = list(onsite_clustering)
        self.arch_settings = self.resolve_arch(arch, overrides)
        s = self.arch_settings
        dims, depths = s['embed_dims'], s['depths']
        self.embed_dims, self.num_stages, self.in_channels = dims, 4, in_channels
        self.num_clusters = s['num_clusters']
        self.out_indices = self.check_out_indices(out_indices, 4)
        self.set_training_modes(frozen_stages, norm_eval, 4)
        self.pretrained_ignore_keys = list(pretrained_ignore_keys)

        self.patch_embed = ConvDownsample(in_channels, dims[0], convs=[(3, 2, 1), (3, 2, 1)])
        if s['teacher_depths'] is not None:
            self.paca_teacher = PaCaTeacherConvMixer(dims, s['teacher_depths'], self.num_clusters)
        else:
            self.paca_teacher = None
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        for i in range(4):
            blocks = []
            for j in range(depths[i]):
                blocks.append(PaCaBlock(
                    dims[i], s['num_heads'][i], self.num_clusters[i],
                    clustering=self._block_clustering(i, j),
                    mlp_ratio=s['mlp_ratios'][i], clustering_kernel_size=s['clustering_kernel_size'],
                    drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[cur + j]))
            cur += depths[i]
            self.add_module(f'stage{i + 1}', nn.ModuleList(blocks))
            self.add_module(f'norm{i + 1}', nn.LayerNorm(dims[i], eps=1e-6))
            if i < 3:
                self.add_module(f'transition{i + 1}', ConvDownsample(dims[i], dims[i + 1]))

    @classmethod
    def validate_arch(cls, s):
        s.setdefault('clustering', None)
        cls.check_per_stage(s, ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'num_clusters',
                                'onsite_clustering'), 4)
        for i, m in enumerate(s['num_clusters']):
            if not isinstance(m, int) or m < 0:
                raise ValueError(f'PaCaViT: num_clusters[{i}] must be an int >= 0, got {m!r}')
        if s['teacher_depths'] is None and s['clustering'] is None and any(s['num_clusters']):
            raise ValueError('PaCaViT: clustering=None needs a clustering teacher (teacher_depths)')
        return s

    def _block_clustering(self, stage, block):
        s = self.arch_settings
        if s['num_clusters'][stage] == 0 or s['teacher_depths'] is not None:
            return None
        every = s['onsite_clustering'][stage]
        onsite = block == 0 or (every >= 1 and block % every == 0)
        return s['clustering'] if onsite else None

    # ------------------------------------------------------------------ forward
    def _run(self, x, return_attn=False):
        """-> (outs of out_indices, per-stage (B, M_i, H_i, W_i) z views (None for M_i = 0),
        per-stage per-block attention or None)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'PaCaViT expects images of shape (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        B = x.shape[0]
        # the stem runs channels-last (a cheap copy of the 3-channel image): its convs' outputs, the
        # LayerNorm and the stage-1 tokens are then one layout, with no transposing copies forward
        # or backward (oneDNN would reorder a contiguous NCHW map in both directions)
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))  # (B, C0, H/4, W/4)
        teacher = self.paca_teacher(x) if self.paca_teacher is not None else None
        outs, clusters, attns = [], [], []
        for i in range(4):
            h, w = x.shape[-2:]
            x = x.flatten(2).transpose(1, 2)  # (B, N, C)
            z = teacher['clusters'][i] if teacher is not None else None
            stage_attn = []
            for blk in getattr(self, f'stage{i + 1}'):
                x, z, *attn = maybe_checkpoint(self.with_cp and not return_attn, blk, x, (h, w), z,
                                               return_attn)
                stage_attn += attn
            attns.append(stage_attn)
            if teacher is not None:
                x = x + teacher['feats'][i].flatten(2).transpose(1, 2)
            x = getattr(self, f'norm{i + 1}')(x)
            x = x.transpose(1, 2).reshape(B, -1, h, w)  # (B, C, H_i, W_i)
            if i in self.out_indices:
                outs.append(x)
            clusters.append(z.reshape(B, -1, h, w) if z is not None else None)
            if i < 3:
                x = getattr(self, f'transition{i + 1}')(x)
        return tuple(outs), clusters, (attns if return_attn else None)

    def forward(self, x):
        """x: (B, 3, H, W) -> tuple of (B, C_i, H_i, W_i) for the ``out_indices`` stages."""
        return self._run(x)[0]

    @torch.no_grad()
    def cluster_maps(self, x):
        """The cluster contract (:mod:`clusterseg.models.layers.cluster`): each clustering stage's
        patch-to-cluster assignment as hard cluster indices.

        Args:
            x (Tensor): (B, 3, H, W) images.

        Returns:
            list[tuple[str, Tensor]]: ``('stage{i}', (B, H_i, W_i) long)`` for every stage with
            M_i > 0 (stages 1-3 of the released variants, all four with a teacher): the argmax
            over the M_i clusters of the stage's last assignment z (B, M_i, H_i, W_i).
        """
        _, clusters, _ = self._run(x)
        return [(f'stage{i + 1}', z.argmax(1)) for i, z in enumerate(clusters) if z is not None]

    def forward_attention_maps(self, x):
        """Per-block patch-to-cluster attention for visualisation (not used in training).

        Returns:
            list[list[Tensor]]: per stage, per block, (B, h, N_i, M_i) attention weights.
        """
        return self._run(x, return_attn=True)[2]

    # ------------------------------------------------------------------ training modes
    def frozen_modules(self):
        """frozen_stages=k freezes the stem (and teacher) and stages 1..k with their norms and
        the transitions that feed them (mmdet ResNet semantics; k=0: stem only)."""
        frozen = [self.patch_embed]
        if self.paca_teacher is not None:
            frozen.append(self.paca_teacher)
        for i in range(1, self.frozen_stages + 1):
            frozen += [getattr(self, f'stage{i}'), getattr(self, f'norm{i}')]
            if i > 1:
                frozen.append(getattr(self, f'transition{i - 1}'))
        return frozen
