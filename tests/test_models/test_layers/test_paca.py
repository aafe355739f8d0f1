"""PaCa attention against a naive reference written here, and its contracts."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from clusterseg.models.layers import DWConv, MixFFN, P2CConv2d, P2CMlp, PaCaAttention


def naive_paca(attn, x, hw, z=None):
    """Reference: explicit loops over heads, every step spelled out."""
    B, N, C = x.shape
    if attn.num_clusters > 0:
        if attn.clustering is not None:
            logits = attn.clustering(x, hw)  # (B, M, N)
            z = torch.exp(logits - logits.max(-1, keepdim=True).values)
            z = z / z.sum(-1, keepdim=True)  # softmax over the N patches
        c = torch.einsum('bmn,bnc->bmc', z, x)
        mu = c.mean(-1, keepdim=True)
        var = c.var(-1, unbiased=False, keepdim=True)
        c = (c - mu) / torch.sqrt(var + 1e-6) * attn.cluster_norm.weight + attn.cluster_norm.bias
    else:
        c = x
    q, k, v = attn.q(x), attn.k(c), attn.v(c)
    h = attn.num_heads
    d = C // h
    outs = []
    for i in range(h):
        qi, ki, vi = (t[..., i * d:(i + 1) * d] for t in (q, k, v))
        a = torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(d), dim=-1)  # (B, N, M)
        outs.append(a @ vi)
    return attn.proj(torch.cat(outs, -1)), z


@pytest.mark.parametrize('clustering', ['conv', 'mlp', 'linear'])
@pytest.mark.parametrize('num_clusters', [0, 1, 7])
def test_matches_naive(clustering, num_clusters):
    torch.manual_seed(0)
    attn = PaCaAttention(24, 3, num_clusters, clustering=clustering).eval()
    for p in attn.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5 * 6, 24)
    out, z = attn(x, (5, 6))
    ref, zref = naive_paca(attn, x, (5, 6))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    if num_clusters:
        assert z.shape == (2, num_clusters, 30)
        torch.testing.assert_close(z.sum(-1), torch.ones(2, num_clusters))  # over patches
        torch.testing.assert_close(z, zref)
    else:
        assert z is None


def test_m0_is_standard_mhsa():
    torch.manual_seed(1)
    attn = PaCaAttention(16, 4, 0).eval()
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.k.bias, attn.v.bias]))
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(3, 12, 16)
    torch.testing.assert_close(attn(x, (3, 4))[0], mha(x, x, x)[0], rtol=1e-4, atol=1e-5)


def test_stagewise_reuse_and_missing_z():
    torch.manual_seed(2)
    first = PaCaAttention(16, 2, 5, clustering='conv').eval()
    later = PaCaAttention(16, 2, 5, clustering=None).eval()
    assert later.clustering is None and not later.computes_clusters
    x = torch.randn(1, 16, 16)
    _, z = first(x, (4, 4))
    out, z2 = later(x, (4, 4), z)
    assert z2 is z  # passed through unchanged to the next block
    torch.testing.assert_close(out, naive_paca(later, x, (4, 4), z)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='assignment z'):
        later(x, (4, 4))
    with pytest.raises(ValueError, match=r'z must have shape \(1, 5, 16\)'):
        later(x, (4, 4), z[:, :3])


def test_attention_weights_on_request_only():
    torch.manual_seed(3)
    attn = PaCaAttention(16, 2, 6).eval()
    x = torch.randn(2, 20, 16)
    out, z, weights = attn(x, (4, 5), return_attn=True)
    assert weights.shape == (2, 2, 20, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 20))
    torch.testing.assert_close(out, attn(x, (4, 5))[0], rtol=1e-5, atol=1e-6)
    assert len(attn(x, (4, 5))) == 2


def test_bad_inputs():
    with pytest.raises(ValueError, match='num_clusters must be an int >= 0'):
        PaCaAttention(16, 2, -1)
    with pytest.raises(ValueError, match='divisible'):
        PaCaAttention(10, 3, 4)
    with pytest.raises(ValueError, match='clustering must be one of'):
        PaCaAttention(16, 2, 4, clustering='kmeans')
    attn = PaCaAttention(16, 2, 4)
    with pytest.raises(ValueError, match=r'\(H, W\)=\(3, 3\)'):
        attn(torch.randn(1, 10, 16), (3, 3))


class _PeakNumel(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                self.peak = max(self.peak, t.numel())
        return out


def test_memory_linear_in_patches():
    """No op materialises an N x N tensor: the largest intermediate grows linearly in N."""
    attn = PaCaAttention(32, 2, 8, clustering='conv').eval()
    peaks = {}
    for side in (16, 32):
        x = torch.randn(1, side * side, 32)
        with torch.no_grad(), _PeakNumel() as mode:
            attn(x, (side, side))
        peaks[side * side] = mode.peak
    assert peaks[1024] <= 4.2 * peaks[256]  # 4x the patches -> ~4x the memory, not 16x
    assert peaks[1024] < 1024 * 1024


def test_clustering_modules():
    x = torch.randn(2, 12, 8)
    conv = P2CConv2d(8, 5, kernel_size=7)
    assert conv(x, (3, 4)).shape == (2, 5, 12)
    assert conv.clustering[4].bias is None and conv.clustering[0].groups == 8
    mlp = P2CMlp(8, 5, mlp_ratio=4)
    assert mlp(x, (3, 4)).shape == (2, 5, 12) and mlp.clustering[0].out_features == 32


def test_mixffn_shortcut_around_dwconv():
    torch.manual_seed(4)
    ffn = MixFFN(8, 16).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        ffn.dwconv.dwconv.weight.zero_()
        ffn.dwconv.dwconv.bias.zero_()
    # a zero DW conv leaves the shortcut: fc2(gelu(fc1 x))
    torch.testing.assert_close(ffn(x, (2, 3)), ffn.fc2(F.gelu(ffn.fc1(x))))
    no_short = DWConv(8, shortcut=False)
    with torch.no_grad():
        no_short.dwconv.weight.zero_()
        no_short.dwconv.bias.zero_()
    assert torch.all(no_short(x, (2, 3)) == 0)
