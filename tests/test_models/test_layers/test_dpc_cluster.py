"""DPC-kNN clustering and clustered-KV attention (ClusTR) against brute-force references."""
import math

import pytest
import torch
import torch.nn.functional as F

from clusterseg.models.layers import dpc_cluster
from clusterseg.models.layers import pool_clusters, recording_assignments
from clusterseg.models.layers.dpc_cluster import ClusteredKVAttention, cluster_counts, dpc_knn


def brute_dpc(x, num_clusters, k=5):
    """Spec clustr.md §1.2 for one sample, in float64 with Python loops.

    Deterministic ties as documented: j is denser than i if rho_j > rho_i or (equal and j < i);
    equal scores rank by index; a token equidistant to several centres joins the best-ranked one.
    """
    x = x.double()
    N, C = x.shape
    d2 = [[float(((x[i] - x[j])**2).sum()) / C for j in range(N)] for i in range(N)]  # D^2
    kk = min(k, N)
    rho = [math.exp(-sum(sorted(row)[:kk]) / kk) for row in d2]
    dmax = max(max(row) for row in d2)
    delta = []
    for i in range(N):
        denser = [j for j in range(N) if rho[j] > rho[i] or (rho[j] == rho[i] and j < i)]
        delta.append(min(d2[i][j] for j in denser) if denser else dmax)
    score = [rho[i] * math.sqrt(delta[i]) for i in range(N)]
    ranked = sorted(range(N), key=lambda i: (-score[i], i))
    out = []
    for m in ([num_clusters] if isinstance(num_clusters, int) else num_clusters):
        centres = ranked[:m]
        assign = []
        for i in range(N):
            best, best_c = None, None
            for c_rank, c in enumerate(centres):
                if best is None or d2[i][c] < best:
                    best, best_c = d2[i][c], c_rank
            assign.append(best_c)
        for c_rank, c in enumerate(centres):
            assign[c] = c_rank
        out.append(torch.tensor(assign))
    return out


def _brute_batch(x, counts, k=5):
    per = [brute_dpc(xb, counts, k) for xb in x]
    return [torch.stack([p[s] for p in per]) for s in range(len(counts))]


@pytest.mark.parametrize('B', [1, 3])
def test_dpc_knn_matches_brute_force_random(B):
    torch.manual_seed(0)
    x = torch.randn(B, 48, 16)
    got = dpc_knn(x, [5, 20])
    want = _brute_batch(x, [5, 20])
    for g, w in zip(got, want):
        assert g.dtype == torch.long and g.shape == (B, 48)
        assert torch.equal(g, w)
    assert torch.equal(dpc_knn(x, 5), want[0])  # an int M gives one tensor


@pytest.mark.parametrize('memory_efficient', [False, True])
def test_dpc_knn_ties_are_broken_by_index(memory_efficient):
    # 0/1 features in 4 dims: many duplicate tokens, equal densities, equal scores and tokens
    # equidistant to several centres; integer distances make every tie exact
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (2, 40, 4), generator=g).float()
    x[1] = x[1, :1]  # all tokens identical: one density, every delta 0 except the first's
    got = dpc_knn(x, [4, 16], memory_efficient=memory_efficient, max_block_elems=200)
    want = _brute_batch(x, [4, 16])
    for gt, w in zip(got, want):
        assert torch.equal(gt, w)
    # all-identical sample: token 0 is the densest (lowest index), centres are 0..M-1
    assert got[0][1].tolist() == [0, 1, 2, 3] + [0] * 36
    # deterministic: no random tie-breaking noise
    assert all(torch.equal(a, b) for a, b in zip(got, dpc_knn(x, [4, 16])))


def test_dpc_knn_small_n_and_centres_own_clusters():
    torch.manual_seed(2)
    x = torch.randn(1, 3, 8)  # N < k: k is capped at N
    got = dpc_knn(x, [1, 3])
    want = _brute_batch(x, [1, 3])
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert sorted(got[1][0].tolist()) == [0, 1, 2]  # M = N: every token is its own centre


def test_chunked_equals_naive_without_an_n_by_n_block(monkeypatch):
    torch.manual_seed(3)
    x = torch.randn(2, 700, 32)
    naive = dpc_knn(x, [10, 40], memory_efficient=False)
    sizes = []
    real = dpc_cluster._sq_dists

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(dpc_cluster, '_sq_dists', spy)
    budget = 2 * 700 * 64  # 64 rows of 700 per block
    chunked = dpc_knn(x, [10, 40], max_block_elems=budget)  # auto: 2 * 700^2 > budget
    assert all(torch.equal(a, b) for a, b in zip(naive, chunked))
    assert max(sizes) <= budget < 2 * 700 * 700
    # the N x N distances are computed once: pass 1 (N^2), the peaks' scan (a few % of N^2 on
    # random tokens; the former second pass was another N^2) and the centres (N * (10 + 40))
    assert sum(sizes) < 2 * 700 * (700 * 1.25 + 50), sum(sizes) / (2 * 700 * 700)
    sizes.clear()
    dpc_knn(x, [10, 40], memory_efficient=False)
    assert max(sizes) >= 2 * 700 * 700  # the naive path really is N x N (and pad columns)


@pytest.mark.parametrize('memory_efficient', [False, True])
def test_flop_counter_sees_every_distance_block(memory_efficient):
    """The benchmarks' FLOPs (FlopCounterMode) include pass 1's distance products, also when they
    are written into a reused block buffer; blockwise, pass 1 computes one triangle of them."""
    from clusterseg.utils.benchmark import count_flops
    torch.manual_seed(4)
    B, N, C, k = 1, 700, 32, 5
    x = torch.randn(B, N, C)
    budget = B * 64 * N
    flops = count_flops(lambda: dpc_knn(x, [10, 40], memory_efficient=memory_efficient,
                                        max_block_elems=budget))
    S, b, G = dpc_cluster._square_tiling(N, B, k, budget if memory_efficient else B * N * N)
    sweep = 2 * B * C * b * b * S * (S + 1) // 2  # the upper triangle of S x S (b x b) blocks
    # each token's k groups again, at least once (one block: they are read from it instead)
    members = 2 * B * N * k * G * C if S > 1 else 0
    full, centres = 2 * B * N * N * C, 2 * B * N * 50 * C
    assert sweep + members + centres <= flops < sweep + 2 * members + centres + 0.1 * full, flops / full
    if memory_efficient:
        # each pair once: 10 of the 16 blocks of the padded tokens
        assert S == 4 and sweep < 0.65 * full * (S * b / N)**2
    else:
        assert S == 1 and b * b >= N * N


def naive_sq_dists(a, b):
    """``(|a|^2 + |b|^2) - 2 a.b`` in fp32 with plain ops, the matrix-product formula of
    ``torch.cdist`` (``_euclidean_dist``: the norms plus -2 a.b) rounded as ``dpc_knn`` documents:
    the norm sums once, then the exact -2 a.b added (one more rounding), so that the distance of
    a pair does not depend on which token is the row."""
    ab = torch.bmm(a, b.transpose(1, 2))
    return (a.pow(2).sum(-1)[:, :, None] + b.pow(2).sum(-1)[:, None, :]) - 2 * ab


def naive_rho_delta(x, k=5):
    """rho and delta^2 straight from the formula, in fp32, with one (B, N, N) distance matrix
    (:func:`naive_sq_dists`): ``D^2 = clamp((|x|^2 + |x'|^2) - 2 x.x', 0) / C``; the densest
    token's delta^2 is the sample's largest D^2."""
    B, N, C = x.shape
    k = min(k, N)
    d2 = naive_sq_dists(x, x).clamp_min_(0).div_(C)  # (B, N, N)
    assert torch.equal(d2, d2.transpose(1, 2))  # the same number for (i, j) and (j, i)
    rho = torch.exp(-d2.topk(k, dim=-1, largest=False).values.mean(-1))
    denser = (rho[:, None, :] > rho[:, :, None]) | (
        (rho[:, None, :] == rho[:, :, None]) & (torch.arange(N)[None, None] < torch.arange(N)[None, :, None]))
    delta2 = d2.masked_fill(~denser, float('inf')).amin(-1)
    delta2 = torch.where(torch.isinf(delta2), d2.flatten(1).amax(-1)[:, None], delta2)
    return rho, delta2


def naive_assign(x, rho, delta2, counts):
    B, N, _ = x.shape
    order = torch.sort(rho * delta2.sqrt(), dim=-1, descending=True, stable=True).indices
    out = []
    for m in counts:
        centres = order[:, :m]
        xc = x[torch.arange(B)[:, None], centres]  # (B, M, C)
        a = naive_sq_dists(x, xc).clamp_min_(0).argmin(-1)  # (B, N)
        a[torch.arange(B)[:, None], centres] = torch.arange(m)
        out.append(a)
    return out


def _tokens(kind, B, N, C, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == 'gauss':
        return torch.randn(B, N, C, generator=g)
    if kind == 'grid':  # small integers: exact distances, many equal distances and densities
        return torch.randint(0, 3, (B, N, C), generator=g).float()
    x = torch.randn(B, N, C, generator=g)  # 'dups': duplicated tokens and planted equal rows
    x[:, 1::3] = x[:, 0:-1:3][:, :x[:, 1::3].shape[1]]
    x[:, -7:] = x[:, :1]
    return x


@pytest.mark.parametrize('kind,B,N,C', [('gauss', 1, 1000, 64), ('gauss', 3, 333, 32),
                                        ('grid', 2, 600, 8), ('dups', 2, 517, 16),
                                        ('gauss', 2, 15, 8), ('grid', 1, 4, 3), ('gauss', 1, 2000, 16),
                                        ('gauss', 1, 100, 8)])
def test_every_block_size_gives_the_naive_numbers(kind, B, N, C, monkeypatch):
    """rho, delta (bit for bit) and the assignments of the blockwise passes equal the naive
    formula's for any block size: budgets of 1 (blocks of one 32-column group), 8 and 37 rows of N,
    100 rows, a third of N squared, just below N x N (two blocks), one block; N not a multiple of
    the block or group size (the last block padded). Pass 1 reads each off-diagonal block for
    its rows and, transposed, for its columns, and recomputes the k best groups' members; its
    table of group minima is compacted after every block, after several, or only at the end."""
    x = _tokens(kind, B, N, C, seed=N + C)
    rho, delta2 = naive_rho_delta(x)
    # as _rho_delta returns it: +inf for the densest token (the first of rho, descending, stable)
    densest = torch.sort(rho, dim=-1, descending=True, stable=True).indices[:, :1]
    open_delta2 = delta2.scatter(1, densest, float('inf'))
    counts = [max(1, N // 64), min(N, 4 * max(1, N // 64))]
    want = naive_assign(x, rho, delta2, counts)
    sq = x.pow(2).sum(-1)
    k = min(5, N)  # k capped at N as in dpc_knn
    blocks, compactions = set(), set()
    budgets = (1, B * 8 * N, B * 37 * N, B * 100 * N + 5, B * (N // 3)**2, B * N * N - 1, B * N * N, 2**31)
    # the table's rows as short as the budget allows (1): compacted mid-sweep at these N too
    for min_row, budget in [(m, b) for m in (dpc_cluster._TOPK_MIN_ROW, 1) for b in budgets]:
        monkeypatch.setattr(dpc_cluster, '_TOPK_MIN_ROW', min_row)
        S, b, G = dpc_cluster._square_tiling(N, B, k, budget)
        blocks.add(S)
        # writes of q group minima between two top-k's of a token's table slots (S: only the last)
        compactions.add((min(S, (dpc_cluster._table_slots(B, N, k, budget, 'cpu') - k) // (b // G)), S))
        r, d = dpc_cluster._rho_delta(x, sq, k, budget)
        assert torch.equal(r, rho) and torch.equal(d, open_delta2), (min_row, budget)
    monkeypatch.undo()
    assert 1 in blocks and (N < 64 or max(blocks) >= 3), blocks  # one block and a triangle
    # the table: one block (1, 1); a triangle compacted after every write (c == 1 < S), after
    # several (1 < c < S), or only at the end (c == S)
    assert N < 1000 or ((1, 1) in compactions and any(1 < c < S for c, S in compactions)
                       and any(c == 1 < S for c, S in compactions)), compactions
    for kw in (dict(memory_efficient=False), dict(memory_efficient=True, max_block_elems=B * 37 * N)):
        assert all(torch.equal(a, b) for a, b in zip(dpc_knn(x, counts, **kw), want)), kw


def _spy(monkeypatch, name):
    calls, real = [], getattr(dpc_cluster, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(dpc_cluster, name, spy)
    return calls


def test_largest_distance_only_for_a_tie(monkeypatch):
    """The densest token's delta (the sample's largest distance, N^2 work) is computed only where
    a tie of scores needs it. Two mirrored clusters (x and -x: the same distances bit for bit):
    the densest token's mirror has its rho and, as the largest of the other deltas, their
    distance, so without the largest distance their scores would tie; sample 1 has no tie.
    Here the stable sort breaks the tie as the largest distance would (the mirror has the higher
    index), so this test pins when the N^2 pass runs (the calls); what it decides is pinned by
    test_centre_order_breaks_a_tie_with_the_largest_distance."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(60, 8, generator=g) * 0.3 + 4.
    x = torch.stack([torch.cat([a, -a]), torch.randn(120, 8, generator=g)])
    calls = _spy(monkeypatch, '_max_d2')
    counts = [3, 12]
    for kw in (dict(memory_efficient=False), dict(memory_efficient=True, max_block_elems=2 * 16 * 120)):
        calls.clear()
        got = dpc_knn(x, counts, **kw)
        rho, delta2 = naive_rho_delta(x)
        assert all(torch.equal(u, v) for u, v in zip(got, naive_assign(x, rho, delta2, counts))), kw
        assert len(calls) == 1 and calls[0][0].shape == (1, 120, 8)  # sample 0 only
        assert torch.equal(calls[0][0][0], x[0])
    calls.clear()
    assert all(torch.equal(u, v) for u, v in zip(dpc_knn(x[1:], counts), _brute_batch(x[1:], counts)))
    assert calls == []


def test_centre_order_breaks_a_tie_with_the_largest_distance():
    """Token 0's score rounds to the densest token's (token 2) if that one's delta were the other
    tokens' largest: only the sample's largest distance (asked for) puts token 2 first, as the
    naive formula does; without a tie the callable is not called."""
    hi = torch.tensor(0.75)
    lo = torch.nextafter(hi, torch.tensor(0.))
    d = torch.linspace(1, 2, 10001)
    d = d[(lo * d.sqrt()) == (hi * d.sqrt())][0]  # lo * sqrt(d) rounds to hi * sqrt(d)
    rho = torch.stack([lo, torch.tensor(0.1), hi])[None]
    delta2 = torch.tensor([[d, 0.5, float('inf')]])
    asked = []

    def max_d2(which):
        asked.append(which.tolist())
        return torch.full((int(which.sum()), ), 3.)

    order = dpc_cluster._centre_order(rho, delta2, max_d2)
    assert order.tolist() == [[2, 0, 1]] and asked == [[True]]
    stand_in = torch.where(torch.isinf(delta2), d, delta2)  # what a stand-in would give instead
    assert torch.sort(rho * stand_in.sqrt(), dim=-1, descending=True, stable=True).indices.tolist() == [[0, 2, 1]]
    asked.clear()
    rho[0, 0] = 0.5  # no tie
    assert dpc_cluster._centre_order(rho, delta2, max_d2).tolist() == [[2, 0, 1]] and asked == []


def test_centres_equidistant_to_zero_join_the_first():
    """Pass 3 takes argmin of the raw distances; where cancellation makes several of a token's
    raw distances <= 0 (near-identical tokens far from the origin), clamp(raw, 0) ties them at 0
    and the token joins the first (best-ranked) of those centres, as the naive formula does."""
    g = torch.Generator().manual_seed(5)
    x = 1000. + 1e-3 * torch.randn(2, 64, 8, generator=g)
    counts = [8, 32]
    rho, delta2 = naive_rho_delta(x)
    want = naive_assign(x, rho, delta2, counts)
    assert all(torch.equal(u, v) for u, v in zip(dpc_knn(x, counts), want))
    # the case is there: a plain argmin of the raw distances would differ
    order = torch.sort(rho * delta2.sqrt(), dim=-1, descending=True, stable=True).indices
    batch, centres = torch.arange(2)[:, None], order[:, :32]
    plain = naive_sq_dists(x, x[batch, centres]).argmin(-1)
    plain[batch, centres] = torch.arange(32)
    assert not torch.equal(plain, want[1])


def test_knn_density_of_planted_ties():
    # token 0 has 3 copies at distance 0 and then 4 tokens at exactly the same distance 1 (in
    # different column groups): its 5 nearest are 0, 0, 0, 0, 1 whichever tied token is picked
    x = torch.full((1, 400, 4), 100.) + torch.arange(400.)[None, :, None] * 10
    x[0, [0, 150, 299]] = 0.
    x[0, 397] = 0.
    for i, j in enumerate([37, 101, 256, 399]):
        x[0, j] = 0.
        x[0, j, i] = 2.  # |x_j|^2 = 4, D^2 = 4 / 4 = 1
    rho, _ = dpc_cluster._rho_delta(x, x.pow(2).sum(-1), 5, 1)
    assert rho[0, 0] == torch.exp(torch.tensor(-1 / 5))
    assert torch.equal(rho, naive_rho_delta(x)[0])


def test_fp32_under_autocast():
    torch.manual_seed(7)
    x = torch.randn(2, 300, 16)
    want = dpc_knn(x, [4, 16], max_block_elems=2 * 300 * 40)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = dpc_knn(x, [4, 16], max_block_elems=2 * 300 * 40)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_row_blocks_never_below_16_rows():
    blocks = dpc_cluster._row_blocks(1, 1000, 1000, 37 * 1000)  # 37 rows -> 28 blocks of 35-36
    assert len(blocks) == 28 and blocks[0] == (0, 36) and blocks[-1] == (965, 1000)
    assert all(b[1] == c[0] for b, c in zip(blocks, blocks[1:])) and blocks[0][0] == 0
    assert all(35 <= e - s <= 37 for s, e in blocks)  # never over the budget's 37 rows
    # a budget below 16 rows: blocks of 16 (and 17), never fewer rows
    assert dpc_cluster._row_blocks(2, 100, 50, 1) == [(0, 17), (17, 34), (34, 51), (51, 68), (68, 84),
                                                      (84, 100)]
    assert dpc_cluster._row_blocks(1, 10, 10, 1) == [(0, 10)]  # fewer rows than the floor
    # a budget of 30 rows: 4 blocks of 25, not 30 + 30 + 30 + 10
    assert dpc_cluster._row_blocks(1, 100, 10, 300) == [(0, 25), (25, 50), (50, 75), (75, 100)]


def test_dpc_knn_bad_m():
    x = torch.randn(1, 10, 4)
    for m in (0, 11):
        with pytest.raises(ValueError, match=f'M={m} clusters for N=10'):
            dpc_knn(x, m)


def test_weighted_cluster_means_match_loop():
    """ClusTR's cluster means: pool_clusters of the hard assignment, weighted and normalised."""
    torch.manual_seed(4)
    x, w = torch.randn(3, 20, 6), torch.rand(3, 20, 1) + 0.1
    assign = torch.randint(0, 5, (3, 20))
    assign[:, :4] = torch.arange(4)  # cluster 4 may be empty in some samples: its mean is 0
    got = pool_clusters(assign, x, weight=w, num_clusters=5, normalize=True)
    for b in range(3):
        for m in range(5):
            sel = assign[b] == m
            want = (w[b, sel] * x[b, sel]).sum(0) / (w[b, sel].sum() + 1e-6)
            torch.testing.assert_close(got[b, m], want)


def naive_clustered_attention(attn, x, hw_shape):
    """Per sample, per scale, per cluster, per head with explicit loops (spec §1.2)."""
    B, N, C = x.shape
    h = attn.num_heads
    d = C // h
    out = torch.zeros(B, N, C)
    counts = [s * (N // attn.sr_ratio**2) for s in attn.cluster_scales]
    for b in range(B):
        q = attn.q(x[b])  # (N, C)
        assigns = brute_dpc(x[b].detach(), counts, k=attn.knn_k)
        w = attn.weight_layer(x[b]).exp()  # (N, 1)
        acc = torch.zeros(N, C)
        for s, (m, a) in enumerate(zip(counts, assigns)):
            xs = torch.stack([(w[a == c] * x[b][a == c]).sum(0) / (w[a == c].sum() + 1e-6)
                              for c in range(m)])  # (M, C)
            kv = getattr(attn, f'kv{s + 1}')(xs)
            k, v = kv[:, :C], kv[:, C:]
            for hh in range(h):
                sl = slice(hh * d, (hh + 1) * d)
                p = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d), -1)
                acc[:, sl] = acc[:, sl] + p @ v[:, sl]
        out[b] = attn.proj(acc)
    return out


@pytest.mark.parametrize('B', [1, 2])
def test_clustered_attention_matches_naive_loops(B):
    torch.manual_seed(5)
    attn = ClusteredKVAttention(32, 2, sr_ratio=2).eval()
    x = torch.randn(B, 64, 32, requires_grad=True)
    assert attn(x, (8, 8)) is not None and attn.last_assignment is None  # nothing kept by default
    with recording_assignments([attn]):
        out = attn(x, (8, 8))
        assigns = attn.last_assignment
    assert [a.shape for a in assigns] == [(B, 64), (B, 64)] and int(assigns[1].max()) < 64
    assert int(assigns[0].max()) == 64 // 4 - 1  # M0 = N // sr^2 = 16
    for b in range(B):  # the kept assignment is the one the attention used
        want = brute_dpc(x[b].detach(), [16, 64], k=attn.knn_k)
        assert all(torch.equal(a[b], t) for a, t in zip(assigns, want))
    assert attn.last_assignment is None and not attn.record_assignment
    torch.testing.assert_close(out, naive_clustered_attention(attn, x, (8, 8)), rtol=1e-4, atol=1e-5)
    out.sum().backward()
    # gradients reach the tokens and the token-weight layer through the cluster means
    assert x.grad.abs().sum() > 0 and attn.weight_layer.weight.grad.abs().sum() > 0
    assert attn.kv1.weight.grad.abs().sum() > 0 and attn.kv2.weight.grad.abs().sum() > 0


def test_plain_mhsa_when_sr_is_one():
    torch.manual_seed(6)
    attn = ClusteredKVAttention(32, 4, sr_ratio=1).eval()
    assert not hasattr(attn, 'weight_layer') and not hasattr(attn, 'kv1')
    x = torch.randn(1, 9, 32)
    q = attn.q(x).reshape(1, 9, 4, 8).transpose(1, 2)
    k, v = attn.kv(x).reshape(1, 9, 2, 4, 8).permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-1, -2) / math.sqrt(8)).softmax(-1)
    want = attn.proj((a @ v).transpose(1, 2).reshape(1, 9, 32))
    torch.testing.assert_close(attn(x, (3, 3)), want)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), a @ v)


def test_bad_cluster_counts_name_n_and_m():
    attn = ClusteredKVAttention(16, 1, sr_ratio=8)
    attn.layer_name = 'stageX.attn'
    with pytest.raises(ValueError, match=r'stageX\.attn \(token grid 4x8\): N=32 tokens give M=0'):
        attn(torch.randn(1, 32, 16), (4, 8))
    with pytest.raises(ValueError, match=r'N=64 tokens give M=1600'):
        cluster_counts(64, 2, (1, 100))
    assert cluster_counts(3136, 8) == [49, 196]
    with pytest.raises(ValueError, match='cluster_scales'):
        ClusteredKVAttention(16, 1, sr_ratio=2, cluster_scales=(0, ))
