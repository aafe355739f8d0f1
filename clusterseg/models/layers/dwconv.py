"""Depth-wise convolution with a faster CPU backward for 5x5 and larger kernels.

PaCa-ViT's clustering starts with a 7x7 depth-wise conv on a channels-last map (the (B, N, C)
tokens viewed as (B, C, H, W)). On CPU, oneDNN computes the weight gradient of such a conv at a
fraction of its forward's rate. Both gradients are depth-wise convolutions themselves, and are run
as such, which makes PaCa-ViT-tiny's 7x7 forward + backward 1.5-2.5x faster at batch 1 and
1.0-1.4x at batch 8 (tools/analysis_tools/benchmark_dwconv.py prints the figures):

* input:  ``dL/dx = dwconv(dL/dy, flip(w))`` (stride 1, the same 'same' padding);
* weight: ``dL/dw[c] = sum_b xcorr(pad(x)[b, c], dL/dy[b, c])``: one depth-wise conv of the
  padded input with the output gradient as its kernel (:func:`_weight_grad_as_conv`).

At 3x3 (the Mix-FFN's) oneDNN's own backward is as fast, and ``F.conv2d`` runs. The same sums
in another order: equal to ``F.conv2d``'s gradients up to rounding
(tests/test_models/test_layers/test_dwconv.py).
"""
import torch
import torch.nn.functional as F


def eager_autograd(x):
    """True where a hand-written autograd Function may replace the stock op: gradients are
    recorded, eager (no tracing, scripting or torch.compile, which handle the stock op
    themselves) and no autocast (the Functions have no mixed-precision casts)."""
    return (torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled(x.device.type))


# from this kernel size on, the backward runs as depth-wise convs (below it oneDNN's own is as fast)
CUSTOM_BACKWARD_MIN_K = 5


def _weight_grad_as_conv(x, grad, k):
    """dL/dw (C, 1, k, k) of a stride-1, 'same'-padded depth-wise conv, as one depth-wise conv.

    The B padded input planes of a channel, stacked vertically, make one (B * (H + 2p), W + 2p)
    image; the B output-gradient planes, stacked the same way with 2p zero rows after each
    (dropped after the last), make its (B * (H + 2p) - 2p, W) kernel. Their cross-correlation at
    shift (i, j) is sum_b sum_(h, w) pad(x)[b, h + i, w + j] * g[b, h, w]: the zero rows keep
    every shift inside its own image. Both stacks are pads of the channels-last (B, H, W, C)
    data (no transposing copy); the kernel's zero rows add 2p / (H + 2p) to the work.
    """
    B, C, H, W = grad.shape
    p = k // 2
    Hp = H + 2 * p
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, p, p, p, p))  # (B, H + 2p, W + 2p, C)
    gp = F.pad(grad.permute(0, 2, 3, 1), (0, 0, 0, 0, 0, 2 * p))  # (B, H + 2p, W, C)
    # (reshape: views of the pads' channels-last outputs; a copy only for another input layout)
    image = xp.reshape(1, B * Hp, W + 2 * p, C).permute(0, 3, 1, 2)  # (1, C, B*Hp, W+2p)
    kernel = gp.reshape(B * Hp, W, C)[:B * Hp - 2 * p].permute(2, 0, 1).unsqueeze(1)  # (C, 1, ., W)
    return F.conv2d(image, kernel, None, 1, 0, 1, C).view(C, 1, k, k)


class _DepthwiseConv2dCPU(torch.autograd.Function):
    """Stride-1, 'same'-padded depth-wise conv (odd k) whose backward runs as depth-wise convs."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        k = weight.shape[-1]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, 1, k // 2, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        C, k = x.shape[1], weight.shape[-1]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            # the transposed conv of a stride-1 conv with padding k // 2: the flipped kernel
            gx = F.conv2d(grad, weight.flip(-2, -1), None, 1, k // 2, 1, C)
        if ctx.needs_input_grad[1]:
            gw = _weight_grad_as_conv(x, grad, k)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb


def depthwise_conv2d(x, weight, bias=None):
    """``F.conv2d(x, weight, bias, 1, padding=(kh // 2, kw // 2), groups=C)``: a stride-1
    depth-wise conv with a (C, 1, kh, kw) kernel (``nn.Conv2d(C, C, k, 1, k // 2, groups=C)``).

    Args:
        x (Tensor): (B, C, H, W), best as a channels-last view of (B, H*W, C) tokens.
        weight (Tensor): (C, 1, kh, kw).
        bias (Tensor | None): (C, ).

    Returns:
        Tensor: (B, C, H, W) in the memory format oneDNN picks for ``x`` (channels-last in,
        channels-last out). For a square odd kernel of at least ``CUSTOM_BACKWARD_MIN_K`` on CPU
        with gradients recorded (eager, fp32 / fp64, no autocast) the backward runs as
        depth-wise convs (module docstring); elsewhere (smaller kernels, GPU, inference, export,
        torch.compile, autocast) this is ``F.conv2d``.
    """
    kh, kw = weight.shape[-2:]
    if (kh == kw and kh % 2 == 1 and kh >= CUSTOM_BACKWARD_MIN_K and weight.shape[1] == 1
            and x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and eager_autograd(x)):
        return _DepthwiseConv2dCPU.apply(x, weight, bias)
    return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, x.shape[1])
