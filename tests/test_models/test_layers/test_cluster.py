"""pool_clusters (the one pooling primitive) on hand-computed cases, and recording_assignments."""
import pytest
import torch
import torch.nn as nn

from clusterseg.models.layers import pool_clusters, recording_assignments

# B=1, N=3 tokens, C=2 channels
X = torch.tensor([[[1., 2.], [3., 4.], [5., 6.]]])


def test_dense_sum_and_mean_by_hand():
    A = torch.tensor([[[1., 0., 1.], [0., .5, .5]]])  # (1, M=2, N=3)
    # c0 = x0 + x2, c1 = .5 x1 + .5 x2
    want = torch.tensor([[[6., 8.], [4., 5.]]])
    torch.testing.assert_close(pool_clusters(A, X), want)
    # normalised: divide by the row sums 2 and 1 (+ eps)
    got = pool_clusters(A, X, normalize=True, eps=0.)
    torch.testing.assert_close(got, torch.tensor([[[3., 4.], [4., 5.]]]))


def test_dense_weight_multiplies_into_the_assignment():
    A = torch.tensor([[[1., 1., 0.]]])  # (1, 1, 3)
    w = torch.tensor([[[2.], [1.], [7.]]])  # (1, 3, 1)
    # 2 x0 + 1 x1 = (5, 8); weighted mean divides by 2 + 1
    torch.testing.assert_close(pool_clusters(A, X, weight=w), torch.tensor([[[5., 8.]]]))
    torch.testing.assert_close(pool_clusters(A, X, weight=w, normalize=True, eps=0.),
                               torch.tensor([[[5 / 3, 8 / 3]]]))


def test_hard_sum_mean_weight_and_empty_cluster_by_hand():
    idx = torch.tensor([[1, 0, 1]])  # (1, 3): x0, x2 -> cluster 1; x1 -> cluster 0; cluster 2 empty
    torch.testing.assert_close(pool_clusters(idx, X, num_clusters=3),
                               torch.tensor([[[3., 4.], [6., 8.], [0., 0.]]]))
    torch.testing.assert_close(pool_clusters(idx, X, num_clusters=3, normalize=True, eps=0.)[:, :2],
                               torch.tensor([[[3., 4.], [3., 4.]]]))
    w = torch.tensor([[[3.], [2.], [1.]]])
    # cluster 1: (3 x0 + 1 x2) / (3 + 1 + eps) = (8, 12) / 4.5 with eps = .5; the empty one stays 0
    got = pool_clusters(idx, X, weight=w, num_clusters=3, normalize=True, eps=.5)
    torch.testing.assert_close(got, torch.tensor([[[6 / 2.5, 8 / 2.5], [8 / 4.5, 12 / 4.5], [0., 0.]]]))


def test_hard_equals_dense_one_hot_over_a_batch():
    """The batch offsets of the hard path keep samples apart; both forms give the same clusters."""
    torch.manual_seed(0)
    x, w = torch.randn(3, 10, 4), torch.rand(3, 10, 1) + .1
    idx = torch.randint(0, 5, (3, 10))
    one_hot = torch.nn.functional.one_hot(idx, 5).transpose(1, 2).float()  # (B, M, N)
    for kw in (dict(), dict(weight=w), dict(weight=w, normalize=True)):
        torch.testing.assert_close(pool_clusters(idx, x, num_clusters=5, **kw),
                                   pool_clusters(one_hot, x, **kw))
    # per-sample loop reference of the weighted mean (ClusTR's cluster means)
    got = pool_clusters(idx, x, weight=w, num_clusters=5, normalize=True)
    for b in range(3):
        for m in range(5):
            sel = idx[b] == m
            want = (w[b, sel] * x[b, sel]).sum(0) / (w[b, sel].sum() + 1e-6)
            torch.testing.assert_close(got[b, m], want)


def test_gradients_reach_tokens_weights_and_soft_assignment():
    x = X.clone().requires_grad_()
    A = torch.rand(1, 2, 3, requires_grad=True)
    w = torch.rand(1, 3, 1, requires_grad=True)
    pool_clusters(A, x, weight=w, normalize=True).sum().backward()
    assert x.grad.abs().sum() > 0 and A.grad.abs().sum() > 0 and w.grad.abs().sum() > 0
    w2 = torch.rand(1, 3, 1, requires_grad=True)
    pool_clusters(torch.tensor([[0, 1, 1]]), X, weight=w2, num_clusters=2, normalize=True).sum().backward()
    assert w2.grad.abs().sum() > 0


@pytest.mark.parametrize('call,match', [
    (lambda: pool_clusters(torch.rand(1, 2, 3), X[0]), r'tokens must be \(B, N, C\), got \(3, 2\)'),
    (lambda: pool_clusters(torch.rand(1, 2, 4), X), r'dense assignment must be \(B, M, N\) with B=1, '
                                                    r'N=3, got \(1, 2, 4\)'),
    (lambda: pool_clusters(torch.rand(2, 3), X), r'dense assignment .* got \(2, 3\)'),
    (lambda: pool_clusters(torch.zeros(1, 4, dtype=torch.long), X, num_clusters=2),
     r'hard assignment must be \(B, N\) = \(1, 3\), got \(1, 4\)'),
    (lambda: pool_clusters(torch.zeros(1, 3, dtype=torch.long), X), 'needs num_clusters'),
    (lambda: pool_clusters(torch.rand(1, 2, 3), X, weight=torch.rand(1, 3)),
     r'weight must be \(B, N, 1\) = \(1, 3, 1\), got \(1, 3\)'),
    (lambda: pool_clusters(torch.rand(1, 2, 3), X, num_clusters=5), r'num_clusters=5 .* has M=2'),
])
def test_bad_shapes_raise_naming_the_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bool_assignment_is_refused():
    with pytest.raises(TypeError, match=r'torch.bool of shape \(1, 2, 3\)'):
        pool_clusters(torch.ones(1, 2, 3, dtype=torch.bool), X)


def test_recording_assignments_switches_on_and_resets_also_on_error():
    mods = [nn.Identity(), nn.Identity()]
    with recording_assignments(mods):
        assert all(m.record_assignment for m in mods)
        mods[0].last_assignment = torch.zeros(1)
    assert not any(m.record_assignment for m in mods) and mods[0].last_assignment is None
    with pytest.raises(RuntimeError, match='boom'):
        with recording_assignments(mods):
            mods[1].last_assignment = torch.zeros(1)
            raise RuntimeError('boom')
    assert not mods[1].record_assignment and mods[1].last_assignment is None
