"""The ConvMixer clustering teacher of the ``*-teacher`` PaCa-ViT variants (spec pacavit.md §2.7).

Instead of each stage computing its own cluster assignment, a small ConvMixer pyramid with a
top-down FPN predicts z for all four stages from the shared stem output; its pre-FPN stage
features are also added to the student's stage outputs. Module names follow the published
checkpoints (``block{i}.{j}.0.fn.0``, ``fpn{i}.0.fn.0``, ``transition{i}.0.blur_filter``,
``to_clusters{i}``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


def convmixer_layer(dims, kernel_size=7):
    """One ConvMixer layer: Residual(DW kxk -> GELU -> BN) -> 1x1 -> GELU -> BN."""
    return nn.Sequential(
        Residual(nn.Sequential(
            nn.Conv2d(dims, dims, kernel_size, padding=kernel_size // 2, groups=dims),
            nn.GELU(), nn.BatchNorm2d(dims))),
        nn.Conv2d(dims, dims, 1), nn.GELU(), nn.BatchNorm2d(dims))


class BlurConv2d(nn.Module):
    """Anti-aliased strided conv: a fixed binomial 3x3 blur per input channel, then the conv.

    Args:
        in_channels (int), out_channels (int): channels.
        stride (int): stride of the conv (the blur runs at stride 1, "blur first").
    """

    def __init__(self, in_channels, out_channels, stride=2):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        k = torch.tensor([1., 2., 1.])
        k = (k[:, None] * k[None, :]) / 16.
        self.register_buffer('blur_filter', k.expand(in_channels, 1, 3, 3).clone())  # (C_in, 1, 3, 3)

    def forward(self, x):
        x = F.conv2d(x, self.blur_filter, padding=1, groups=x.shape[1])
        return self.conv(x)


class PaCaTeacherConvMixer(nn.Module):
    """ConvMixer + FPN teacher producing the per-stage cluster assignments.

    Args:
        embed_dims (list[int]): channels per stage (the student's).
        depths (list[int]): ConvMixer layers per stage (each FPN level has one).
        num_clusters (list[int]): M per stage (0: that stage gets no assignment).
        kernel_size (int): depth-wise kernel of the ConvMixer layers.

    Forward: (B, C0, H, W) stem output -> ``dict(feats=[(B, C_i, H_i, W_i)] * 4,
    clusters=[(B, M_i, N_i) or None] * 4)``, each cluster row a softmax over the N_i positions.
    """

    def __init__(self, embed_dims, depths, num_clusters, kernel_size=7):
        super().__init__()
        self.num_clusters = list(num_clusters)
        for i in range(4):
            self.add_module(f'block{i + 1}', nn.Sequential(
                *[convmixer_layer(embed_dims[i], kernel_size) for _ in range(depths[i])]))
            if i < 3:
                self.add_module(f'transition{i + 1}', nn.Sequential(
                    BlurConv2d(embed_dims[i], embed_dims[i + 1]), nn.GELU(),
                    nn.BatchNorm2d(embed_dims[i + 1])))
                self.add_module(f'lateral{i + 1}', nn.Sequential(
                    nn.Conv2d(embed_dims[i + 1], embed_dims[i], 1), nn.GELU(),
                    nn.BatchNorm2d(embed_dims[i])))
                # one ConvMixer layer per FPN level, itself the Sequential (keys ``fpn{i}.0.fn.0.*``
                # as the published checkpoints); reproduces 12.48 / 21.08 / 47.66 M parameters
                self.add_module(f'fpn{i + 1}', convmixer_layer(embed_dims[i], kernel_size))
            if num_clusters[i] > 0:
                self.add_module(f'to_clusters{i + 1}', nn.Conv2d(embed_dims[i], num_clusters[i], 1))

    def forward(self, x):
        feats = []
        for i in range(4):
            x = getattr(self, f'block{i + 1}')(x)
            feats.append(x)
            if i < 3:
                x = getattr(self, f'transition{i + 1}')(x)
        pyramid = [None] * 4
        pyramid[3] = feats[3]
        for i in (2, 1, 0):  # top-down
            # upsample first, then the lateral 1x1 -> GELU -> BN at the finer resolution: the order
            # of the reference (iVMCL/PaCaViT models/paca_vit.py, PaCaTeacher_ConvMixer.forward)
            # that the published weights were trained with; the GELU makes the two orders differ.
            # It costs more MACs than the README's table counts (docs/en/pacavit.md).
            up = F.interpolate(pyramid[i + 1], size=feats[i].shape[-2:], mode='bilinear',
                               align_corners=False)  # (B, C_{i+1}, H_i, W_i)
            lat = getattr(self, f'lateral{i + 1}')(up)  # (B, C_i, H_i, W_i)
            pyramid[i] = getattr(self, f'fpn{i + 1}')(feats[i] + lat)
        clusters = []
        for i in range(4):
            if self.num_clusters[i] > 0:
                logits = getattr(self, f'to_clusters{i + 1}')(pyramid[i])  # (B, M, H_i, W_i)
                clusters.append(logits.flatten(2).softmax(dim=-1))  # (B, M, N_i)
            else:
                clusters.append(None)
        return dict(feats=feats, clusters=clusters)
