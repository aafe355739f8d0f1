"""The one pooling primitive every clustering method here shares.

Clusters are weighted sums of tokens: ``c_m = sum_n A[m, n] x_n``, ``(B, M, N) x (B, N, C) -> (B, M, C)``.
PaCa-ViT's soft clusters (A = softmax over the patches), the PaCa head, ClusTR's weighted cluster
means (A = one-hot of the DPC-kNN index times the token weights, normalised per cluster) and kMaX's
centre update (A = one-hot of the argmax over the queries, summed, not averaged) are all this one
operation; they differ only in how A is made.
"""
from typing import Optional

import torch
from torch import Tensor


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
        tokens (Tensor): (B, N, C) tokens.
        weight (Tensor, optional): (B, N, 1) per-token weights multiplied into A.
        num_clusters (int, optional): M, required for a hard ``(B, N)`` assignment.
        normalize (bool): divide each cluster by the sum of its weights (+ ``eps``), i.e. a
            weighted mean instead of a weighted sum.
        eps (float): added to the normaliser.

    Returns:
        Tensor: (B, M, C) clusters.
    """
    if tokens.dim() != 3:
        raise ValueError(f'pool_clusters: tokens must be (B, N, C), got {tuple(tokens.shape)}')
    B, N, C = tokens.shape
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
    if assign.dim() != 3 or assign.shape[0] != B or assign.shape[2] != N:
        raise ValueError(f'pool_clusters: a dense assignment must be (B, M, N) with B={B}, N={N}, '
                         f'got {tuple(assign.shape)}')
    if weight is not None:
        assign = assign * weight.transpose(1, 2)  # (B, M, N)
    out = torch.bmm(assign, tokens)  # (B, M, C)
    if normalize:
        out = out / (assign.sum(-1, keepdim=True) + eps)
    return out
