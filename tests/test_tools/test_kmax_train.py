"""kMaX-DeepLab's synthetic siblings train through tools/train.py; a short run beats an untrained model."""
import os.path as osp

import torch
from mmengine.dataset import pseudo_collate

from tests.conftest import data_options, logged_scalars, run_tool
from tests.test_models.test_heads.test_kmax_head import PAN_SYN, SEG_SYN, build_dataset, build_model

ITERS = 120


def untrained_pq(coco_root):
    from mmdet.evaluation import CocoPanopticMetric
    torch.manual_seed(0)
    model, cfg = build_model(PAN_SYN)
    model.eval()
    ds = build_dataset(cfg, coco_root, 'val')
    metric = CocoPanopticMetric(ann_file=str(coco_root / 'annotations/panoptic_val2017.json'),
                                seg_prefix=str(coco_root / 'annotations/panoptic_val2017'))
    metric.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        data = model.data_preprocessor(pseudo_collate([ds[i]]), False)
        with torch.no_grad():
            out = model.predict(data['inputs'], data['data_samples'])
        metric.process({}, [o.to_dict() for o in out])
    return metric.compute_metrics(metric.results)['PQ']


def test_short_panoptic_training_beats_untrained_pq(synthetic_root, tmp_path):
    work = str(tmp_path / 'pan')
    run_tool(['tools/train.py', PAN_SYN, '--work-dir', work, '--cfg-options',
              f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}', 'default_hooks.logger.interval=5',
              f'default_hooks.checkpoint.interval={ITERS}', f'param_scheduler.1.end={ITERS}']
             + data_options('panoptic', synthetic_root / 'coco'))
    records = logged_scalars(work)
    losses = [r for r in records if 'loss' in r]
    assert all('d0.loss_insdis' in r and 'loss_aux_sem' in r for r in losses)
    mask = [r['loss_mask'] for r in losses]
    assert sum(mask[-3:]) < 0.7 * sum(mask[:3]), mask  # mask-ID CE: the clustering is learned
    trained = [r['coco_panoptic/PQ'] for r in records if 'coco_panoptic/PQ' in r][-1]
    before = untrained_pq(synthetic_root / 'coco')
    print(f'synthetic COCO panoptic PQ: untrained {before:.2f} -> {ITERS} iters {trained:.2f}')
    assert trained > before + 2.0, (before, trained)


def test_semantic_head_trains_and_validates(synthetic_root, tmp_path):
    work = str(tmp_path / 'seg')
    data = data_options('seg', synthetic_root / 'ade')
    run_tool(['tools/train.py', SEG_SYN, '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=20', 'train_cfg.val_interval=20', 'default_hooks.logger.interval=5',
              'default_hooks.checkpoint.interval=20', 'param_scheduler.0.end=2', 'param_scheduler.1.begin=2',
              'param_scheduler.1.end=20'] + data)
    losses = [r for r in logged_scalars(work) if 'loss' in r]
    assert losses and all(r['loss'] == r['loss'] for r in losses)
    assert all('decode.loss_cls' in r and 'decode.loss_aux_sem' in r for r in losses)
    miou = [r['mIoU'] for r in logged_scalars(work) if 'mIoU' in r]  # IoUMetric at the end of training
    assert miou and 0 <= miou[-1] <= 100
    assert osp.exists(osp.join(work, 'iter_20.pth'))
