"""The building blocks kMaX-DeepLab's pixel decoder, transformer decoder and heads share (spec kmax.md §1).

Everything is BatchNorm (SyncBN in the paper, eps 1e-3, momentum 0.01): :func:`kmax_norm` builds it,
:class:`ConvBN` is conv + BN (+ GELU), and the auxiliary semantic decoder (:class:`ASPP`,
:class:`SemanticPredictor`) is built from them. Module names follow the PyTorch port's keys
without the leading underscores (spec §6), so the converter is mostly a rename.

Plain torch modules, no mm* imports.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kmax_size import kmax_align_corners, resize_like_kmax

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # torch momentum 0.01 == TF decay 0.99


def kmax_norm(ndim, channels):
    """kMaX's BatchNorm: ``BatchNorm1d`` for (B, C, L) (``ndim=1``), ``BatchNorm2d`` for (B, C, H, W)."""
    bn = nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d
    return bn(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBN(nn.Module):
    """Conv (1-D or 2-D) + BatchNorm (+ GELU): the one building block of the kMaX decoder.

    Args:
        in_channels, out_channels (int): channels.
        kernel_size (int): odd kernel; 'same' padding.
        ndim (int): 1 for (B, C, K) query tensors, 2 for (B, C, H, W) pixel maps.
        groups (int): conv groups (``in_channels`` for depthwise).
        bias (bool): conv bias.
        norm (bool): add the BatchNorm.
        act (bool): add a GELU after the norm.
        gamma_init (float): BN weight init; 0 makes a residual branch start as the identity.
        conv_init (str | float): ``'he_normal'``, ``'xavier_uniform'`` or a float: trunc-normal std.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, ndim=2, groups=1, bias=False, norm=True,
                 act=False, gamma_init=1.0, conv_init='he_normal'):
        super().__init__()
        conv = nn.Conv1d if ndim == 1 else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                         bias=bias)
        self.norm = kmax_norm(ndim, out_channels) if norm else None
        self.act = nn.GELU() if act else None
        if conv_init == 'he_normal':
            fan_in = self.conv.weight[0].numel()
            nn.init.trunc_normal_(self.conv.weight, std=math.sqrt(2.0 / fan_in))
        elif conv_init == 'xavier_uniform':
            nn.init.xavier_uniform_(self.conv.weight)
        else:
            nn.init.trunc_normal_(self.conv.weight, std=float(conv_init))
        if bias:
            nn.init.zeros_(self.conv.bias)
        if self.norm is not None:
            nn.init.constant_(self.norm.weight, gamma_init)

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (1x1, three dilated 3x3, image pooling), ConvBN-GELU branches."""

    def __init__(self, in_channels, channels=256, rates=(6, 12, 18), dropout=0.1):
        super().__init__()
        self.aspp_conv0 = ConvBN(in_channels, channels, 1, act=True)
        self.aspp_dilated = nn.ModuleList()
        for rate in rates:
            m = ConvBN(in_channels, channels, 3, act=True)
            m.conv.padding, m.conv.dilation = (rate, rate), (rate, rate)
            self.aspp_dilated.append(m)
        self.aspp_pool = ConvBN(in_channels, channels, 1, act=True)
        self.proj_conv_bn_act = ConvBN(channels * (len(rates) + 2), channels, 1, act=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        outs = [self.aspp_conv0(x)] + [m(x) for m in self.aspp_dilated]
        pooled = self.aspp_pool.conv(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        if not (self.training and x.shape[0] == 1):  # BN cannot train on one value per channel
            pooled = self.aspp_pool.norm(pooled)
        pooled = self.aspp_pool.act(pooled)
        outs.append(pooled.expand(-1, -1, *x.shape[2:]))
        return self.dropout(self.proj_conv_bn_act(torch.cat(outs, dim=1)))


class SemanticPredictor(nn.Module):
    """Auxiliary semantic decoder (Panoptic-DeepLab style, training only): ASPP on res5, fuse res3, res2.

    Args:
        in_channels (list[int]): channels of (res5, res3, res2).
        num_classes (int): number of output channels (C + 1 in kMaX: void is an output, never a target).
        aspp_channels (int): 256.
        low_level_channels (list[int]): projections of res3 / res2 (64, 32).
        decoder_channels (int): fusion / head width (256).
    """

    def __init__(self, in_channels=(2048, 512, 256), num_classes=134, aspp_channels=256,
                 low_level_channels=(64, 32), decoder_channels=256):
        super().__init__()
        self.aspp = ASPP(in_channels[0], aspp_channels)
        self.low_level_projection = nn.ModuleList()
        self.low_level_fusion_conv0 = nn.ModuleList()
        self.low_level_fusion_conv1 = nn.ModuleList()
        prev = aspp_channels
        for c_in, c_proj in zip(in_channels[1:], low_level_channels):
            self.low_level_projection.append(ConvBN(c_in, c_proj, 1, act=True))
            fused = prev + c_proj
            self.low_level_fusion_conv0.append(ConvBN(fused, fused, 5, groups=fused, act=True,
                                                      conv_init='xavier_uniform'))
            self.low_level_fusion_conv1.append(ConvBN(fused, decoder_channels, 1, act=True))
            prev = decoder_channels
        self.conv_block_0 = ConvBN(prev, prev, 5, groups=prev, act=True, conv_init='xavier_uniform')
        self.conv_block_1 = ConvBN(prev, decoder_channels, 1, act=True)
        self.final_conv = ConvBN(decoder_channels, num_classes, 1, bias=True, norm=False, conv_init=0.01)

    def forward(self, features):
        """features: [res5, res3, res2] -> logits (B, num_classes, H_res2, W_res2)."""
        x = self.aspp(features[0])
        # one rule for both upsamplings, taken from the ASPP output (reference SemanticPredictor)
        align_corners = kmax_align_corners(x.shape[-1])
        for i, low in enumerate(features[1:]):
            low = self.low_level_projection[i](low)
            x = torch.cat([resize_like_kmax(x, low.shape[-2:], align_corners), low], dim=1)
            x = self.low_level_fusion_conv1[i](self.low_level_fusion_conv0[i](x))
        x = self.conv_block_1(self.conv_block_0(x))
        return self.final_conv(x)
