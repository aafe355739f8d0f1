"""Convolutional stems and stage transitions shared by the pyramid backbones."""
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (timm's ``LayerNorm2d``)."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvDownsample(nn.Module):
    """A chain of strided convolutions followed by a channel LayerNorm.

    Covers PaCa-ViT's stem (two 3x3/s2 convs, no activation between them) and transitions
    (one 3x3/s2 conv), and ClusTR/PVTv2's overlapping patch embeddings (7x7/s4, then 3x3/s2).
    ``proj`` is a single ``Conv2d`` for one conv and an ``nn.Sequential`` for several, which
    keeps the published PaCa-ViT key names (``patch_embed.proj.0``, ``transition1.proj``).

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        convs (list[tuple[int, int, int]]): ``(kernel, stride, padding)`` per conv.
        mid_channels (int | None): channels between convs (default ``out_channels // 2``).
        eps (float): LayerNorm epsilon.
    """

    def __init__(self, in_channels, out_channels, convs=((3, 2, 1), ), mid_channels=None, eps=1e-6):
        super().__init__()
        mid = mid_channels or out_channels // 2
        layers, c_in = [], in_channels
        for i, (k, s, p) in enumerate(convs):
            c_out = out_channels if i == len(convs) - 1 else mid
            layers.append(nn.Conv2d(c_in, c_out, k, s, p))
            c_in = c_out
        self.proj = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
        self.norm = LayerNorm2d(out_channels, eps=eps)
        self.stride = 1
        for _, s, _ in convs:
            self.stride *= s

    def forward(self, x):
        """x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        return self.norm(self.proj(x))
