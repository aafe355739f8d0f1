"""Density-peaks kNN clustering and clustered key/value attention, the primitives of ClusTR.

Xie et al., "ClusTR: Exploring Efficient Self-attention via Clustering for Vision Transformers",
arXiv 2208.13138. The N tokens of a layer are grouped by DPC-kNN (density peaks with a kNN density,
no iterations, no learned centroids) into M clusters; keys and values come from the (learned-weight)
cluster means, so attention costs O(N * M * C) with M = N / sr^2 (and 4 M for the second scale).

DPC-kNN itself is O(N^2 C) compute. :func:`dpc_knn` never needs the N x N distance matrix in one
piece: it walks over the upper triangle of square blocks (each pair of tokens once), so its peak
memory is set by ``max_block_elems`` (plus a table of group minima of at most 4 blocks, or 64 k
per token on the CPU: linear in N) instead of N^2. With one block covering all tokens it *is*
the naive N x N algorithm; both run the same code, so they give the same assignments.

Shapes: B batch, N tokens, C channels, M clusters, h heads, d = C / h.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cluster import pool_clusters

# a block of distances holds at most this many elements by default (64 MiB in fp32): B * N^2 <=
# this (N <= 4096 at B = 1; on the CPU 2^21, N <= 1448, block_budget) runs as one block, i.e. the
# naive N x N algorithm
DEFAULT_MAX_BLOCK_ELEMS = 2**24
# on the CPU a block holds at most this many elements times sqrt(N) (4 MiB in fp32 at N = 4096,
# 16 MiB at N = 66800): more rows amortise the GEMM's stream over the (N, C) tokens, fewer keep the
# block's element-wise passes in the caches. Measured best of 2^19..2^23 elements: 2^20 at N = 4096,
# 2^21 at N = 16384, 2^22 at N = 66800; a 64 MiB block (or the 1 GiB N x N matrix at 512^2) spends
# most of its time on memory traffic and first-touch page faults
_CPU_BLOCK_PER_SQRT_N = 2**14
# ... and at most this many (8 MiB in fp32): pass 1's (b x b) blocks are read twice after their
# GEMM (row and column group minima), at 16 MiB (b = 2016, N = 66800) those passes ran at half
# the speed per element of 8 MiB blocks (measured, 2 threads)
_CPU_BLOCK_MAX = 2**21
# pass 1's table of group minima has at least this many slots per neighbour (k) per token: the
# CPU top-k takes about 1.5 ns per element over rows of n >= 64 k (a partial sort) and 5-8 ns
# below (measured at k = 5, n = 27..600), so its rows are never shorter (unused slots: +inf)
_TOPK_MIN_ROW = 64
# pass 1's column groups are a multiple of this wide: the group minima of a block's rows (amin
# over the last dim of a (b, q, G) view) took 0.04-0.07 ns per element at G = 64, 96, 128, .., 256
# and 0.16-0.37 at 48, 80, 112, 144, 0.97 at 16 (measured, 2 threads, b ~ 1350)
_GROUP_STEP = 32
# rows (and columns) of every distance product: MKL (measured) switches to kernels with other
# rounding below 4 rows or 12 columns, and a pair's distance must not depend on its block
_MIN_GEMM_ROWS = 16


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


def _sq_dists(a, b, a2, b2, out=None):
    """Unclamped squared Euclidean distances ``(|a|^2 + |b|^2) - 2 a.b`` in fp32.

    a: (B, Na, C), b: (B, Nb, C), a2: (B, Na), b2: (B, Nb) their squared norms (computed once per
    :func:`dpc_knn` call, so a token's norm is the same number in every block) -> (B, Na, Nb),
    written into ``out`` if given (a contiguous (B, Na, Nb) tensor).
    One pass writes the norm sums ``|a|^2 + |b|^2`` (rounded once), then one ``baddbmm`` adds
    ``-2 a.b`` to them in the GEMM itself (``-2 ab`` is exact, so that is one more rounding: the
    same number as ``(|a|^2 + |b|^2) - 2 * bmm(a, b^T)``). Both roundings are symmetric in a and
    b, so a pair's distance is the same number whichever of its tokens is the row. One pass
    fewer over the block than ``bmm`` and two additions (measured on the CPU: the DPC-kNN in
    0.87x the time at N = 66800, the same at N = 16384; docs/en/clustr.md). The clamp at 0 (and
    the division by C) of ``cdist``'s formula are left to the callers, applied after their
    min / top-k: both are monotone (non-decreasing), so they commute with the selection
    (``f(min v) = min f(v)``; the k smallest of v are k smallest of f(v), and f keeps them in
    ascending order).
    """
    with torch.autocast(a.device.type, enabled=False):  # fp32 also under the caller's AMP
        if out is None or torch.jit.is_tracing():  # (the jit-based MAC counters take no out=)
            d = torch.baddbmm(a2[:, :, None] + b2[:, None, :], a, b.transpose(1, 2), alpha=-2)
            return d if out is None else out.copy_(d)
        torch.add(a2[:, :, None], b2[:, None, :], out=out)
        # out= rather than baddbmm_: FlopCounterMode (the benchmarks' FLOPs) counts no in-place op
        return torch.baddbmm(out, a, b.transpose(1, 2), alpha=-2, out=out)


def _row_blocks(batch, num_rows, num_cols, max_block_elems, min_rows=_MIN_GEMM_ROWS):
    """Row ranges ``[(s, e)]`` of (B, rows, num_cols) blocks of at most ``max_block_elems``
    elements, as few as that allows, of equal size to within one row (the longer first), each
    with at least ``min_rows`` rows where there are that many (more than the budget's rows only
    if that is below ``min_rows``), so that no block drops into the BLAS's small-matrix kernels,
    whose rounding differs."""
    batch, num_rows, num_cols = int(batch), int(num_rows), int(num_cols)  # ints also when traced
    rows = min(num_rows, max_block_elems // max(1, batch * num_cols))
    n = -(-num_rows // max(1, rows))  # blocks the budget needs
    n = max(1, min(n, num_rows // min_rows))  # ... unless they would be shorter than min_rows
    size, extra = divmod(num_rows, n)
    ends = [(i + 1) * size + min(i + 1, extra) for i in range(n)]
    return [(e - size - (i < extra), e) for i, e in enumerate(ends)]


def _square_tiling(num_tokens, batch, k, budget):
    """Pass 1's tiling: ``(S, b, G)``, the tokens padded to ``S b`` and cut into S blocks of b,
    each block's columns in ``b / G`` contiguous groups of G (a multiple of 32 near
    ``sqrt(N / k)``, so that the k best groups' members (k G per row) and the group minima
    (about N / G per row) cost about the same). ``B b^2 <= budget`` unless that is below one
    group (b >= G >= 32); ``budget >= B N^2`` (the naive path): one block. At least k groups."""
    G = _GROUP_STEP * max(1, round(math.sqrt(num_tokens / k) / _GROUP_STEP))
    if budget >= batch * num_tokens * num_tokens:
        S = 1
    else:
        per_block = max(1, math.isqrt(max(1, budget // max(1, batch))) // G)  # groups in a block
        S = -(-num_tokens // (per_block * G))
    q = max(-(-num_tokens // (S * G)), -(-k // S))  # groups per block: the fewest for S blocks
    return S, q * G, G


def _table_slots(batch, num_tokens, k, budget, device_type='cpu'):
    """Slots per token of pass 1's table of group minima: ``k`` (the best so far) plus every
    group's (``S q``: one top-k per token, at the end) where the table fits in 4 blocks'
    elements (``4 budget``), else as many as fit, at least one block's ``q`` (a top-k each time
    a token's slots are full). On the CPU, rows of fewer than ``_TOPK_MIN_ROW k`` slots are
    padded to that where it at most quadruples them (the top-k's partial-sort path; at N = 66800,
    k = 5: 320 slots instead of 124, 82 MiB instead of 33, and the DPC-kNN in 0.88x the time)."""
    S, b, G = _square_tiling(num_tokens, batch, k, budget)
    q = b // G
    W = max(k + q, min(k + S * q, 4 * budget // max(1, batch * S * b)))
    if device_type == 'cpu' and W < _TOPK_MIN_ROW * k <= 4 * W:
        W = _TOPK_MIN_ROW * k
    return W


def _finish(d, dims):
    """Raw squared distances -> D^2 = clamp(d, 0) / C (in place)."""
    return d.clamp_min_(0).div_(dims)


@torch.no_grad()
def _knn(x, sq, k, budget):
    """Pass 1 of :func:`dpc_knn`: the k nearest of every token (D^2 ascending, (B, N, k), and
    their columns), from one triangle of the distance matrix.

    1. *Sweep* over the upper triangle of (b x b) blocks (:func:`_square_tiling`; one block on
       the naive path): each block's distances come from one GEMM and serve both its rows and,
       transposed, its columns (a pair's distance is the same number whichever token is the row,
       see :func:`_sq_dists`), so the N^2 C products are computed once per pair instead of twice.
       Of every block, per row and per column, the minima of the G-wide column (row) groups are
       written into the token's row of a table of group minima; one top-k per token (or per
       full row, :func:`_table_slots`) keeps its k best groups (values and group ids).
    2. *Members*: the k smallest of a row lie in the k column groups with the smallest minima (a
       smaller value outside them would sit in a group whose minimum beats one of theirs; ties
       change no value). Their k G distances are computed again, now with the token as the row,
       by GEMMs of one group's G columns against the rows that picked it (at least 16, padded
       by repeating a row: the same kernels as the sweep's, so the same numbers), about
       2 k G / N of the sweep's products; an exact top-k over them gives the k nearest. With one
       block (S = 1, the naive path) they are taken from the block itself.
    """
    B, N, C = x.shape
    inf = float('inf')
    dev = x.device
    S, b, G = _square_tiling(N, B, k, budget)
    q, Np = b // G, S * b  # groups per block, padded tokens (pad: distance +inf)
    xp = torch.cat([x, x.new_zeros(B, Np - N, C)], 1) if Np > N else x
    sqp = torch.cat([sq, sq.new_full((B, Np - N), inf)], 1) if Np > N else sq
    # the group minima of every token, in a table of W slots per token: slots 0..k-1 hold the k
    # best so far (their groups in run_g, -1: none), each block of the triangle writes q more
    # (its groups: sid, per token block); a token block whose slots are full is compacted by one
    # top-k into slots 0..k-1 (:func:`_table_slots`)
    W = _table_slots(B, N, k, budget, dev.type)
    table = x.new_full((B, Np, W), inf)
    run_g = torch.full((B, Np, k), -1, dtype=torch.long, device=dev)
    sid = torch.full((S, W), -1, dtype=torch.long, device=dev)  # group of a slot >= k, per block
    fill = [k] * S  # slots in use, per token block

    def compact(J):
        r = slice(J * b, (J + 1) * b)
        v, p = table[:, r].topk(k, dim=-1, largest=False, sorted=False)  # all W slots (+inf: unused)
        run_g[:, r] = torch.where(p < k, run_g[:, r].gather(-1, p.clamp(max=k - 1)), sid[J][p])
        table[:, r, :k] = v
        table[:, r, k:fill[J]] = inf
        sid[J, k:] = -1  # (an unused slot's +inf must not name a group picked already)
        fill[J] = k

    def slots(J, g0):  # the next q slots of token block J, for groups g0 .. g0 + q - 1
        if fill[J] + q > W:
            compact(J)
        f = fill[J]
        sid[J, f:f + q] = torch.arange(g0, g0 + q, device=dev)
        fill[J] = f + q
        return table[:, J * b:(J + 1) * b, f:f + q]

    buf = x.new_empty(B, b, b)
    for I in range(S):
        i0 = I * b
        for J in range(I, S):
            j0 = J * b
            d = _sq_dists(xp[:, i0:i0 + b], xp[:, j0:j0 + b], sqp[:, i0:i0 + b], sqp[:, j0:j0 + b],
                          out=buf)
            # the rows of block I against the column groups of block J, written into the table
            torch.amin(d.view(B, b, q, G), -1, out=slots(I, J * q))
            if J > I:  # the columns of block J against the row groups of block I
                # (computed contiguous, then transposed into the table: a reduction into the
                # transposed slots directly ran 15x slower)
                slots(J, I * q).copy_(d.view(B, q, G, b).amin(2).transpose(1, 2))
    for J in range(S):
        compact(J)
    del table  # the k best groups are in run_g
    members = torch.arange(G, device=dev)

    def nearest(vals, gid):  # vals (B, r, k G): the members of groups gid (B, r, k) -> the k nearest
        v, pos = vals.topk(k, dim=-1, largest=False)  # ascending
        return _finish(v, C), (gid[..., None] * G + members).flatten(-2).gather(-1, pos)

    if S == 1:  # one block (the naive path): the members' distances are all in it
        gid = run_g[:, :N]
        v = buf[:, :N].view(B, N, q, G).gather(2, gid.clamp(min=0)[..., None].expand(B, N, k, G))
        return nearest(v.masked_fill_((gid < 0)[..., None], inf).flatten(-2), gid)
    del buf, d

    # the members of each token's k groups, again with the token as the row
    knn_d2 = x.new_empty(B, N, k)
    knn_col = torch.empty(B, N, k, dtype=torch.long, device=dev)
    x_rows, sq_rows = xp.reshape(B * Np, C), sqp.reshape(B * Np)
    x_grp, sq_grp = xp.reshape(B * S * q, G, C), sqp.reshape(B * S * q, G)
    rows_per_chunk = max(_MIN_GEMM_ROWS, budget // max(1, B * k * G))
    # buffers reused by every chunk and product (fresh ones cost a page fault per 4 KiB each time)
    vals_buf = x.new_empty(B * min(N, rows_per_chunk) * k, G)
    dist_buf = x.new_empty(0)
    for s in range(0, N, rows_per_chunk):
        e = min(N, s + rows_per_chunk)
        gid = run_g[:, s:e]  # (B, r, k)
        key = (gid + torch.arange(B, device=dev)[:, None, None] * (S * q)).flatten()
        row = torch.arange(s, e, device=dev)[None, :, None] + Np * torch.arange(B, device=dev)[:, None, None]
        row = row.expand_as(gid).flatten()
        pick = (gid >= 0).flatten().nonzero().squeeze(1)
        key = key[pick]
        order = key.argsort()
        s_key, s_row, s_pick = key[order], row[pick][order], pick[order]
        counts = torch.bincount(s_key, minlength=B * S * q)
        starts = counts.cumsum(0) - counts
        used = counts.nonzero().squeeze(1)
        size = counts[used].clamp(min=_MIN_GEMM_ROWS)
        size = 2**torch.ceil(torch.log2(size.double())).long()  # rows of its GEMM, a power of 2
        vals = vals_buf[:gid.numel()].fill_(inf)
        for p in size.unique().tolist():
            grp = used[size == p]
            per = max(1, budget // (p * max(G, C)))  # the distances and the gathered rows
            for g0 in range(0, grp.numel(), per):
                g = grp[g0:g0 + per]
                if dist_buf.numel() < g.numel() * p * G:
                    dist_buf = x.new_empty(g.numel() * p * G)
                n = counts[g, None]
                at = starts[g, None] + torch.minimum(torch.arange(p, device=dev)[None], n - 1)
                r = s_row[at].flatten()  # (groups p): the rows that picked a group, the last repeated
                dist = _sq_dists(x_rows.index_select(0, r).view(-1, p, C), x_grp.index_select(0, g),
                                 sq_rows.index_select(0, r).view(-1, p), sq_grp.index_select(0, g),
                                 out=dist_buf[:g.numel() * p * G].view(-1, p, G))
                ok = (torch.arange(p, device=dev)[None] < n).flatten()
                vals.index_copy_(0, s_pick[at.flatten()[ok]], dist.view(-1, G)[ok])
        knn_d2[:, s:e], knn_col[:, s:e] = nearest(vals.view(B, e - s, k * G), gid)
    return knn_d2, knn_col


@torch.no_grad()
def _rho_delta(x, sq, k, budget):
    """Passes 1 and 2 of :func:`dpc_knn`: (B, N) ``rho`` and ``delta^2`` (``D^2`` to the nearest
    denser token; +inf for the densest, see :func:`_centre_order`) of fp32 tokens x (B, N, C)
    with squared norms sq (B, N), in blocks of at most ``budget`` elements (pass 1: (B, b, b)
    blocks, see :func:`_square_tiling`; ``B * N * N`` or more: one block, the naive path)."""
    B, N, C = x.shape
    inf = float('inf')
    idx = torch.arange(N, device=x.device)
    batch = torch.arange(B, device=x.device)[:, None]
    knn_d2, knn_col = _knn(x, sq, k, budget)
    rho = torch.exp(-knn_d2.mean(-1))  # (B, N)

    # pass 2: distance to the nearest denser token. "Denser" is the strict total order of a
    # stable descending sort of rho (equal rho: lower index first), so j is denser than i iff
    # rank_j < rank_i: one comparison per pair
    by_rho = torch.sort(rho, dim=-1, descending=True, stable=True).indices  # (B, N)
    rank = torch.empty_like(by_rho).scatter_(1, by_rho, idx[None].expand(B, N))  # (B, N)
    denser = rank.gather(1, knn_col.flatten(1)).view(B, N, k) < rank[:, :, None]  # (B, N, k)
    delta2 = knn_d2.masked_fill_(~denser, inf).amin(-1)  # (B, N)
    # peaks (no denser token among the k nearest), by rank, padded with rank N to the most peaks
    # of a sample (and to 16 rows)
    is_peak = ~denser.any(-1)  # (B, N)
    num_peaks = int(is_peak.sum(-1).max())
    peak_rank = torch.where(is_peak.gather(1, by_rho), idx, N).sort(-1).values  # (B, N)
    peak_rank = peak_rank[:, :max(num_peaks, min(N, _MIN_GEMM_ROWS))]  # (B, P)
    valid = peak_rank < N
    peak_rank = torch.where(valid, peak_rank, 0)
    peak_tok = by_rho.gather(1, peak_rank)  # (B, P)
    x_by_rank, sq_by_rank = x[batch, by_rho], sq.gather(1, by_rho)  # (B, N, C), (B, N)
    x_peak, sq_peak = x[batch, peak_tok], sq.gather(1, peak_tok)  # (B, P, C), (B, P)
    # a peak of rank r compares with the r tokens before it; rows in rank order: the block of
    # rows s..e needs the first need[e - 1] columns, and masks only those from lowest[s] on
    need = peak_rank.amax(0).cummax(0).values.tolist()  # (P, )
    lowest = torch.where(valid, peak_rank, N).amin(0).tolist()  # (P, )
    out_tok = torch.where(valid, peak_tok, N)  # invalid rows write to a spare column
    delta2 = torch.cat([delta2, delta2.new_empty(B, 1)], 1)  # (B, N + 1)
    s, num_rows, min_cols = 0, len(need), min(N, _MIN_GEMM_ROWS)
    while s < num_rows:
        e = min(num_rows, s + _MIN_GEMM_ROWS)
        while e < num_rows and B * (e + 1 - s) * max(min_cols, need[e]) <= budget:
            e += 1
        if num_rows - e < _MIN_GEMM_ROWS:
            e = num_rows
        R, lo = max(min_cols, need[e - 1]), min(lowest[s], max(min_cols, need[e - 1]))
        raw = _sq_dists(x_peak[:, s:e], x_by_rank[:, :R], sq_peak[:, s:e], sq_by_rank[:, :R])
        raw[..., lo:].masked_fill_(idx[lo:R] >= peak_rank[:, s:e, None], inf)  # (B, rows, R)
        delta2.scatter_(1, out_tok[:, s:e], _finish(raw.amin(-1), C))
        s = e
    return rho, delta2[:, :N]  # +inf: the densest token (no token is denser)


def _max_d2(x, sq, budget):
    """The largest ``D^2`` of each sample (B, ), over all N^2 pairs, in (rows x N) blocks."""
    B, N, C = x.shape
    raw = [_sq_dists(x[:, s:e], x, sq[:, s:e], sq).amax((1, 2)) for s, e in _row_blocks(B, N, N, budget)]
    return _finish(torch.stack(raw, 0).amax(0), C)


def _centre_order(rho, delta2, max_d2):
    """The tokens by score ``rho * delta`` (B, N), descending, equal scores in index order, where
    the densest token (``delta2`` +inf, one per sample) has the sample's largest distance as its
    delta.

    That token's score is the largest of its sample (its rho is, and every delta is a distance,
    at most the largest one): the largest distance only breaks a tie of scores. So it is taken
    from ``max_d2(samples)`` (N^2 work again, :func:`_max_d2`) only in a sample where the other
    tokens' largest delta gives the densest token a score below or equal to another token's;
    elsewhere that delta takes its place, with the same order (the score is then already
    strictly the largest)."""
    top = torch.isinf(delta2)  # (B, N)
    rest = delta2.masked_fill(top, 0)
    best_rest = (rho * rest.sqrt()).masked_fill_(top, -float('inf')).amax(-1)  # (B, )
    stand_in = rest.amax(-1)  # (B, ) <= the sample's largest distance
    tie = ~((rho * top).amax(-1) * stand_in.sqrt() > best_rest)  # (rho >= 0: the densest's rho)
    if tie.any():
        stand_in = stand_in.clone()
        stand_in[tie] = max_d2(tie)
    delta2 = torch.where(top, stand_in[:, None], delta2)
    return torch.sort(rho * delta2.sqrt(), dim=-1, descending=True, stable=True).indices


def block_budget(batch, num_tokens, device_type='cpu', memory_efficient=None,
                 max_block_elems=DEFAULT_MAX_BLOCK_ELEMS):
    """Elements of one distance block of :func:`dpc_knn` on B x N tokens: ``max_block_elems``, on
    the CPU at most ``2**14 * sqrt(N)`` and ``2**21``; ``B * N^2`` (one block, the naive path)
    if ``memory_efficient`` is False, or None and the N x N distances fit in one block (on the
    CPU: in ``min(max_block_elems, 2**21)`` elements, also where a blockwise block would be
    smaller: one block took 0.74x, 0.78x, 0.84x the blockwise time at N = 784, 1024, 1444, the
    same at 2048 and 1.8x at 4096, measured on 2 threads)."""
    block = one_block = max_block_elems
    if device_type == 'cpu':
        block = min(block, int(_CPU_BLOCK_PER_SQRT_N * math.sqrt(num_tokens)), _CPU_BLOCK_MAX)
        one_block = min(max_block_elems, _CPU_BLOCK_MAX)
    if memory_efficient is None:
        memory_efficient = batch * num_tokens * num_tokens > max(block, one_block)
    return block if memory_efficient else batch * num_tokens * num_tokens


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

    How (the N x N distances are never held at once, and computed once, not twice):

    1. over the upper triangle of square blocks, the (b, b) distances (one GEMM per block, each
       pair of tokens once, read for the block's rows and, transposed, for its columns): every
       token's k column groups with the smallest minima; then those groups' members again, an
       exact top-k among them: the k nearest with their columns (:func:`_knn`);
    2. ``delta`` of a token with a denser token among its k nearest is the nearest of those (any
       denser token outside is at least as far as the k-th nearest). The others, the local density
       peaks (a few percent of the tokens), scan the tokens ranked denser than them: in rank
       order, a triangular (peaks x denser tokens) product;
    3. the distances to the M centres (O(N M C)) -> nearest centre.

    The densest token's delta, the sample's largest distance, is not computed unless a tie of
    scores needs it (:func:`_centre_order`): without a tie it only makes that token the first
    centre, which its score already is.

    Every number is the one the naive N x N algorithm computes (same formula, same rounding, the
    selection before the monotone clamp / scaling), provided the BLAS returns the same value for
    a product element whatever the shape of the product it is computed in (and the same for
    ``a.b`` and ``b.a``); every product here has at least 16 rows and columns where N allows,
    because MKL (measured) uses kernels with other rounding below 4 rows or 12 columns.

    Args:
        x (Tensor): (B, N, C) token features (not differentiated through).
        num_clusters (int | Sequence[int]): M, or several M sharing one density computation.
        k (int): neighbours of the kNN density.
        memory_efficient (bool | None): process the distances in blocks (pass 1: a triangle of
            square ones). ``None``: when ``B * N^2`` exceeds one block (:func:`block_budget`).
            ``False``: one block of all tokens (the naive N x N algorithm, the tests' reference).
        max_block_elems (int): elements of one distance block in the memory-efficient path
            (pass 1: (B, b, b) with b >= 32); on the CPU at most ``2**14 * sqrt(N)`` and ``2**21``
            (4 MiB in fp32 at N = 4096, 8 MiB from N = 16384 on), so that a block stays in the
            caches (:func:`block_budget`).

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
    budget = block_budget(B, N, x.device.type, memory_efficient, max_block_elems)
    sq = x.pow(2).sum(-1)  # (B, N) squared norms, once
    rho, delta2 = _rho_delta(x, sq, k, budget)  # (B, N) each
    order = _centre_order(rho, delta2, lambda b: _max_d2(x[b], sq[b], budget))  # (B, N)
    batch = torch.arange(B, device=x.device)[:, None]

    # pass 3: nearest centre. argmin returns the first, i.e. best-ranked, of equal distances; on
    # the raw distances that is the one of clamp(raw, 0) too, but in a row whose smallest raw
    # value is <= 0, where clamp(raw, 0) has its first 0 (rare outside the centres' own rows,
    # which are overwritten below): those rows take their first raw value <= 0
    results = []
    for m in counts:
        centres = order[:, :m]  # (B, M)
        x_c, sq_c = x[batch, centres], sq.gather(1, centres)  # (B, M, C), (B, M)
        not_centre = torch.ones(B, N, dtype=torch.bool, device=x.device)
        not_centre[batch, centres] = False
        assign = x.new_empty(B, N, dtype=torch.long)
        for s, e in _row_blocks(B, N, m, budget):
            raw = _sq_dists(x[:, s:e], x_c, sq[:, s:e], sq_c)
            a = raw.argmin(-1)  # (B, rows)
            low = (raw.gather(-1, a[..., None])[..., 0] <= 0) & not_centre[:, s:e]
            if low.any():
                bi, ri = low.nonzero(as_tuple=True)
                a[bi, ri] = (raw[bi, ri] <= 0).int().argmax(-1)  # the first 0 of clamp(raw, 0)
            assign[:, s:e] = a
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
