import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# Threads per test process: the machine's cores shared among the pytest-xdist workers (make test
# runs -n auto: one worker per core, so 1 thread each; a plain pytest run: 2). Oversubscribed
# OpenMP threads spin in each other's way, so this also goes to every tool a test starts.
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
THREADS = str(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))
if 'PYTEST_XDIST_WORKER' in os.environ:  # a worker: its share, whatever the parent set
    os.environ['OMP_NUM_THREADS'] = THREADS
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(int(THREADS))
else:
    os.environ.setdefault('OMP_NUM_THREADS', THREADS)

import json  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

PYTHON = sys.executable

# The test tiers. End-to-end runs carry the ``e2e`` marker: a tool or a whole Runner in a
# subprocess (training, testing, the x20 load test, the docs build), the inferencers and demos on
# whole models, the sweep that builds every config, and the compilers (torch.compile, ONNX export).
# ``make test-fast`` (``pytest -m "not e2e"``) runs the unit tier only, ``make test`` (CI) runs
# everything. A module listed here is e2e as a whole; a single test elsewhere can be marked
# ``@pytest.mark.e2e``.
E2E_MODULES = (
    'tests/test_tools/',
    'tests/test_apis/test_inference.py',
    'tests/test_apis/test_model_zoo.py',
    'tests/test_apis/test_cluster_demo.py',
    'tests/test_apis/test_image_demo.py',
    'tests/test_configs.py',
    'tests/test_docs.py',
    'tests/test_deployment/test_onnx.py',
    'tests/test_engine/test_compile.py',
    'tests/test_engine/test_patches.py',
    'tests/test_reliability/test_load.py',
    'tests/test_reliability/test_determinism_resume.py',
    'tests/test_reliability/test_distributed.py',
    'tests/test_reliability/test_security.py',
    'tests/test_reliability/test_saved_config.py',
    'tests/test_reliability/test_bad_input.py',
    'tests/test_reliability/test_bad_annotations.py',
    'tests/test_reliability/test_checkpoint_files.py',
    'tests/test_reliability/test_checkpoint_fit.py',
    'tests/test_reliability/test_checkpoint_schemes.py',
    'tests/test_reliability/test_panoptic_mismatch.py',
)


def pytest_configure(config):
    config.addinivalue_line('markers', 'e2e: a tool-level end-to-end run (left out by make test-fast)')


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = osp.relpath(str(item.fspath), REPO).replace(os.sep, '/')
        if rel.startswith(E2E_MODULES):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _default_scope_per_test():
    """mmengine's default scope is one per process: a test that sets it (``init_default_scope``)
    would change how ``scope.Type`` names resolve in the tests that follow on its pytest-xdist
    worker, which are a different set in every run. After each test the scopes are put back as
    they were before it."""
    def scopes():
        mod = sys.modules.get('mmengine.registry.default_scope')
        return None if mod is None else mod.DefaultScope._instance_dict

    before = dict(scopes() or {})
    yield
    now = scopes()
    if now is not None:
        now.clear()
        now.update(before)


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """Small synthetic sets in the real formats, shared by the whole test session."""
    from clusterseg.datasets import synthetic
    root = tmp_path_factory.mktemp('synthetic')
    synthetic.make_seg(str(root / 'ade'), num_train=16, num_val=4, size=64, seed=0)
    synthetic.make_panoptic(str(root / 'coco'), num_train=12, num_val=4, size=96, seed=0)
    synthetic.make_cls(str(root / 'imagenet'), num_train=8, num_val=2, size=32, seed=0)
    return root


def run_tool(args, cwd=REPO, timeout=900, env=None, check=True):
    """Run a repository tool in a subprocess; on failure show its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=THREADS)
    full_env.update(env or {})
    proc = subprocess.run([PYTHON] + list(args) if args[0].endswith('.py') else list(args),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, args))} exited {proc.returncode}\n'
                             f'--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


def logged_scalars(work_dir):
    """All records of the latest run's vis_data/scalars.json."""
    runs = sorted(d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d, 'vis_data')))
    path = osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def data_options(task, root):
    """--cfg-options pointing a synthetic config's dataloaders (and evaluator) at ``root``."""
    opts = [f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', 'train_dataloader.num_workers=0',
            'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
            'test_dataloader.persistent_workers=False']
    if task == 'det':
        opts += [f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
                 f'test_evaluator.ann_file={root}/annotations/instances_val2017.json']
    if task == 'panoptic':
        opts += [f'val_evaluator.ann_file={root}/annotations/panoptic_val2017.json',
                 f'test_evaluator.ann_file={root}/annotations/panoptic_val2017.json',
                 f'val_evaluator.seg_prefix={root}/annotations/panoptic_val2017/',
                 f'test_evaluator.seg_prefix={root}/annotations/panoptic_val2017/']
    return opts


def small_seg_options(size=64):
    """--cfg-options that shrink a synthetic ADE20K config's crops to ``size`` (tests only)."""
    return [f'train_dataloader.dataset.pipeline.2.scale=({4 * size},{size})',
            f'train_dataloader.dataset.pipeline.3.crop_size=({size},{size})',
            f'val_dataloader.dataset.pipeline.1.scale=({4 * size},{size})',
            f'test_dataloader.dataset.pipeline.1.scale=({4 * size},{size})',
            f'model.data_preprocessor.size=({size},{size})']
