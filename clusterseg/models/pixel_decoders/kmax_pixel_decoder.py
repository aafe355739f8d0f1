"""kMaX pixel decoder (spec kmax.md §1.2): axial-attention blocks at strides 32/16, bottlenecks at 8/4.

Backbone features enter high stride first, each through a channel LayerNorm. Stage i has
``num_blocks[i]`` pre-activation residual blocks with filters ``[2b, b, 4b]`` (axial) or
``[b, b, 4b]`` (bottleneck), b = ``channels[i]``; a stage's output has 4b channels and is fused
with the next backbone level by :class:`ResizedFuse`.
"""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clusterseg.registry import MODELS

from ..layers.axial_attn import AxialAttention2D
from ..layers.drop import DropPath
from ..layers.embed import LayerNorm2d
from ..layers.kmax_blocks import ConvBN
from ..layers.kmax_size import kmax_align_corners, resize_like_kmax


class KMaXBlock(nn.Module):
    """Pre-activation residual block: GELU -> 1x1 -> (axial attention | 3x3) -> 1x1 (zero-gamma BN)."""

    def __init__(self, in_channels, base_channels, block_type='axial', num_heads=8, max_span=255, drop_path=0.):
        super().__init__()
        out_channels = 4 * base_channels
        self.block_type = block_type
        self.shortcut = ConvBN(in_channels, out_channels, 1) if in_channels != out_channels else None
        if block_type == 'axial':
            mid = 2 * base_channels
            self.conv1_bn_act = ConvBN(in_channels, mid, 1, act=True)
            self.attention = AxialAttention2D(mid, base_channels, mid, num_heads, max_span)
        elif block_type == 'bottleneck':
            mid = base_channels
            self.conv1_bn_act = ConvBN(in_channels, mid, 1, act=True)
            self.conv2_bn_act = ConvBN(mid, mid, 3, act=True)
        else:
            raise ValueError(f'unknown block type {block_type!r} (axial | bottleneck)')
        self.conv3_bn = ConvBN(mid, out_channels, 1, gamma_init=0.)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = F.gelu(x)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        y = self.conv1_bn_act(x)
        y = F.gelu(self.attention(y)) if self.block_type == 'axial' else self.conv2_bn_act(y)
        return self.drop_path(self.conv3_bn(y)) + shortcut


class KMaXStage(nn.Module):

    def __init__(self, in_channels, base_channels, num_blocks, block_type, **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList([
            KMaXBlock(in_channels if i == 0 else 4 * base_channels, base_channels, block_type, **kwargs)
            for i in range(num_blocks)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class ResizedFuse(nn.Module):
    """low (previous stage, coarse) + high (normed backbone feature) -> ``out_channels`` at high's size."""

    def __init__(self, low_channels, high_channels, out_channels):
        super().__init__()
        self.conv_bn_low = ConvBN(low_channels, out_channels, 1)
        self.conv_bn_high = ConvBN(high_channels, out_channels, 1)

    def forward(self, low, high):
        # align_corners by the source width (reference ResizedFuse)
        low = resize_like_kmax(self.conv_bn_low(F.gelu(low)), high.shape[-2:], kmax_align_corners(low.shape[-1]))
        return low + self.conv_bn_high(F.gelu(high))


@MODELS.register_module()
class KMaXPixelDecoder(BaseModule):
    """kMaX pixel decoder.

    Args:
        in_channels (list[int]): backbone channels, high stride first (R50: [2048, 1024, 512, 256]).
        channels (list[int]): base filters b per stage ([512, 256, 128, 64]); outputs have 4b channels.
        num_blocks (list[int]): blocks per stage ([1, 5, 1, 1]).
        block_types (list[str]): ``'axial'`` or ``'bottleneck'`` per stage.
        num_heads (int): axial-attention heads (8).
        max_span (int): axial relative-position span (255); longest axis it accepts.
        drop_path (float): stochastic depth (0 in the paper).
        init_cfg (dict | None): MMEngine init config.

    Forward: ``feats`` ordered low stride first as backbones give them ([res2, res3, res4, res5]) ->
    ``(multi_scale_features [OS32, OS16, OS8], panoptic_features OS4)``.
    """

    def __init__(self, in_channels=(2048, 1024, 512, 256), channels=(512, 256, 128, 64), num_blocks=(1, 5, 1, 1),
                 block_types=('axial', 'axial', 'bottleneck', 'bottleneck'), num_heads=8, max_span=255,
                 drop_path=0.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        assert len(in_channels) == len(channels) == len(num_blocks) == len(block_types)
        self.in_norms = nn.ModuleList([LayerNorm2d(c, eps=1e-6) for c in in_channels])
        self.stages = nn.ModuleList()
        self.resized_fuses = nn.ModuleList()
        prev = None
        for i, (c_in, b, n, t) in enumerate(zip(in_channels, channels, num_blocks, block_types)):
            if i == 0:
                stage_in = c_in
            else:
                self.resized_fuses.append(ResizedFuse(prev, c_in, b))
                stage_in = b
            self.stages.append(KMaXStage(stage_in, b, n, t, num_heads=num_heads, max_span=max_span,
                                         drop_path=drop_path))
            prev = 4 * b
        self.out_channels = [4 * b for b in channels]

    def forward(self, feats):
        feats = list(feats)[::-1][:len(self.stages)]  # high stride first
        outs = []
        x = None
        for i, feat in enumerate(feats):
            feat = self.in_norms[i](feat)
            x = feat if i == 0 else self.resized_fuses[i - 1](x, feat)
            x = self.stages[i](x)
            outs.append(x)
        return outs[:-1], outs[-1]
