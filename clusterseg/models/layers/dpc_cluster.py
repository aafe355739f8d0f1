"""Density-peaks kNN clustering and clustered key/value attention, the primitives of ClusTR.

Xie et al., "ClusTR: Exploring Efficient Self-attention via Clustering for Vision Transformers",
arXiv 2208.13138. The N tokens of a layer are grouped by DPC-kNN (density peaks with a kNN density,
no iterations, no learned centroids) into M clusters; keys and values come from the (learned-weight)
cluster means, so attention costs O(N * M * C) with M = N / sr^2 (and 4 M for the second scale).

DPC-kNN itself is O(N^2 C) compute. :func:`dpc_knn` never needs the N x N distance matrix in one
piece: it walks over blocks of rows (each block against all N tokens), so its peak memory is set by
``max_block_elems`` instead of N^2. With one block covering all rows it *is* the naive N x N
algorithm; both run the same code, so they give the same assignments.

Shapes: B batch, N tokens, C channels, M clusters, h heads, d = C / h.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .cluster import pool_clusters

# a block of (B, rows, N) distances holds at most this many elements by default (64 MiB in fp32):
# B * N^2 <= this (N <= 4096 at B = 1) runs as one block, i.e. the naive N x N algorithm
DEFAULT_MAX_BLOCK_ELEMS = 2**24


def cluster_counts(num_tokens, sr_ratio, cluster_scales=(1, 4), where=''):
    """Cluster counts ``[s * (N // sr^2) for s in cluster_scales]``, checked to be in ``1..N``.

    Args:
        num_tokens (int): N.
        sr_ratio (int): the stage's reduction ratio (8, 4, 2 in stages 1-3).
        cluster_scales (Sequence[int]): multipliers of ``M0 = N // sr^2``.
        where (str): names the layer and input size in the error message.

    Raises:
        ValueError: if a count is <= 0 or > N.
    """
    m0 = num_tokens // sr_ratio**2
    counts = [int(s) * m0 for s in cluster_scales]
    for m in counts:
        if m <= 0 or m > num_tokens:
            raise ValueError(
                f'{where}: N={num_tokens} tokens give M={m} clusters (M0 = N // sr^2 = '
                f'{num_tokens} // {sr_ratio}^2 = {m0}, scales {tuple(cluster_scales)}); M must be in '
                f'1..N. Use a larger input (N >= sr^2 = {sr_ratio**2} tokens in this stage) or '
                f'other cluster_scales.')
    return counts


def _sq_dists(a, b):
    """Squared Euclidean distances (B, Na, C), (B, Nb, C) -> (B, Na, Nb), in fp32.

    ``|a|^2 + |b|^2 - 2 a.b`` (one GEMM, as ``torch.cdist`` does for large inputs), clamped at 0;
    ``bmm`` (not ``baddbmm``) so that the complexity counter sees the clustering's MACs.
    """
    a2 = a.pow(2).sum(-1, keepdim=True)  # (B, Na, 1)
    b2 = b.pow(2).sum(-1).unsqueeze(1)  # (B, 1, Nb)
    return torch.bmm(a, b.transpose(1, 2)).mul_(-2).add_(a2).add_(b2).clamp_min_(0)


def _row_blocks(batch, num_rows, num_cols, max_block_elems):
    rows = max(1, min(num_rows, max_block_elems // max(1, batch * num_cols)))
    return [(s, min(s + rows, num_rows)) for s in range(0, num_rows, rows)]


@torch.no_grad()
def dpc_knn(x, num_clusters, k=5, memory_efficient=None, max_block_elems=DEFAULT_MAX_BLOCK_ELEMS):
    """Density-peaks clustering with kNN density (ClusTR / TCFormer's ``cluster_dpc_knn``).

    With ``D = cdist(x, x) / sqrt(C)`` (Euclidean, fp32):

    * ``rho_i = exp(-mean_{k nearest j, self included} D_ij^2)`` (``k`` capped at N);
    * ``delta_i = min_{j denser than i} D_ij``; the densest token gets ``max(D)`` of its sample;
    * centres: the top-M tokens by ``rho * delta``; every token joins its nearest centre, and a
      centre always joins its own cluster. One density / delta pass serves every M.

    Ties are broken by token index, with no random noise (the reference adds ``U(0, 1e-6)`` to rho):
    j is *denser* than i if ``rho_j > rho_i`` or (``rho_j == rho_i`` and ``j < i``); among equal
    scores the lower index becomes a centre first; a token equidistant to several centres joins
    the highest-ranked one. So the result is a deterministic function of ``x``.

    Args:
        x (Tensor): (B, N, C) token features (not differentiated through).
        num_clusters (int | Sequence[int]): M, or several M sharing one density computation.
        k (int): neighbours of the kNN density.
        memory_efficient (bool | None): process the N x N distances in blocks of rows (two
            passes: densities, then nearest-denser distances; a third, O(N M), for the
            assignment). ``None``: when ``B * N^2 > max_block_elems``. ``False``: one block (the
            naive N x N algorithm).
        max_block_elems (int): elements of one (B, rows, N) block in the memory-efficient path.

    Returns:
        list[Tensor] | Tensor: per M, (B, N) long cluster index in ``0..M-1`` (cluster m is centred
        on the m-th best token by ``rho * delta``). A single tensor if ``num_clusters`` is an int.
    """
    single = isinstance(num_clusters, int)
    counts = [num_clusters] if single else [int(m) for m in num_clusters]
    B, N, C = x.shape
    for m in counts:
        if m <= 0 or m > N:
            raise ValueError(f'dpc_knn: M={m} clusters for N={N} tokens; M must be in 1..N')
    x = x.detach().float()
    k = min(k, N)
    if memory_efficient is None:
        memory_efficient = B * N * N > max_block_elems
    blocks = _row_blocks(B, N, N, max_block_elems) if memory_efficient else [(0, N)]
    idx = torch.arange(N, device=x.device)

    # pass 1: kNN density and the largest distance of each sample
    rho = x.new_empty(B, N)
    d2_max = x.new_zeros(B)
    for s, e in blocks:
        d2 = _sq_dists(x[:, s:e], x).div_(C)  # (B, rows, N): D^2
        knn = d2.topk(k, dim=-1, largest=False).values  # (B, rows, k), sorted: exact set
        rho[:, s:e] = torch.exp(-knn.mean(-1))
        d2_max = torch.maximum(d2_max, d2.flatten(1).amax(-1))
        del d2, knn

    # pass 2: distance to the nearest denser token. "Denser" is the strict total order of a
    # stable descending sort of rho (equal rho: lower index first), so j is denser than i iff
    # rank_j < rank_i: one comparison per pair
    by_rho = torch.sort(rho, dim=-1, descending=True, stable=True).indices  # (B, N)
    rank = torch.empty_like(by_rho).scatter_(1, by_rho, idx[None].expand(B, N))  # (B, N)
    delta2 = x.new_empty(B, N)
    for s, e in blocks:
        d2 = _sq_dists(x[:, s:e], x).div_(C)  # (B, rows, N)
        not_denser = rank[:, None, :] >= rank[:, s:e, None]  # (B, rows, N), self included
        d2.masked_fill_(not_denser, float('inf'))
        delta2[:, s:e] = d2.amin(-1)
        del d2, not_denser
    delta2 = torch.where(torch.isinf(delta2), d2_max[:, None], delta2)  # the densest token
    score = rho * delta2.sqrt()  # (B, N)
    # stable descending sort: equal scores keep index order
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices  # (B, N)

    # pass 3: nearest centre (argmin returns the first, i.e. best-ranked, of equal distances)
    results = []
    batch = torch.arange(B, device=x.device)[:, None]
    for m in counts:
        centres = order[:, :m]  # (B, M)
        xc = x[batch, centres]  # (B, M, C)
        assign = x.new_empty(B, N, dtype=torch.long)
        for s, e in (_row_blocks(B, N, m, max_block_elems) if memory_efficient else [(0, N)]):
            assign[:, s:e] = _sq_dists(x[:, s:e], xc).argmin(-1)
        assign[batch, centres] = torch.arange(m, device=x.device)[None].expand(B, m)
        results.append(assign)
    return results[0] if single else results


class ClusteredKVAttention(nn.Module):
    """Multi-head attention from the N tokens to the means of their DPC-kNN clusters.

    ``sr_ratio > 1``: per scale s (M_s = cluster_scales[s] * (N // sr^2)), ``idx_s = DPC-kNN(x)``
    (no gradient; one clustering shared by all heads, by K and by V), ``x_s = weighted cluster
    means of x`` with ``w = exp(weight_layer(x))`` (:func:`~.cluster.pool_clusters` of the hard
    assignment, normalised), ``k_s, v_s = kv{s+1}(x_s)``, and
    ``out = proj(sum_s softmax(q k_s^T / sqrt(d)) v_s)``. ``sr_ratio == 1``: plain MHSA
    (``kv(x)``), ClusTR's stage 4.

    Args:
        dims (int): channels C.
        num_heads (int): h; C must be divisible by h.
        sr_ratio (int): cluster reduction ratio; 1 = plain self-attention.
        cluster_scales (Sequence[int]): multipliers of ``M0 = N // sr^2`` (reference: (1, 4)).
        knn_k (int): neighbours of the DPC-kNN density.
        qkv_bias (bool): biases of q and kv.
        attn_drop (float): dropout on the attention weights.
        proj_drop (float): dropout after ``proj``.
        memory_efficient (bool | None): see :func:`dpc_knn`.
        max_block_elems (int): see :func:`dpc_knn`.
    """

    def __init__(self, dims, num_heads, sr_ratio=1, cluster_scales=(1, 4), knn_k=5, qkv_bias=True,
                 attn_drop=0., proj_drop=0., memory_efficient=None,
                 max_block_elems=DEFAULT_MAX_BLOCK_ELEMS):
        super().__init__()
        if dims % num_heads != 0:
            raise ValueError(f'dims ({dims}) must be divisible by num_heads ({num_heads})')
        if not isinstance(sr_ratio, int) or sr_ratio < 1:
            raise ValueError(f'sr_ratio must be an int >= 1, got {sr_ratio!r}')
        self.dims, self.num_heads, self.sr_ratio = dims, num_heads, sr_ratio
        self.cluster_scales = tuple(int(s) for s in cluster_scales) if sr_ratio > 1 else ()
        if sr_ratio > 1 and (not self.cluster_scales or min(self.cluster_scales) < 1):
            raise ValueError(f'cluster_scales must be ints >= 1, got {cluster_scales!r}')
        self.knn_k, self.attn_drop = knn_k, attn_drop
        self.memory_efficient, self.max_block_elems = memory_efficient, max_block_elems
        self.layer_name = 'ClusteredKVAttention'  # set by the backbone for error messages
        # True only inside cluster.recording_assignments: then the per-scale (B, N) assignments of
        # the last forward are kept in last_assignment (the cluster contract)
        self.record_assignment, self.last_assignment = False, None
        self.q = nn.Linear(dims, dims, bias=qkv_bias)
        if sr_ratio > 1:
            self.weight_layer = nn.Linear(dims, 1)
            for s in range(len(self.cluster_scales)):
                self.add_module(f'kv{s + 1}', nn.Linear(dims, 2 * dims, bias=qkv_bias))
        else:
            self.kv = nn.Linear(dims, 2 * dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, t):
        B, L, _ = t.shape  # (B, L, 2C) -> 2 x (B, h, L, d)
        k, v = t.reshape(B, L, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x, hw_shape):
        """x: (B, N, C) tokens of an H x W grid -> (B, N, C)."""
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, -1).transpose(1, 2)  # (B, h, N, d)
        drop = self.attn_drop if self.training else 0.
        if self.sr_ratio == 1:
            k, v = self._heads(self.kv(x))
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, h, N, d)
        else:
            counts = cluster_counts(N, self.sr_ratio, self.cluster_scales,
                                    where=f'{self.layer_name} (token grid {hw_shape[0]}x{hw_shape[1]})')
            assigns = dpc_knn(x, counts, k=self.knn_k, memory_efficient=self.memory_efficient,
                              max_block_elems=self.max_block_elems)
            # fp32 weights: exp() of a half-precision logit overflows early under AMP
            w = self.weight_layer(x).float().exp()  # (B, N, 1)
            xf = x.float()
            out = 0
            for s, (m, assign) in enumerate(zip(counts, assigns)):
                # weighted cluster means (B, M_s, C)
                xs = pool_clusters(assign, xf, weight=w, num_clusters=m, normalize=True).to(x.dtype)
                k, v = self._heads(getattr(self, f'kv{s + 1}')(xs))  # (B, h, M_s, d)
                out = out + F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
            if self.record_assignment:
                self.last_assignment = assigns  # per scale (B, N)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))
        return out

    def extra_repr(self):
        return (f'dims={self.dims}, num_heads={self.num_heads}, sr_ratio={self.sr_ratio}, '
                f'cluster_scales={self.cluster_scales}, knn_k={self.knn_k}')
