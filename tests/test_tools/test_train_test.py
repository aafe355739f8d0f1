"""End to end through tools/train.py and tools/test.py, one small stock model per library."""
import json
import os
import os.path as osp

import pytest

from tests.conftest import data_options, logged_scalars, run_tool, small_seg_options

DEMO = 'configs/demo/'
CASES = {
    # task: (config, data subdir, max iters/epochs options, metric key)
    'seg': (DEMO + 'segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py', 'ade',
            ['train_cfg.max_iters=40', 'train_cfg.val_interval=40',
             'default_hooks.checkpoint.interval=20', 'param_scheduler.0.end=5',
             'param_scheduler.1.begin=5', 'param_scheduler.1.end=40'], 'mIoU'),
    'det': (DEMO + 'mask-rcnn_r18-w16_fpn_1xb4-12e_synthetic-coco-128x128.py', 'coco',
            ['train_cfg.max_epochs=4', 'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=2',
             'param_scheduler.1.milestones=[3]'], 'coco/segm_mAP'),
    'cls': (DEMO + 'resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py', 'imagenet',
            ['train_cfg.max_epochs=12', 'train_cfg.val_interval=12', 'train_dataloader.batch_size=8',
             'default_hooks.checkpoint.interval=6'], 'accuracy/top1'),
}


def _train_then_test(task, synthetic_root, tmp_path):
    config, sub, schedule, metric = CASES[task]
    work = str(tmp_path / task)
    opts = data_options(task, synthetic_root / sub) + schedule + ['default_hooks.logger.interval=1']
    if task == 'seg':
        opts += small_seg_options(64)
    run_tool(['tools/train.py', config, '--work-dir', work, '--cfg-options'] + opts)
    losses = [r['loss'] for r in logged_scalars(work) if 'loss' in r]
    ckpt = open(osp.join(work, 'last_checkpoint')).read().strip()
    test_dir = str(tmp_path / f'{task}_test')
    extra = ['--show-dir', 'vis', '--out', str(tmp_path / 'preds.pkl')]
    out = run_tool(['tools/test.py', config, ckpt, '--work-dir', test_dir] + extra + ['--cfg-options'] +
                   data_options(task, synthetic_root / sub))
    return work, losses, ckpt, test_dir, out, metric


@pytest.mark.parametrize('task', list(CASES))
def test_train_then_test(task, synthetic_root, tmp_path):
    work, losses, ckpt, test_dir, out, metric = _train_then_test(task, synthetic_root, tmp_path)
    k = max(2, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < 0.9 * first, f'loss did not fall: first {first:.3f}, last {last:.3f}'
    metrics = json.load(open(osp.join(test_dir, 'test_metrics.json')))
    assert metric in metrics and metrics[metric] >= 0
    assert '[clusterseg] metrics written to' in out.stdout
    assert os.path.getsize(tmp_path / 'preds.pkl') > 0  # --out dumps the raw predictions
    # --show-dir paints the predictions (under the run's folder in the work dir)
    painted = [f for _, _, fs in os.walk(test_dir) for f in fs if f.endswith(('.png', '.jpg'))]
    assert painted, f'no painted predictions under {test_dir}'


def test_resume_continues_a_stopped_run(synthetic_root, tmp_path):
    config, sub, _, _ = CASES['seg']
    work = str(tmp_path / 'resume')
    base = data_options('seg', synthetic_root / sub) + small_seg_options(64) + [
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=10',
        'train_cfg.val_interval=1000', 'param_scheduler.0.end=5', 'param_scheduler.1.begin=5',
        'param_scheduler.1.end=20']
    run_tool(['tools/train.py', config, '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=10'] + base)
    assert osp.exists(osp.join(work, 'iter_10.pth'))
    run_tool(['tools/train.py', config, '--work-dir', work, '--resume', '--cfg-options',
              'train_cfg.max_iters=20'] + base)
    steps = [r['step'] for r in logged_scalars(work) if 'loss' in r]
    assert steps[0] == 11 and steps[-1] == 20  # continued at iteration 11, not from scratch
    assert osp.exists(osp.join(work, 'iter_20.pth'))


def test_dist_train_two_processes_cpu(synthetic_root, tmp_path):
    config, sub, _, _ = CASES['seg']
    work = str(tmp_path / 'dist')
    proc = run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work, '--cfg-options',
                     'train_cfg.max_iters=4', 'train_cfg.val_interval=4', 'default_hooks.logger.interval=1',
                     'default_hooks.checkpoint.interval=4', 'train_dataloader.batch_size=2',
                     'param_scheduler.0.end=2', 'param_scheduler.1.begin=2', 'param_scheduler.1.end=4']
                    + data_options('seg', synthetic_root / sub) + small_seg_options(64),
                    env={'PYTHON': os.environ.get('PYTHON', __import__('sys').executable),
                         'PORT': '29611'})
    assert osp.exists(osp.join(work, 'iter_4.pth'))
    assert 'world_size: 2' in proc.stdout + proc.stderr or 'Distributed launcher: pytorch' in proc.stdout + proc.stderr


def test_missing_data_root_names_path_and_command(tmp_path):
    config = CASES['seg'][0]
    proc = run_tool(['tools/train.py', config, '--work-dir', str(tmp_path), '--cfg-options',
                     'train_dataloader.dataset.data_root=/nonexistent/ade'], check=False)
    assert proc.returncode != 0
    assert "'/nonexistent/ade'" in proc.stderr and 'train_dataloader.dataset.data_root' in proc.stderr
    assert 'make_synthetic_data.py --task seg --out /nonexistent/ade' in proc.stderr


def test_amp_on_cpu_is_a_clear_error(tmp_path):
    proc = run_tool(['tools/train.py', CASES['cls'][0], '--amp', '--work-dir', str(tmp_path)], check=False)
    assert proc.returncode != 0 and '--amp needs a CUDA GPU' in proc.stderr
