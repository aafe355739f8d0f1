"""Feed-forward blocks shared by the pyramid backbones (PaCa-ViT, ClusTR)."""
import torch
import torch.nn as nn

from .dwconv import depthwise_conv2d


class DWConv(nn.Module):
    """Depth-wise 3x3 convolution over a token sequence laid out on an H x W grid.

    Args:
        dims (int): channels C.
        shortcut (bool): return ``x + dwconv(x)`` (PaCa-ViT and ClusTR) instead of ``dwconv(x)``
            (PVTv2 / SegFormer).
    """

    def __init__(self, dims, shortcut=True):
        super().__init__()
        self.dwconv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims, bias=True)
        self.shortcut = shortcut
        # x + dwconv(x) == a DW conv whose kernel has +1 at its centre: adding the identity to the
        # (C, 1, 3, 3) kernel instead of the (B, C, H, W) activation saves a full-size add
        identity = torch.zeros(dims, 1, 3, 3)
        identity[:, :, 1, 1] = 1.
        self.register_buffer('identity', identity, persistent=False)

    def forward(self, x, hw_shape):
        B, N, C = x.shape
        H, W = hw_shape
        # (B, N, C) viewed as a channels-last (B, C, H, W): no copy in, none out
        x = x.view(B, H, W, C).permute(0, 3, 1, 2)
        weight = self.dwconv.weight + self.identity if self.shortcut else self.dwconv.weight
        y = depthwise_conv2d(x, weight, self.dwconv.bias)  # (B, C, H, W), channels-last
        return y.permute(0, 2, 3, 1).reshape(B, N, C)


class MixFFN(nn.Module):
    """Mix-FFN: ``fc1 -> [x + DWConv3x3(x)] -> GELU -> drop -> fc2 -> drop``.

    The depth-wise convolution is what gives PaCa-ViT and ClusTR their positional information
    (neither has a position embedding).

    Args:
        in_dims (int): input / output channels C.
        hidden_dims (int): hidden channels (``mlp_ratio * C``).
        drop (float): dropout after the activation and after ``fc2``.
        with_dwconv (bool): include the depth-wise conv (PaCa-ViT's ``with_dwconv_in_mlp``).
        dw_shortcut (bool): residual around the depth-wise conv.
    """

    def __init__(self, in_dims, hidden_dims, drop=0., with_dwconv=True, dw_shortcut=True):
        super().__init__()
        self.fc1 = nn.Linear(in_dims, hidden_dims)
        self.dwconv = DWConv(hidden_dims, shortcut=dw_shortcut) if with_dwconv else None
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, in_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x, hw_shape):
        """x: (B, N, C) tokens of an H x W grid -> (B, N, C)."""
        x = self.fc1(x)
        if self.dwconv is not None:
            x = self.dwconv(x, hw_shape)
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))
