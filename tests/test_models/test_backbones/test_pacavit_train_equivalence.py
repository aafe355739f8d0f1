"""PaCa-ViT's training step (layouts and fusions of the fast path) against the straightforward
formulation written out here: NCHW convs on contiguous maps, the clustering's 1x1 convs as convs,
einsum attention, the Mix-FFN shortcut as an add. Outputs and every parameter's gradient must
agree (float64, so the tolerance is far below any real difference)."""
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from clusterseg.models.backbones import PaCaViT
from clusterseg.models.layers.embed import ConvDownsample, _Conv3x3S2NHWC

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[2, 1, 2, 1], num_clusters=[5, 6, 7, 0],
            clustering='conv')


def _conv(m, x, groups=1):
    return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, groups)


def _ln_channels(norm, x):
    """LayerNorm over C of a (B, C, H, W) map, by explicit permutes."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2).contiguous()


def _map(t, H, W):
    """(B, N, C) -> (B, C, H, W), contiguous."""
    return t.transpose(1, 2).reshape(t.shape[0], -1, H, W).contiguous()


def reference_block(blk, t, H, W, z):
    B, N, C = t.shape
    a, y = blk.attn, blk.norm1_before(t)
    if a.clustering is not None:
        dw, _, pw1, _, pw2 = a.clustering.clustering
        logits = _conv(pw2, F.gelu(_conv(pw1, F.gelu(_conv(dw, _map(y, H, W), C)))))  # (B, M, H, W)
        z = logits.flatten(2).softmax(-1)  # (B, M, N)
    c = a.cluster_norm(torch.einsum('bmn,bnc->bmc', z, y)) if a.num_clusters else y
    h = a.num_heads
    q = a.q(y).reshape(B, N, h, -1)
    k = a.k(c).reshape(B, c.shape[1], h, -1)
    v = a.v(c).reshape(B, c.shape[1], h, -1)
    attn = (torch.einsum('bnhd,bmhd->bhnm', q, k) * a.scale).softmax(-1)  # (B, h, N, M)
    t = t + a.proj(torch.einsum('bhnm,bmhd->bnhd', attn, v).reshape(B, N, C))
    u = _map(blk.mlp.fc1(blk.norm2_before(t)), H, W)  # (B, 4C, H, W)
    u = u + _conv(blk.mlp.dwconv.dwconv, u, u.shape[1])
    return t + blk.mlp.fc2(F.gelu(u.flatten(2).transpose(1, 2))), z


def reference_forward(model, x):
    pe = model.patch_embed
    for conv in pe.proj:
        x = _conv(conv, x)
    x = _ln_channels(pe.norm, x)
    outs = []
    for i in range(4):
        _, _, H, W = x.shape
        t, z = x.flatten(2).transpose(1, 2), None  # (B, N, C)
        for blk in getattr(model, f'stage{i + 1}'):
            t, z = reference_block(blk, t, H, W, z)
        x = _map(getattr(model, f'norm{i + 1}')(t), H, W)
        outs.append(x)
        if i < 3:
            tr = getattr(model, f'transition{i + 1}')
            x = _ln_channels(tr.norm, _conv(tr.proj, x))
    return outs


def _outputs_and_grads(model, forward, x):
    model.zero_grad(set_to_none=True)
    outs = forward(x)
    gen = torch.Generator().manual_seed(1)
    # a random projection: mean(out**2) of a LayerNorm output is ~constant (gradients ~ 0)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs], {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize('batch,size', [(2, (35, 45)), (1, (32, 32))])
def test_train_step_equals_the_straightforward_network(batch, size):
    torch.manual_seed(0)
    model = PaCaViT(ARCH, out_indices=(0, 1, 2, 3), drop_path_rate=0.).double().train()
    x = torch.randn(batch, 3, *size, dtype=torch.float64)
    outs, grads = _outputs_and_grads(model, model, x)
    ref_outs, ref_grads = _outputs_and_grads(model, lambda im: reference_forward(model, im), x)
    for o, r in zip(outs, ref_outs):
        assert o.shape == r.shape
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)
    scale = max(g.abs().max() for g in ref_grads.values())
    assert grads.keys() == ref_grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-8, atol=1e-11 * scale,
                                   msg=lambda m: f'gradient of {name}: {m}')


def test_inference_equals_the_straightforward_network():
    torch.manual_seed(0)
    model = PaCaViT(ARCH, out_indices=(0, 1, 2, 3)).double().eval()
    x = torch.randn(2, 3, 33, 40, dtype=torch.float64)
    with torch.no_grad():
        for o, r in zip(model(x), reference_forward(model, x)):
            torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('hw', [(8, 8), (7, 9), (1, 5), (2, 3), (1, 1)])
def test_stride2_gemm_conv_equals_conv2d(hw):
    """The taps-as-one-GEMM 3x3 / stride-2 conv of the transitions: values and gradients of input,
    weight and bias against F.conv2d (gradcheck checks the backward against finite differences)."""
    torch.manual_seed(0)
    x = torch.randn(2, *hw, 3, dtype=torch.float64, requires_grad=True)  # (B, H, W, C)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = _Conv3x3S2NHWC.apply(x, w, b)  # (B, Ho, Wo, 4)
    ref = F.conv2d(x.permute(0, 3, 1, 2), w, b, 2, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_Conv3x3S2NHWC.apply, (x, w, b))


def test_transition_takes_the_gemm_path_only_when_training():
    m = ConvDownsample(4, 6).double()
    x = torch.randn(1, 25, 4, dtype=torch.float64).view(1, 5, 5, 4).permute(0, 3, 1, 2)
    calls = []
    orig = _Conv3x3S2NHWC.apply

    def spy(*args):
        calls.append(1)
        return orig(*args)
    _Conv3x3S2NHWC.apply = spy
    try:
        y = m(x)
        with torch.no_grad():
            y_eval = m(x)
    finally:
        _Conv3x3S2NHWC.apply = orig
    assert len(calls) == 1  # grad mode: the GEMM path; no_grad (and tracing): nn.Conv2d
    torch.testing.assert_close(y, y_eval)
    assert y.permute(0, 2, 3, 1).is_contiguous()  # a channels-last view, like the conv's


def _load_benchmark_tool():
    path = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_pacavit.py')
    spec = importlib.util.spec_from_file_location('_benchmark_pacavit', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_naive_peer_is_the_same_network():
    """benchmark_pacavit.py's 'pacavit-tiny-naive' runs the same weights to the same outputs and
    gradients (its speed ratio is the fast path's, nothing else)."""
    tool = _load_benchmark_tool()
    torch.manual_seed(0)
    model = PaCaViT(ARCH, out_indices=(0, 1, 2, 3), drop_path_rate=0.).double().train()
    naive = tool.NaivePaCaViT(model)
    x = torch.randn(2, 3, 35, 45, dtype=torch.float64)
    outs, grads = _outputs_and_grads(model, model, x)
    ref_outs, ref_grads = _outputs_and_grads(model, naive, x)
    for o, r in zip(outs, ref_outs):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)
    scale = max(g.abs().max() for g in ref_grads.values())
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-8, atol=1e-11 * scale)
    with pytest.raises(ValueError, match='conv-clustering'):
        tool.NaivePaCaViT(PaCaViT(dict(ARCH, clustering='mlp')))
