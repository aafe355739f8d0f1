"""The one pooling primitive every clustering method here shares, and the cluster contract.

Clusters are weighted sums of tokens: ``c_m = sum_n A[m, n] x_n``, ``(B, M, N) x (B, N, C) -> (B, M, C)``.
PaCa-ViT's soft clusters (A = softmax over the patches), the PaCa head, ClusTR's weighted cluster
means (A = one-hot of the DPC-kNN index times the token weights, normalised per cluster) and kMaX's
centre update (A = one-hot of the argmax over the queries, summed, not averaged) are all this one
operation; they differ only in how A is made.

The cluster contract
--------------------
Every backbone and head that clusters has one method, so tools never need to know which method
they hold (``clusterseg.visualization.cluster_maps`` calls only this)::

    cluster_maps(inputs) -> list of (name, (B, h, w) long tensor)

- ``inputs``: what the module's ``forward`` takes: the image batch (B, 3, H, W) for a backbone (or
  a whole model), the feature list for a head.
- each map holds every token's hard cluster index in ``0..M-1`` on that clustering's token grid
  (h, w); soft assignments are reduced by the argmax over the M clusters. A map covers the input
  passed in: a module that pads internally crops its maps back to that input.
- names, in forward order: ``'stage{i}'`` (1-based) for a backbone stage with one clustering,
  ``'stage{i}/scale{s}'`` (0-based) where a stage clusters at several scales, ``'head'`` for a
  head's clustering.
- ``forward`` never changes with it: no flag changes what it returns, and a normal forward keeps
  nothing. Modules whose assignment is not already returned keep their last one only inside
  :func:`recording_assignments`, which ``cluster_maps`` opens.

Who follows it: PaCa-ViT (``stage1..3``, ``stage4`` for the teacher variants), ClusTR
(``stage{i}/scale{s}`` of each stage's last block; stage 4 is plain attention), the PaCa head and
kMaX-DeepLab's heads (``head``). PSViT has no ``cluster_maps``: its token pooling is a fixed
spatial pooling shared by all images, not an assignment of tokens to learned clusters.
"""
from contextlib import contextmanager
from typing import Iterable, Optional

import torch
from torch import Tensor
from torch import nn


def pool_clusters(assign: Tensor,
                  tokens: Tensor,
                  weight: Optional[Tensor] = None,
                  num_clusters: Optional[int] = None,
                  normalize: bool = False,
                  eps: float = 1e-6) -> Tensor:
    """Pool tokens into clusters: ``c = A @ x`` (optionally weighted and normalised).

    Args:
        assign (Tensor): the assignment, either dense ``(B, M, N)`` float weights of each token in
            each cluster, or hard ``(B, N)`` long cluster indices in ``0..M-1`` (then
            ``num_clusters`` gives M; computed as an ``index_add``, O(N C) instead of O(M N C)).
            Hard indices are not range-checked (that would synchronise with the GPU): they come
            from an argmax or a clustering.
        tokens (Tensor): (B, N, C) tokens.
        weight (Tensor, optional): (B, N, 1) per-token weights multiplied into A.
        num_clusters (int, optional): M, required for a hard ``(B, N)`` assignment; for a dense
            one it must equal ``assign.shape[1]`` if given.
        normalize (bool): divide each cluster by the sum of its weights (+ ``eps``), i.e. a
            weighted mean instead of a weighted sum (an empty cluster gives 0).
        eps (float): added to the normaliser.

    Returns:
        Tensor: (B, M, C) clusters.
    """
    if tokens.dim() != 3:
        raise ValueError(f'pool_clusters: tokens must be (B, N, C), got {tuple(tokens.shape)}')
    B, N, C = tokens.shape
    if weight is not None and tuple(weight.shape) != (B, N, 1):
        raise ValueError(f'pool_clusters: weight must be (B, N, 1) = {(B, N, 1)}, '
                         f'got {tuple(weight.shape)}')
    if assign.dtype in (torch.int64, torch.int32):
        if assign.shape != (B, N):
            raise ValueError(f'pool_clusters: a hard assignment must be (B, N) = {(B, N)}, '
                             f'got {tuple(assign.shape)}')
        if num_clusters is None:
            raise ValueError('pool_clusters: a hard (B, N) assignment needs num_clusters')
        M = num_clusters
        flat = (assign + torch.arange(B, device=tokens.device)[:, None] * M).reshape(-1)  # (B*N)
        w = weight if weight is not None else tokens.new_ones(B, N, 1)
        num = tokens.new_zeros(B * M, C).index_add(0, flat, (tokens * w).reshape(B * N, C))
        if not normalize:
            return num.reshape(B, M, C)
        den = w.new_zeros(B * M, 1).index_add(0, flat, w.reshape(B * N, 1))
        return (num / (den + eps)).reshape(B, M, C)
    if not assign.is_floating_point():
        raise TypeError(f'pool_clusters: the assignment must be float (B, M, N) weights or long '
                        f'(B, N) indices, got {assign.dtype} of shape {tuple(assign.shape)}')
    if assign.dim() != 3 or assign.shape[0] != B or assign.shape[2] != N:
        raise ValueError(f'pool_clusters: a dense assignment must be (B, M, N) with B={B}, N={N}, '
                         f'got {tuple(assign.shape)}')
    if num_clusters is not None and assign.shape[1] != num_clusters:
        raise ValueError(f'pool_clusters: num_clusters={num_clusters} but the dense assignment '
                         f'{tuple(assign.shape)} has M={assign.shape[1]}')
    if weight is not None:
        assign = assign * weight.transpose(1, 2)  # (B, M, N)
    out = torch.bmm(assign, tokens)  # (B, M, C)
    if normalize:
        out = out / (assign.sum(-1, keepdim=True) + eps)
    return out


@contextmanager
def recording_assignments(modules: Iterable[nn.Module]):
    """Inside the block, each of ``modules`` keeps the assignment of its last forward in
    ``last_assignment`` (the modules check their ``record_assignment`` attribute, False by
    default, so a normal forward keeps nothing). Both are reset on exit, also on an error."""
    modules = list(modules)
    for m in modules:
        m.record_assignment, m.last_assignment = True, None
    try:
        yield modules
    finally:
        for m in modules:
            m.record_assignment, m.last_assignment = False, None
