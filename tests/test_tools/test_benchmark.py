"""tools/analysis_tools/benchmark.py on tiny sizes: the harness's CSV schema for backbones and
configs side by side, GFLOP / GEMM fraction consistent, train mode with --with-cp, the plot,
failed and skipped points recorded."""
import math

from clusterseg.utils.benchmark import CSV_FIELDS, read_csv
from tests.conftest import run_tool

TOOL = 'tools/analysis_tools/benchmark.py'
SEG_CONFIG = 'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py'


def test_help_has_example():
    out = run_tool([TOOL, '--help']).stdout
    assert 'example:' in out and '--batch-sizes' in out and 'Peak memory' in out
    assert 'GEMM fraction' in out and '--max-seconds' in out


def test_backbones_and_configs_side_by_side(tmp_path):
    proc = run_tool([TOOL, SEG_CONFIG, '--names', 'segformer', '--models', 'pacavit-tiny',
                     '--sizes', '32', '64', '--repeat', '1', '--threads', '1', '--gemm-size', '256',
                     '--csv', str(tmp_path / 'b.csv'), '--plot', str(tmp_path / 'b.png')])
    assert '4/4' in proc.stderr  # the progress bar (on stderr) reached the end
    assert '4/4' not in proc.stdout  # stdout carries no bar
    assert open(tmp_path / 'b.csv').readline().strip().split(',') == list(CSV_FIELDS)
    rows = read_csv(tmp_path / 'b.csv')
    assert [(r['model'], r['batch'], r['height']) for r in rows] == [
        (m, 1, s) for m in ('pacavit-tiny', 'segformer') for s in (32, 64)]
    gemm = rows[0]['gemm_gflops_per_s']
    assert gemm > 0 and all(r['gemm_gflops_per_s'] == gemm for r in rows)  # one GEMM per run
    for r in rows:
        assert r['error'] == '' and r['mode'] == 'infer' and r['threads'] == 1
        assert r['time_s'] > 0 and r['peak_mem_mib'] >= 0 and r['params_M'] > 0
        assert math.isclose(r['gflops_per_s'], r['gflop'] / r['time_s'], rel_tol=1e-2)
        assert math.isclose(r['gemm_fraction'], r['gflops_per_s'] / gemm, rel_tol=1e-2)
    # the worker built the PaCa-ViT-tiny backbone (all four stages) and counted its forward
    import torch

    from clusterseg.models.backbones import PaCaViT
    from clusterseg.utils.benchmark import count_flops
    model = PaCaViT('tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.).eval()
    with torch.no_grad():
        flops = count_flops(lambda: model(torch.randn(1, 3, 64, 64)))
    paca = rows[1]
    assert math.isclose(paca['gflop'], flops / 1e9, rel_tol=1e-3)
    assert math.isclose(paca['params_M'], sum(p.numel() for p in model.parameters()) / 1e6, rel_tol=1e-3)
    assert '| pacavit-tiny | 64 | 1 | infer |' in proc.stdout  # the printed table
    assert (tmp_path / 'b.png').read_bytes()[:4] == b'\x89PNG'


def test_train_mode_with_cp(tmp_path):
    proc = run_tool([TOOL, '--models', 'pacavit-tiny', '--mode', 'train', '--with-cp', '--sizes', '64',
                     '--batch-sizes', '2', '--repeat', '1', '--threads', '1', '--gemm-size', '256',
                     '--out-dir', str(tmp_path), '--no-progress'])
    rows = read_csv(tmp_path / 'benchmark.csv')
    assert [(r['model'], r['mode'], r['batch']) for r in rows] == [
        ('pacavit-tiny', 'train', 2), ('pacavit-tiny+cp', 'train', 2)]
    plain, cp = rows
    assert plain['error'] == cp['error'] == ''
    assert plain['gflop'] == cp['gflop'] > 0  # 3x the forward, the recomputation not counted
    assert 'pacavit-tiny 64px batch 2 (train): with_cp peak' in proc.stdout
    assert (tmp_path / 'benchmark.png').read_bytes()[:4] == b'\x89PNG'


def test_breakdown_of_a_train_step(tmp_path):
    """--breakdown: one table per backbone point, the four op classes, and the ceilings."""
    proc = run_tool([TOOL, '--models', 'pacavit-tiny', '--mode', 'train', '--sizes', '64',
                     '--batch-sizes', '1', '--repeat', '1', '--threads', '1', '--gemm-size', '256',
                     '--out-dir', str(tmp_path), '--no-progress', '--breakdown'])
    out = proc.stdout
    table = out[out.index('where the time goes, pacavit-tiny 64px batch 1 (train)'):]
    lines = {ln.strip().split('  ')[0]: ln for ln in table.splitlines()[1:8]}
    for label in ('matrix products', 'convolutions', 'fused attention',
                  'element-wise, norms, softmax, copies'):
        assert label in lines, table
    # PaCa-ViT's products, its depth-wise convs and its attention each did work (GFLOP > 0), and
    # the backward ran under the timer (its ops are listed)
    for label in ('matrix products', 'convolutions', 'fused attention'):
        ms, share, gflop = lines[label].strip()[len(label):].split()[:3]
        assert float(ms) > 0 and 0 < float(share) < 1 and float(gflop) > 0, lines[label]
    assert 'convolution_backward' in lines['convolutions']
    assert '_backward' in lines['fused attention']
    ceilings = next(ln for ln in table.splitlines() if 'GEMM fraction now' in ln)
    now, products_only, with_flops = [float(t.rstrip(';')) for t in ceilings.split()
                                      if t.rstrip(';').replace('.', '', 1).isdigit()]
    assert now < with_flops < products_only  # each ceiling takes time away, so it is higher


def test_failed_and_skipped_points_are_recorded(tmp_path):
    """A config that cannot build gives error rows, not a crash, the others still run, and a
    point extrapolated past --max-seconds is skipped with the reason."""
    bad = tmp_path / 'bad.py'
    bad.write_text("default_scope = 'mmseg'\nmodel = dict(type='NoSuchModel')\n")
    proc = run_tool([TOOL, str(bad), '--models', 'pvtv2-b1', '--sizes', '32', '4096', '--repeat', '1',
                     '--max-seconds', '1', '--gemm-size', '256', '--out-dir', str(tmp_path),
                     '--no-progress'])
    rows = {(r['model'], r['height']): r for r in read_csv(tmp_path / 'benchmark.csv')}
    assert rows['pvtv2-b1', 32]['error'] == '' and rows['pvtv2-b1', 32]['time_s'] > 0
    assert rows['pvtv2-b1', 4096]['error'].startswith('skipped: ~')
    assert '--max-seconds 1' in rows['pvtv2-b1', 4096]['error']
    assert 'NoSuchModel' in rows['bad', 32]['error'] and 'NoSuchModel' in rows['bad', 4096]['error']
    assert 'NoSuchModel' in proc.stdout


def test_onnx_and_bf16_side_by_side(tmp_path):
    """--onnx / --bf16: the exported graph gives the eager outputs (<= 1e-4) and the bf16 drift is
    small but not zero (autocast really ran), each timed against its reference in the same run."""
    import csv
    proc = run_tool([TOOL, '--models', 'pacavit-tiny', '--sizes', '64', '--repeat', '1', '--warmup', '0',
                     '--onnx', '--bf16', '--out-dir', str(tmp_path), '--no-progress'])
    assert 'onnxruntime vs eager' in proc.stdout and 'bf16 autocast vs fp32' in proc.stdout
    rows = {}
    for check in ('onnx', 'bf16'):
        with open(tmp_path / f'benchmark_{check}.csv') as f:
            (rows[check], ) = list(csv.DictReader(f))
        assert rows[check]['error'] == '' and float(rows[check]['other_ms']) > 0
    assert float(rows['onnx']['max_abs_diff']) <= 1e-4
    assert 0 < float(rows['bf16']['rel_l2']) < 0.05
