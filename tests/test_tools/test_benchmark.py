"""tools/analysis_tools/benchmark.py on tiny sizes: CSV rows for every point, both plots."""
import csv

from tests.conftest import run_tool

TOOL = 'tools/analysis_tools/benchmark.py'


def test_help_has_example():
    out = run_tool([TOOL, '--help']).stdout
    assert 'example:' in out and '--batch-sizes' in out and 'Peak memory' in out


def test_benchmark_csv_and_plots(tmp_path):
    configs = ['configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
               'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py']
    proc = run_tool([TOOL, *configs, '--names', 'paca', 'segformer', '--sizes', '32', '64',
                     '--batch-sizes', '1', '2', '--repeat', '1', '--warmup', '0', '--threads', '1',
                     '--out-dir', str(tmp_path)])
    assert '8/8' in proc.stderr  # the progress bar (on stderr) reached the end
    assert '8/8' not in proc.stdout  # stdout carries no bar
    with open(tmp_path / 'benchmark.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['model'], r['batch_size'], r['size']) for r in rows] == [
        (m, b, s) for m in ('paca', 'segformer') for b in ('1', '2') for s in ('32', '64')]
    for r in rows:
        assert r['error'] == '' and r['scope'] == 'mmseg'
        assert float(r['time_ms']) > 0 and float(r['peak_mem_mb']) >= 0
    for name in ('time_vs_resolution.png', 'memory_vs_resolution.png'):
        assert (tmp_path / name).read_bytes()[:4] == b'\x89PNG'


def test_failed_points_are_recorded(tmp_path):
    """A config that cannot build gives error rows, not a crash, and the others still run."""
    bad = tmp_path / 'bad.py'
    bad.write_text("default_scope = 'mmseg'\nmodel = dict(type='NoSuchModel')\n")
    run_tool([TOOL, str(bad), '--sizes', '32', '--repeat', '1', '--out-dir', str(tmp_path)])
    with open(tmp_path / 'benchmark.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and 'NoSuchModel' in rows[0]['error']
