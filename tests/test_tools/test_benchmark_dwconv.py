"""tools/analysis_tools/benchmark_dwconv.py on tiny shapes: one row per point with both timings,
their ratio and a gradient difference at rounding level; a malformed --points names itself."""
import re

from tests.conftest import run_tool

TOOL = 'tools/analysis_tools/benchmark_dwconv.py'


def test_rows_and_gradient_agreement():
    out = run_tool([TOOL, '--points', '8x12x7', '8x12x3', '--batch-sizes', '1', '2',
                    '--repeat', '1']).stdout
    rows = re.findall(r'^\s*(\d+)\s+(\d+)\s+(\d+)x\d+\s+(\d)\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)x\s+'
                      r'([\d.e+-]+)$', out, re.M)
    assert [(b, c, h, k) for b, c, h, k, *_ in rows] == [
        ('1', '8', '12', '7'), ('1', '8', '12', '3'), ('2', '8', '12', '7'), ('2', '8', '12', '3')]
    for *_, stock, ours, ratio, diff in rows:
        assert float(stock) > 0 and float(ours) > 0 and float(ratio) > 0
        assert float(diff) < 1e-4  # same gradients up to fp32 rounding
    # 3x3 runs F.conv2d on both sides: the very same gradients
    assert [d for _, _, _, k, *_, d in rows if k == '3'] == ['0.0e+00', '0.0e+00']


def test_bad_point_is_named():
    proc = run_tool([TOOL, '--points', '8x12'], check=False)
    assert proc.returncode != 0 and "'8x12'" in proc.stderr and 'CxHxK' in proc.stderr
