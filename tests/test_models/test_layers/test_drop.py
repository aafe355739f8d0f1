"""Stochastic depth (clusterseg.models.layers.DropPath): the fused residual against the plain
``x + drop_path(branch)``, per-sample keep / drop with the 1 / keep scale, and its gradients."""
import torch

from clusterseg.models.layers import DropPath


def test_residual_equals_the_plain_sum_with_the_same_mask():
    m = DropPath(0.4).train()
    x, b = torch.randn(64, 5, 3, dtype=torch.float64), torch.randn(64, 5, 3, dtype=torch.float64)
    torch.manual_seed(0)
    fused = m.residual(x, b)
    torch.manual_seed(0)
    plain = x + m(b)
    torch.testing.assert_close(fused, plain, rtol=1e-15, atol=1e-15)
    # per sample: the branch either dropped or scaled by 1 / keep, nothing in between
    kept = ((fused - x) - b / 0.6).abs().amax((1, 2)) < 1e-12
    dropped = (fused - x).abs().amax((1, 2)) == 0
    assert (kept ^ dropped).all() and 10 < int(dropped.sum()) < 45  # ~26 of 64 at p = 0.4


def test_identity_when_not_training_or_zero_probability():
    x, b = torch.randn(4, 7), torch.randn(4, 7)
    assert torch.equal(DropPath(0.5).eval().residual(x, b), x + b)
    assert torch.equal(DropPath(0.).train().residual(x, b), x + b)
    assert DropPath(0.5).eval()(b) is b


def test_gradients_follow_the_mask():
    m = DropPath(0.5).train()
    x = torch.randn(32, 3, requires_grad=True)
    b = torch.randn(32, 3, requires_grad=True)
    torch.manual_seed(1)
    m.residual(x, b).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    scale = b.grad[:, 0]
    assert set(scale.tolist()) <= {0., 2.} and (b.grad == scale[:, None]).all()
    assert 0 < int((scale == 0).sum()) < 32
