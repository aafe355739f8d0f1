"""Token pooling and attention sharing (PSViT primitives) against naive references."""
import math

import pytest
import torch

from clusterseg.models.layers import (FullAttention, SharedAttention, TokenPool,
                                      check_attention_sharing)
from clusterseg.models.layers.token_pool import pooled_hw


def _naive_pool2d(grid, k, s, op):
    """grid: (B, C, H, W); windows of k x k, stride s, padding k // 2, padding ignored."""
    B, C, H, W = grid.shape
    p = k // 2
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = torch.empty(B, C, Ho, Wo)
    for i in range(Ho):
        for j in range(Wo):
            y0, x0 = i * s - p, j * s - p
            win = grid[:, :, max(y0, 0):min(y0 + k, H), max(x0, 0):min(x0 + k, W)].flatten(2)
            out[:, :, i, j] = win.amax(-1) if op == 'max' else win.mean(-1)
    return out


@pytest.mark.parametrize('op', ['max', 'avg'])
@pytest.mark.parametrize('hw', [(6, 8), (7, 5)])
def test_2d_pooling_matches_naive_and_keeps_cls(op, hw):
    torch.manual_seed(0)
    B, C = 2, 4
    H, W = hw
    x = torch.randn(B, 1 + H * W, C)
    pool = TokenPool(C, pool_type=op, pool_dims='2d', kernel_size=3, stride=2)
    y, new_hw = pool(x, hw)
    assert new_hw == (math.ceil(H / 2), math.ceil(W / 2)) == pooled_hw(hw)
    assert y.shape == (B, 1 + new_hw[0] * new_hw[1], C)
    torch.testing.assert_close(y[:, 0], x[:, 0])  # the cls token is never pooled
    grid = x[:, 1:].transpose(1, 2).reshape(B, C, H, W)
    ref = _naive_pool2d(grid, 3, 2, op).flatten(2).transpose(1, 2)
    torch.testing.assert_close(y[:, 1:], ref)


def test_1d_pooling_over_the_sequence():
    torch.manual_seed(0)
    x = torch.randn(2, 1 + 5 * 7, 3)
    y, hw = TokenPool(3, pool_type='max', pool_dims='1d')(x, (5, 7))
    assert hw == (1, 18) and y.shape == (2, 19, 3)
    seq = x[:, 1:]  # (B, 35, C), windows over the flat row-major order
    ref = torch.stack([seq[:, max(2 * i - 1, 0):2 * i + 2].amax(1) for i in range(18)], dim=1)
    torch.testing.assert_close(y[:, 1:], ref)
    torch.testing.assert_close(y[:, 0], x[:, 0])


def test_dwconv_pooling_is_depthwise_and_widening_uses_separate_cls_linear():
    torch.manual_seed(0)
    pool = TokenPool(4, 8, pool_type='dwconv', pool_dims='2d')
    assert pool.pool.groups == 4 and pool.pool.weight.shape == (4, 1, 3, 3)
    x = torch.randn(2, 1 + 16, 4)
    y, hw = pool(x, (4, 4))
    assert hw == (2, 2) and y.shape == (2, 5, 8)
    torch.testing.assert_close(y[:, 0], pool.cls_expand(x[:, 0]))
    conv = torch.nn.functional.conv2d(x[:, 1:].transpose(1, 2).reshape(2, 4, 4, 4), pool.pool.weight,
                                      pool.pool.bias, stride=2, padding=1, groups=4)
    torch.testing.assert_close(y[:, 1:], pool.expand(conv.flatten(2).transpose(1, 2)))
    # no cls token: every token is a patch token
    y2, _ = TokenPool(4, pool_type='avg', num_extra_tokens=0)(torch.randn(2, 16, 4), (4, 4))
    assert y2.shape == (2, 4, 4)


def test_pool_rejects_bad_settings():
    with pytest.raises(ValueError, match='pool_type'):
        TokenPool(4, pool_type='median')
    with pytest.raises(ValueError, match='pool_dims'):
        TokenPool(4, pool_dims='3d')
    with pytest.raises(ValueError, match=r'\(H, W\)=\(4, 4\)'):
        TokenPool(4)(torch.randn(1, 16, 4), (4, 4))  # cls token expected but missing


def _naive_attention_map(attn_module, x):
    """softmax(q k^T / sqrt(d)) per head from the module's qkv weights, by hand."""
    B, N, C = x.shape
    h = attn_module.num_heads
    d = C // h
    qkv = x @ attn_module.qkv.weight.t() + attn_module.qkv.bias  # (B, N, 3C)
    q, k = qkv[..., :C], qkv[..., C:2 * C]
    maps = []
    for i in range(h):
        qi, ki = q[..., i * d:(i + 1) * d], k[..., i * d:(i + 1) * d]
        maps.append(torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(d), dim=-1))
    return torch.stack(maps, dim=1)  # (B, h, N, N)


def test_shared_layer_equals_attention_with_previous_map():
    torch.manual_seed(0)
    B, N, C, h = 2, 10, 12, 3
    full = FullAttention(C, h).eval()
    shared = SharedAttention(C, h).eval()
    x1, x2 = torch.randn(B, N, C), torch.randn(B, N, C)
    out1, attn = full(x1, return_attn=True)
    ref_map = _naive_attention_map(full, x1)
    torch.testing.assert_close(attn, ref_map)
    # the fused path (map not requested) gives the same output and no map
    out1_fused, none = full(x1)
    assert none is None
    torch.testing.assert_close(out1_fused, out1)
    # shared layer: proj(A_prev @ v(x2)) per head, by hand
    out2, handed_on = shared(x2, attn, return_attn=True)
    v = x2 @ shared.v.weight.t() + shared.v.bias  # (B, N, C)
    d = C // h
    heads = [ref_map[:, i] @ v[..., i * d:(i + 1) * d] for i in range(h)]
    ref = torch.cat(heads, dim=-1) @ shared.proj.weight.t() + shared.proj.bias
    torch.testing.assert_close(out2, ref)
    assert handed_on is attn  # raw reuse: a following shared layer gets the same map
    assert shared(x2, attn)[1] is None
    # 'qk' hand-off: the previous layer passes (q, k); the map is recomputed in the fused kernel
    out1_qk, qk = full(x1, return_attn='qk')
    torch.testing.assert_close(out1_qk, out1)
    assert isinstance(qk, tuple) and qk[0].shape == (B, h, N, d)
    out2_qk, handed_qk = shared(x2, qk, return_attn=True)
    torch.testing.assert_close(out2_qk, ref)
    assert handed_qk is qk
    with pytest.raises(ValueError, match="return_attn must be"):
        full(x1, return_attn='kv')


def test_shared_layer_has_only_v_and_proj():
    shared, full = SharedAttention(16, 4), FullAttention(16, 4)
    assert {n for n, _ in shared.named_parameters()} == {'v.weight', 'v.bias', 'proj.weight', 'proj.bias'}
    n_shared = sum(p.numel() for p in shared.parameters())
    n_full = sum(p.numel() for p in full.parameters())
    assert n_full - n_shared == 2 * (16 * 16 + 16)  # the q and k projections
    with pytest.raises(ValueError, match='previous layer'):
        shared(torch.randn(1, 5, 16))
    with pytest.raises(ValueError, match=r'\(1, 4, 5, 5\)'):
        shared(torch.randn(1, 5, 16), torch.rand(1, 2, 5, 5))


def test_invalid_sharing_is_rejected_naming_both_layers():
    stage = [0, 0, 0, 1, 1, 1]
    heads = [2, 2, 2, 4, 4, 4]
    check_attention_sharing([0, 1, 1, 0, 1, 0], heads, stage)  # valid, incl. a chain 0 -> 1 -> 2
    with pytest.raises(ValueError, match=r'layer 3 cannot share the attention map of layer 2: a token '
                                         r'pooling lies between them \(pool_after=\[2\]\)'):
        check_attention_sharing([0, 0, 0, 1, 0, 0], heads, stage, pool_after=[2])
    with pytest.raises(ValueError, match=r'layer 2 \(4 heads\) cannot share the attention map of '
                                         r'layer 1 \(2 heads\)'):
        check_attention_sharing([0, 0, 1, 0], [2, 2, 4, 4], [0, 0, 0, 0])
    with pytest.raises(ValueError, match='layer 0 cannot share'):
        check_attention_sharing([1, 0], [2, 2], [0, 0])


def _pair(share_impl, x1, x2, full, shared):
    """(out of the full layer, out of the sharing layer) with the given hand-off."""
    out1, attn = full(x1, return_attn=share_impl)
    out2, _ = shared(x2, attn)
    return out1, out2, attn


def test_auto_handoff_picks_the_map_only_for_small_maps_in_inference():
    torch.manual_seed(0)
    B, N, C, h = 2, 10, 12, 3
    full, shared = FullAttention(C, h).eval(), SharedAttention(C, h).eval()
    x1, x2 = torch.randn(B, N, C), torch.randn(B, N, C)
    ref1, ref2, ref_map = _pair('map', x1, x2, full, shared)
    # B * h * N * N = 600 elements: below the default bound -> the map itself is handed on
    assert full.handoff(x1, 'auto') == 'map'
    with torch.no_grad():
        out1, out2, attn = _pair('auto', x1, x2, full, shared)
    assert torch.is_tensor(attn) and attn.shape == (B, h, N, N)
    torch.testing.assert_close(attn, _naive_attention_map(full, x1))
    # a bound below 600 elements -> (q, k), the same outputs
    full.auto_map_max_elements = B * h * N * N - 1
    assert full.handoff(x1, 'auto') == 'qk'
    with torch.no_grad():
        out1_qk, out2_qk, qk = _pair('auto', x1, x2, full, shared)
    assert isinstance(qk, tuple) and qk[0].shape == (B, h, N, C // h)
    for a, b in ((out1, ref1), (out2, ref2), (out1_qk, ref1), (out2_qk, ref2)):
        torch.testing.assert_close(a, b)
    # while gradients are recorded 'auto' hands on (q, k) whatever the size
    full.auto_map_max_elements = 10**9
    assert full.handoff(x1.requires_grad_(), 'auto') == 'qk'
    assert full.handoff(x1.detach(), True) == 'map' and full.handoff(x1, False) is False
    with pytest.raises(ValueError, match=r"return_attn must be False, True, 'map', 'qk' or 'auto', got 'kv'"):
        full.handoff(x1, 'kv')


def test_map_and_qk_handoffs_give_the_same_gradients():
    torch.manual_seed(0)
    B, N, C, h = 2, 9, 12, 3
    full, shared = FullAttention(C, h), SharedAttention(C, h)
    x1, x2 = torch.randn(B, N, C), torch.randn(B, N, C)
    grads = {}
    for impl in ('map', 'qk'):
        full.zero_grad(set_to_none=True)
        shared.zero_grad(set_to_none=True)
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        out1, out2, _ = _pair(impl, a, b, full, shared)
        (out1.square().sum() + (out2 * out1).sum()).backward()
        grads[impl] = [a.grad, b.grad, full.qkv.weight.grad, full.qkv.bias.grad, shared.v.weight.grad,
                       shared.proj.weight.grad]
    for g_map, g_qk in zip(grads['map'], grads['qk']):
        torch.testing.assert_close(g_qk, g_map)
    # the sharing layer's loss reaches the full layer's q / k weights through the shared map
    assert grads['qk'][2][:2 * C].abs().sum() > 0


def test_attention_dropout_applies_to_the_used_map_not_the_handed_on_one():
    torch.manual_seed(0)
    B, N, C, h = 1, 16, 8, 2
    full = FullAttention(C, h, attn_drop=0.5).train()
    x = torch.randn(B, N, C)
    out, attn = full(x, return_attn='map')
    torch.testing.assert_close(attn, _naive_attention_map(full, x))  # pre-dropout
    out_nodrop, _ = full.eval()(x, return_attn='map')
    assert not torch.allclose(out, out_nodrop)  # the dropout did act on the map that was used
    shared = SharedAttention(C, h, attn_drop=0.5).train()
    y1, _ = shared(x, attn)
    y2, _ = shared.eval()(x, attn)
    assert not torch.allclose(y1, y2)
