"""Convolutional stems and stage transitions shared by the pyramid backbones."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .dwconv import eager_autograd


def _s2_taps(size, out_size):
    """For each offset i of a 3-tap, stride-2, pad-1 window along an axis of ``size`` inputs and
    ``out_size`` outputs: ``(first output, first input, count)`` of the pairs
    ``output r <- input 2r + i - 1`` that fall inside the input (the rest read the zero pad)."""
    taps = []
    for i in range(3):
        r0 = 1 if i == 0 else 0
        u0 = 2 * r0 + i - 1
        taps.append((r0, u0, min(out_size - r0, (size - u0 + 1) // 2)))
    return taps


def _s2_slices(H, W):
    """``(i, j, output slices, input slices)`` of the 9 taps on an (H, W) grid (see _s2_taps)."""
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    rows, cols = _s2_taps(H, Ho), _s2_taps(W, Wo)
    for i, (r0, u0, n) in enumerate(rows):
        for j, (c0, v0, m) in enumerate(cols):
            yield (i, j, (slice(r0, r0 + n), slice(c0, c0 + m)),
                   (slice(u0, u0 + 2 * n - 1, 2), slice(v0, v0 + 2 * m - 1, 2)))


def _im2col_s2(x):
    """(B, H, W, C) -> (B, Ho, Wo, 3, 3, C): the 3x3 windows of a stride-2, pad-1 conv.

    Each tap's window is copied in and only the pad it reads (a row or column at the border) is
    zeroed: a zero-filled buffer would write the 2.25x-the-input columns twice."""
    B, H, W, C = x.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    cols = x.new_empty(B, Ho, Wo, 3, 3, C)
    for i, j, (ro, co), (ri, ci) in _s2_slices(H, W):
        tap = cols[:, :, :, i, j]
        tap[:, ro, co] = x[:, ri, ci]
        for pad in (tap[:, :ro.start], tap[:, ro.stop:], tap[:, ro, :co.start], tap[:, ro, co.stop:]):
            if pad.numel():
                pad.zero_()
    return cols


class _Conv3x3S2NHWC(torch.autograd.Function):
    """A 3x3 / stride-2 / pad-1 conv on (B, H, W, C) maps as one GEMM over the 9 taps.

    On CPU the oneDNN kernels run these stage transitions (and their backward) at about half the
    GEMM rate; laying out the windows (B*Ho*Wo, 9*C) and multiplying by the (C_out, 9*C) weight
    is the same sum in another order. Only x is saved: the windows are rebuilt in backward
    (a few strided copies) instead of holding 2.25x the input.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        B, H, W, C = x.shape
        w2d = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 9 * C)  # (C_out, 3*3*C)
        cols = _im2col_s2(x)  # (B, Ho, Wo, 3, 3, C)
        out = cols.view(-1, 9 * C) @ w2d.t()  # (B*Ho*Wo, C_out)
        if bias is not None:
            out += bias
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out.view(*cols.shape[:3], -1)  # (B, Ho, Wo, C_out)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        B, H, W, C = x.shape
        C_out = weight.shape[0]
        g = grad.reshape(-1, C_out)  # (B*Ho*Wo, C_out)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            w2d = weight.permute(0, 2, 3, 1).reshape(C_out, 9 * C)
            gcols = (g @ w2d).view(B, (H + 1) // 2, (W + 1) // 2, 3, 3, C)
            gx = x.new_zeros(B, H, W, C)
            for i, j, (ro, co), (ri, ci) in _s2_slices(H, W):
                gx[:, ri, ci] += gcols[:, ro, co, i, j]
        if ctx.needs_input_grad[1]:
            cols = _im2col_s2(x).view(-1, 9 * C)
            gw = (g.t() @ cols).view(C_out, 3, 3, C).permute(0, 3, 1, 2).contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


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
        """x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).

        When gradients are recorded on the CPU, a single 3x3 / stride-2 / pad-1 conv on a
        channels-last laid out map (a PaCa-ViT stage's tokens viewed as (B, C, H, W)) runs as one
        GEMM over the taps (:class:`_Conv3x3S2NHWC`) and returns a channels-last view; anything
        else (GPU, inference, tracing for export or MAC counting, autocast, torch.compile) runs
        ``nn.Conv2d``.
        """
        conv = self.proj
        nhwc = x.permute(0, 2, 3, 1)  # (B, H, W, C_in)
        # GPU: cuDNN's conv; autocast / torch.compile: nn.Conv2d (the custom Function has no
        # mixed-precision casts, and the compiler fuses the conv itself)
        if (x.device.type == 'cpu' and eager_autograd(x) and isinstance(conv, nn.Conv2d)
                and nhwc.is_contiguous()
                and conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == 'zeros'):
            y = _Conv3x3S2NHWC.apply(nhwc, conv.weight, conv.bias)  # (B, Ho, Wo, C_out)
            y = F.layer_norm(y, self.norm.normalized_shape, self.norm.weight, self.norm.bias,
                             self.norm.eps)
            return y.permute(0, 3, 1, 2)  # (B, C_out, Ho, Wo) channels-last view
        return self.norm(self.proj(x))
