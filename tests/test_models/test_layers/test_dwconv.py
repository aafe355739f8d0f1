"""The depth-wise conv with a hand-written CPU backward (clusterseg.models.layers.dwconv): values
and gradients against F.conv2d / finite differences, and where it takes over from F.conv2d."""
import pytest
import torch
import torch.nn.functional as F

from clusterseg.models.layers import P2CConv2d
from clusterseg.models.layers import dwconv as dw


def _channels_last_view(B, C, H, W, dtype=torch.float64):
    """A (B, C, H, W) channels-last view of (B, H*W, C) tokens, as the backbones pass them."""
    return torch.randn(B, H * W, C, dtype=dtype).view(B, H, W, C).permute(0, 3, 1, 2)


@pytest.mark.parametrize('k', [5, 7])
@pytest.mark.parametrize('hw', [(5, 7), (2, 3), (1, 1)])
@pytest.mark.parametrize('layout', ['channels_last', 'nchw'])
def test_backward_equals_conv2d(k, hw, layout):
    """Input, weight and bias gradients equal F.conv2d's; gradcheck checks them against finite
    differences (the stacked-plane weight gradient must keep each batch item's shifts apart,
    including grids smaller than the kernel)."""
    torch.manual_seed(0)
    B, C = 3, 4
    x = _channels_last_view(B, C, *hw)
    if layout == 'nchw':
        x = x.contiguous()
    x.requires_grad_()
    w = torch.randn(C, 1, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(C, dtype=torch.float64, requires_grad=True)
    y = dw.depthwise_conv2d(x, w, b)
    ref = F.conv2d(x, w, b, 1, k // 2, 1, C)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, (x, w, b), g)
    want = torch.autograd.grad(ref, (x, w, b), g)
    for name, a, r in zip(('input', 'weight', 'bias'), got, want):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10, msg=lambda m: f'{name}: {m}')
    assert torch.autograd.gradcheck(dw._DepthwiseConv2dCPU.apply, (x, w, b))
    assert torch.autograd.gradcheck(dw._DepthwiseConv2dCPU.apply, (x, w, None))


def test_fp32_gradients_match_to_rounding():
    torch.manual_seed(0)
    x = _channels_last_view(2, 16, 24, 20, dtype=torch.float32).requires_grad_()
    w = torch.randn(16, 1, 7, 7, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    g = _channels_last_view(2, 16, 24, 20, dtype=torch.float32)  # as the tokens' gradient arrives
    got = torch.autograd.grad(dw.depthwise_conv2d(x, w, b), (x, w, b), g)
    want = torch.autograd.grad(F.conv2d(x, w, b, 1, 3, 1, 16), (x, w, b), g)
    for a, r in zip(got, want):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    assert got[0].is_contiguous(memory_format=torch.channels_last)  # tokens' layout kept


def _count_custom_calls(fn):
    calls = []
    orig = dw._DepthwiseConv2dCPU.apply

    def spy(*args):
        calls.append(1)
        return orig(*args)
    dw._DepthwiseConv2dCPU.apply = spy
    try:
        fn()
    finally:
        dw._DepthwiseConv2dCPU.apply = orig
    return len(calls)


def test_takes_over_only_for_large_kernels_with_gradients():
    x = _channels_last_view(1, 4, 6, 6, dtype=torch.float32)
    w7, w3 = torch.randn(4, 1, 7, 7), torch.randn(4, 1, 3, 3)
    assert _count_custom_calls(lambda: dw.depthwise_conv2d(x, w7)) == 1
    assert _count_custom_calls(lambda: dw.depthwise_conv2d(x, w3)) == 0  # oneDNN's is as fast
    with torch.no_grad():
        assert _count_custom_calls(lambda: dw.depthwise_conv2d(x, w7)) == 0
    assert _count_custom_calls(lambda: dw.depthwise_conv2d(x, torch.randn(4, 1, 6, 6))) == 0
    with torch.autocast('cpu', torch.bfloat16):
        assert _count_custom_calls(lambda: dw.depthwise_conv2d(x, w7)) == 0
    # an even kernel keeps nn.Conv2d(k, padding=k // 2) semantics: one more row and column
    assert dw.depthwise_conv2d(x, torch.randn(4, 1, 4, 4)).shape == (1, 4, 7, 7)


def test_paca_conv_clustering_trains_through_it():
    torch.manual_seed(0)
    m = P2CConv2d(8, 5).double()
    x = torch.randn(2, 6 * 7, 8, dtype=torch.float64, requires_grad=True)
    assert _count_custom_calls(lambda: m(x, (6, 7)).sum().backward()) == 1
    got = [x.grad] + [p.grad for p in m.parameters()]
    x.grad = None
    m.zero_grad()
    dwc, act1, pw1, act2, pw2 = m.clustering
    y = x.view(2, 6, 7, 8).permute(0, 3, 1, 2)
    ref = pw2(act2(pw1(act1(dwc(y)))))  # (B, M, H, W): nn.Conv2d all the way
    torch.testing.assert_close(m(x, (6, 7)), ref.flatten(2), rtol=1e-12, atol=1e-12)
    ref.sum().backward()
    for a, r in zip(got, [x.grad] + [p.grad for p in m.parameters()]):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
