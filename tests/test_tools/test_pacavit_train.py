"""PaCa-ViT's synthetic siblings train through tools/train.py in every task."""
import json
import os.path as osp

from tests.conftest import data_options, logged_scalars, run_tool, small_seg_options

CFG = 'configs/pacavit/'


def test_pacahead_trains_and_tests(synthetic_root, tmp_path):
    config = CFG + 'pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
    work = str(tmp_path / 'seg')
    data = data_options('seg', synthetic_root / 'ade') + small_seg_options(64)
    run_tool(['tools/train.py', config, '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=30', 'train_cfg.val_interval=30', 'default_hooks.logger.interval=1',
              'default_hooks.checkpoint.interval=30', 'param_scheduler.0.end=3',
              'param_scheduler.1.begin=3', 'param_scheduler.1.end=30'] + data)
    records = [r for r in logged_scalars(work) if 'loss' in r]
    assert all('decode.loss_paca' in r and 'decode.loss_ce' in r for r in records)
    paca = [r['decode.loss_paca'] for r in records]
    total = [r['loss'] for r in records]
    assert sum(total[-5:]) < 0.9 * sum(total[:5]), total
    assert sum(paca[-5:]) < sum(paca[:5]), paca  # the clusters learn their classes
    run_tool(['tools/test.py', config, osp.join(work, 'iter_30.pth'), '--work-dir', work,
              '--cfg-options'] + data)
    assert 0 <= json.load(open(osp.join(work, 'test_metrics.json')))['mIoU'] <= 100


def test_classifier_and_mask_rcnn_train_two_epochs(synthetic_root, tmp_path):
    for task, config, sub in [
            ('cls', 'pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py', 'imagenet'),
            ('det', 'mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py', 'coco')]:
        work = str(tmp_path / task)
        run_tool(['tools/train.py', CFG + config, '--work-dir', work, '--no-validate', '--cfg-options',
                  'train_cfg.max_epochs=2', 'default_hooks.logger.interval=1',
                  'default_hooks.checkpoint.interval=1', 'train_dataloader.batch_size=4',
                  'train_dataloader.dataset.indices=12']  # 3 iterations per epoch
                 + data_options(task, synthetic_root / sub))
        losses = [r['loss'] for r in logged_scalars(work) if 'loss' in r]
        assert len(losses) >= 3 and all(l == l and l < 1e4 for l in losses), losses  # finite
        assert osp.exists(osp.join(work, 'epoch_2.pth'))
