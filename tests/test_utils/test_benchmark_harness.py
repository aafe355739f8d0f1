"""clusterseg.utils.benchmark: best-of timing, FLOPs and the GEMM fraction, the CSV schema, the
peak-memory definition and the isolated worker (its errors name the model)."""
import math
import os
import time

import pytest

from clusterseg.utils import benchmark as bm


# ---------------------------------------------------------------- workers (run in a fresh process)
def allocating_worker(mib):
    """Peak memory of allocating (and touching) ``mib`` MiB, and the worker's thread count."""
    import torch
    with bm.PeakMemory('cpu') as mem:
        held = torch.ones(mib * 2**20 // 4)  # float32, written, so resident
        del held
    return dict(peak_mem_mib=mem.mib, threads=torch.get_num_threads())


def failing_worker(size):
    raise ValueError(f'size {size} is not a multiple of 32')


def crashing_worker():
    os._exit(3)


def sleeping_worker():
    time.sleep(60)


# ---------------------------------------------------------------- timing
class FakeClock:
    def __init__(self, readings):
        self.readings = iter(readings)

    def __call__(self):
        return next(self.readings)


def test_best_of_skips_warmup_and_keeps_the_minimum():
    calls = []
    # three timed calls: 5, 2 and 3 seconds (the warm-up call reads no clock)
    best, times = bm.best_of(lambda: calls.append(1), repeat=3, warmup=2,
                             clock=FakeClock([0, 5, 10, 12, 20, 23]))
    assert len(calls) == 5 and times == [5, 2, 3] and best == 2
    with pytest.raises(ValueError, match='repeat must be >= 1'):
        bm.best_of(lambda: None, repeat=0)


def test_best_of_interleaved_is_round_robin():
    order = []
    fns = {n: (lambda n=n: order.append(n)) for n in 'ab'}
    # rounds: warm-up (a, b), then a 4 s, b 1 s, then a 2 s, b 3 s
    best = bm.best_of_interleaved(fns, repeat=2, warmup=1,
                                  clock=FakeClock([0, 1, 2, 3, 10, 14, 20, 21, 30, 32, 40, 43]))
    assert order == ['a', 'b'] * 3
    assert best == {'a': 2, 'b': 1}


# ---------------------------------------------------------------- FLOPs and the GEMM fraction
def test_flops_and_gemm_fraction_of_a_linear_layer():
    import torch
    lin, x = torch.nn.Linear(64, 32, bias=False), torch.randn(8, 64)
    flops = bm.count_flops(lambda: lin(x))
    assert flops == 2 * 8 * 64 * 32  # a multiply-add is 2 FLOPs
    m = bm.measure(lambda: lin(x), repeat=2, warmup=1)
    assert m['flops'] == flops and len(m['times']) == 2 and m['time_s'] == min(m['times'])
    train = bm.measure(lambda: lin(x).sum().backward(), repeat=1, warmup=0,
                       flop_fn=lambda: lin(x), flop_scale=bm.TRAIN_FLOP_FACTOR)
    assert train['flops'] == 3 * flops
    row = bm.make_row('linear', 'infer', 64, 8, time_s=0.5, flops=4e9, params=2e6,
                      gemm_gflops_per_s=16.)
    assert row['gflop'] == 4 and row['gflops_per_s'] == 8 and row['gemm_fraction'] == 0.5
    assert row['params_M'] == 2 and (row['height'], row['width']) == (64, 64)
    assert math.isnan(bm.make_row('x', 'infer', (32, 48), 1)['gemm_fraction'])
    with pytest.raises(ValueError, match="mode must be one of"):
        bm.make_row('x', 'eval', 32, 1)


def test_flops_of_a_module_called_with_a_parameter_under_no_grad():
    """kMaX calls its decoder layers with a view of its learned queries made under no_grad
    (which breaks FlopCounterMode's per-module tracking): still counted."""
    import torch
    inner, centres = torch.nn.Linear(8, 8, bias=False), torch.nn.Embedding(4, 8)
    with torch.no_grad():
        queries = centres.weight.unsqueeze(0).expand(2, -1, -1)  # (B, K, D)
        assert bm.count_flops(lambda: inner(queries)) == 2 * 2 * 4 * 8 * 8


def test_flops_of_the_cpu_fused_attention():
    """FlopCounterMode alone counts 0 for the CPU SDPA kernel and its backward."""
    import torch
    import torch.nn.functional as F
    B, h, N, M, d = 2, 3, 40, 7, 16
    q = torch.randn(B, h, N, d, requires_grad=True)
    k, v = torch.randn(B, h, M, d, requires_grad=True), torch.randn(B, h, M, d, requires_grad=True)
    fwd = 4 * B * h * N * M * d  # QK^T and PV, 2 FLOPs a multiply-add
    assert bm.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == fwd
    # backward: dV, dP, dQ, dK and the recomputed QK^T, five products of the same size
    assert bm.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) \
        == fwd + 5 * fwd // 2


@pytest.mark.parametrize('groups,transposed', [(1, False), (4, False), (8, False), (1, True),
                                               (4, True)])
def test_flops_of_a_grouped_conv_backward(groups, transposed):
    """Each gradient of a convolution costs its forward's products, depth-wise included (torch's
    formula forms the weight gradient as a dense conv and counts C times too many)."""
    import torch
    import torch.nn.functional as F
    x = torch.randn(2, 8, 10, 12, requires_grad=True)
    if transposed:  # (C_in, C_out / groups, k, k), stride 2: the input side has 10 x 12 positions
        w = torch.randn(8, 16 // groups, 3, 3, requires_grad=True)
        fwd = 2 * 2 * 10 * 12 * 8 * (16 // groups) * 9

        def conv():
            return F.conv_transpose2d(x, w, stride=2, groups=groups)
    else:  # 16 outputs of 10 x 12, each 8 / groups x 3 x 3 products
        w = torch.randn(16, 8 // groups, 3, 3, requires_grad=True)
        fwd = 2 * 2 * 16 * 10 * 12 * (8 // groups) * 9

        def conv():
            return F.conv2d(x, w, padding=1, groups=groups)
    assert bm.count_flops(conv) == fwd
    assert bm.count_flops(lambda: conv().sum().backward()) == 3 * fwd
    x.requires_grad_(False)  # the weight gradient only
    assert bm.count_flops(lambda: conv().sum().backward()) == 2 * fwd


def test_op_breakdown_of_a_linear_gelu_conv_step():
    """Every aten op of forward and backward lands in its class, with the FLOPs a hand count gives;
    the classes' times add up to at most the step's time under the timer."""
    import torch
    import torch.nn.functional as F
    lin = torch.nn.Linear(16, 32)
    w = torch.randn(32, 1, 3, 3, requires_grad=True)
    x = torch.randn(64, 16)

    def step():
        h = F.gelu(lin(x))  # (64, 32): addmm; gelu
        y = F.conv2d(h.t().reshape(1, 32, 8, 8), w, padding=1, groups=32)  # depth-wise
        y.square().mean().backward()
        lin.zero_grad(set_to_none=True)
        w.grad = None

    res = bm.op_breakdown(step, repeat=2, warmup=1)
    by = {c['label']: c for c in res['classes']}
    assert list(by) == [label for label, _ in bm.OP_CLASSES]
    gemm, conv = by['matrix products'], by['convolutions']
    # the addmm forward and, x needing no gradient, the weight gradient's mm only
    assert gemm['flops'] == 2 * 2 * 64 * 16 * 32
    assert 'aten.addmm.default' in gemm['ops'] and 'aten.mm.default' in gemm['ops']
    # forward, and both gradients (h comes from lin, so it needs one): 32 maps of 64 positions,
    # 9 products each
    assert conv['flops'] == 3 * 2 * 32 * 64 * 9
    elementwise = by['element-wise, norms, softmax, copies']
    assert elementwise['flops'] == 0
    assert 'aten.gelu.default' in elementwise['ops'] and 'aten.gelu_backward.default' in elementwise['ops']
    assert by['fused attention']['seconds'] == 0 and not by['fused attention']['ops']
    total = sum(c['seconds'] for c in res['classes'])
    assert 0 < total <= res['timed_step_s'] and res['step_s'] > 0
    assert math.isclose(res['outside_ops_s'], res['timed_step_s'] - total, abs_tol=1e-9)
    lines = bm.format_breakdown(res, 100., headline_flops=1e9)
    assert lines[1].startswith('matrix products') and 'addmm' in lines[1]
    ceilings = lines[-1]
    assert ceilings.startswith('GEMM fraction now') and 'ceiling' in ceilings


def test_classify_op():
    assert bm.classify_op('aten.mm.default') == 'matrix products'
    assert bm.classify_op('aten.bmm.default') == 'matrix products'
    assert bm.classify_op('aten.convolution_backward.default') == 'convolutions'
    assert bm.classify_op('aten._scaled_dot_product_flash_attention_for_cpu_backward.default') \
        == 'fused attention'
    assert bm.classify_op('aten.mm_like_but_not.default') != 'matrix products'
    assert bm.classify_op('aten.gelu.default') == 'element-wise, norms, softmax, copies'


def test_gemm_gflops_is_positive():
    assert bm.gemm_gflops(n=128, repeat=1) > 0


# ---------------------------------------------------------------- CSV schema
def test_csv_has_the_one_schema(tmp_path):
    rows = [bm.make_row('a', 'train', 64, 2, time_s=0.25, flops=1e9, params=1e6, peak_mem_mib=12.5,
                        gemm_gflops_per_s=10., threads=2, note='n'),
            bm.make_row('b', 'infer', (32, 48), 1, error='skipped: too slow')]
    path = bm.write_csv(rows, tmp_path / 'sub' / 'b.csv')
    assert open(path).readline().strip().split(',') == list(bm.CSV_FIELDS)
    back = bm.read_csv(path)
    assert back[0]['model'] == 'a' and back[0]['gflops_per_s'] == 4. and back[0]['gemm_fraction'] == 0.4
    assert back[0]['peak_mem_mib'] == 12.5 and back[0]['threads'] == 2
    assert (back[1]['height'], back[1]['width']) == (32, 48) and math.isnan(back[1]['time_s'])
    assert back[1]['error'] == 'skipped: too slow'
    (tmp_path / 'other.csv').write_text('model,time_ms\na,1\n')
    with pytest.raises(ValueError, match='not the benchmark schema'):
        bm.read_csv(tmp_path / 'other.csv')


def test_format_table_and_row():
    row = bm.make_row('m', 'infer', 64, 1, time_s=0.5, flops=1e9, gemm_gflops_per_s=4.)
    assert '| m | 64 | 1 | infer |' in bm.format_table([row]) and '0.50' in bm.format_table([row])
    assert 'GEMM x0.50' in bm.format_row(row)


# ---------------------------------------------------------------- peak memory
def test_peak_memory_grows_with_an_allocation_in_the_worker():
    big = bm.run_isolated(allocating_worker, dict(mib=200), name='alloc', threads=1)
    small = bm.run_isolated(allocating_worker, dict(mib=1), name='alloc', threads=1)
    assert 190 < big['peak_mem_mib'] < 260, big
    assert small['peak_mem_mib'] < 30, small
    assert big['threads'] == 1


def test_peak_memory_in_process_is_the_growth_over_the_baseline():
    import numpy as np
    held = np.ones(100 * 2**20 // 8)  # held before: part of the baseline, not of the peak
    with bm.PeakMemory('cpu') as mem:
        tmp = np.ones(150 * 2**20 // 8)
        del tmp
    del held
    assert 140 < mem.mib < 200, mem.mib
    rss, _ = bm.process_memory_mib()
    assert rss > 0 and bm.process_memory_mib(2**22 + 12345) == (None, None)


def test_measure_counts_the_timed_calls_not_one_time_costs():
    import numpy as np
    cache = []

    def step():  # a 100 MiB cache filled by the first call, and 60 MiB transient every call
        if not cache:
            cache.append(np.ones(100 * 2**20 // 8))
        np.ones(60 * 2**20 // 8).sum()

    m = bm.measure(step, repeat=2, warmup=1, flop_fn=lambda: None)
    assert 50 < m['peak_mem_mib'] < 90, m  # the transient, not the cache
    cache.clear()
    m = bm.measure(step, repeat=1, warmup=0, flop_fn=lambda: None)
    assert m['peak_mem_mib'] > 150, m  # no warm-up: the first call's cache counts


# ---------------------------------------------------------------- isolation and errors
def test_failing_worker_is_reported_with_the_model_name():
    with pytest.raises(bm.WorkerError) as exc:
        bm.run_isolated(failing_worker, dict(size=33), name='pacavit-tiny 33px')
    assert str(exc.value) == 'pacavit-tiny 33px: ValueError: size 33 is not a multiple of 32'
    assert exc.value.kind == 'error' and 'failing_worker' in exc.value.log
    with pytest.raises(bm.WorkerError, match=r'^crashy: worker exited 3') as exc:
        bm.run_isolated(crashing_worker, name='crashy')
    assert exc.value.kind == 'crash'
    with pytest.raises(bm.WorkerError, match=r'^sleepy: ran past 2 s') as exc:
        bm.run_isolated(sleeping_worker, name='sleepy', timeout=2)
    assert exc.value.kind == 'timeout'


def test_size_guard_extrapolates_from_the_last_smaller_point():
    guard = bm.SizeGuard(max_seconds=10, calls=4, memory_mib=300)
    assert guard.check('m', 64, 1) == ''  # nothing known: run it
    guard.record(bm.make_row('m', 'infer', 64, 1, time_s=0.5, peak_mem_mib=50.))
    assert guard.check('m', 128, 1) == ''  # ~2 s x 4 calls, ~200 MiB
    assert guard.check('m', 192, 1).startswith('skipped: ~4 s a call')  # 4.5 s x 4 > 10 s
    guard = bm.SizeGuard(max_seconds=None, memory_mib=300)
    guard.record(bm.make_row('m', 'infer', 64, 1, time_s=0.5, peak_mem_mib=100.))
    assert guard.check('m', 128, 1).startswith('skipped: needs ~400 MiB')
    assert guard.check('m', 128, 8) == ''  # another batch size: nothing known
    guard.record(bm.make_row('m', 'infer', 128, 1, error=guard.check('m', 128, 1)))
    assert guard.check('m', 256, 1).startswith('skipped: a smaller point was too big (128')
