"""Determinism and crash-resume through ``tools/train.py`` (issue 7, items 1 and 2).

The cls demo (ResNet-18 w16: no dropout, no drop-path) trains on the synthetic ImageNet set.
Randomness lives in the sampler (seeded per epoch by mmengine) and in the augmentations, which
run in one dataloader worker re-created every epoch (``persistent_workers=False``) and re-seeded
by mmengine's ``worker_init_fn`` from the run seed. Epoch-based resume restarts at an epoch
boundary, so a resumed run replays exactly what the uninterrupted run did: we require equality.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, THREADS, logged_scalars, run_tool

CONFIG = 'configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py'
EPOCHS, ITERS_PER_EPOCH = 2, 8  # 64 train images, batch 8


def _opts(root):
    return ['--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=False',
            'train_dataloader.batch_size=8', 'train_dataloader.dataset.pipeline.1.scale=32',
            f'train_cfg.max_epochs={EPOCHS}', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=10',
            'randomness.seed=7', 'randomness.deterministic=True']


def _losses(work):
    return {r['step']: r['loss'] for r in logged_scalars(work) if 'loss' in r}


def _weights(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return ckpt['state_dict']


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f'{k} differs between {a} and {b}'


@pytest.fixture(scope='module')
def reference(synthetic_root, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('reference'))
    run_tool(['tools/train.py', CONFIG, '--work-dir', work] + _opts(synthetic_root / 'imagenet'))
    losses = _losses(work)
    assert sorted(losses) == list(range(1, EPOCHS * ITERS_PER_EPOCH + 1))
    return work, losses


def test_same_seed_deterministic_runs_give_identical_losses(reference, synthetic_root, tmp_path):
    ref_work, ref_losses = reference
    work = str(tmp_path / 'again')
    run_tool(['tools/train.py', CONFIG, '--work-dir', work] + _opts(synthetic_root / 'imagenet'))
    assert _losses(work) == ref_losses  # exact, every iteration
    _assert_same_weights(osp.join(work, f'epoch_{EPOCHS}.pth'),
                         osp.join(ref_work, f'epoch_{EPOCHS}.pth'))


def test_sigkill_then_resume_matches_uninterrupted_run(reference, synthetic_root, tmp_path):
    ref_work, ref_losses = reference
    work = str(tmp_path / 'killed')
    # kill mid-epoch 2 (iteration 4 of 8 logged), after epoch_1.pth was written
    marker = 'Epoch(train) [2][4/8]'
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=THREADS)  # as run_tool's runs
    proc = subprocess.Popen([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work] +
                            _opts(synthetic_root / 'imagenet'), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.time() + 300
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.time() < deadline, 'training did not reach the kill point in time'
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, ''.join(seen[-30:])
    assert osp.exists(osp.join(work, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work, f'epoch_{EPOCHS}.pth')), 'killed too late'
    killed_losses = _losses(work)
    assert killed_losses and all(ref_losses[s] == v for s, v in killed_losses.items())
    # no half-written file is left where --resume would look
    assert not [f for f in os.listdir(work) if '.tmp-' in f]

    run_tool(['tools/train.py', CONFIG, '--work-dir', work, '--resume'] +
             _opts(synthetic_root / 'imagenet'))
    resumed = _losses(work)
    assert min(resumed) == ITERS_PER_EPOCH + 1  # resumed from epoch_1.pth, at epoch 2
    assert resumed == {s: v for s, v in ref_losses.items() if s > ITERS_PER_EPOCH}
    _assert_same_weights(osp.join(work, f'epoch_{EPOCHS}.pth'),
                         osp.join(ref_work, f'epoch_{EPOCHS}.pth'))
