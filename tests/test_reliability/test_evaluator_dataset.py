"""The evaluator evaluates the data it is given (issue 8, item 3).

Overriding a COCO config's dataset ``data_root`` (as the missing-data error suggests) used to
leave ``CocoMetric.ann_file`` (and ``CocoPanopticMetric.seg_prefix``) on the old files: the
predictions were scored against another set's ground truth (0.0 mAP for perfect predictions)
without a warning. ``tools/test.py`` / ``tools/train.py`` now derive the metric's paths from the
dataset, or stop naming both paths when both were given and disagree.
"""
import json
import shutil

import pytest
import torch

from clusterseg.engine import prepare_config
from tests.conftest import run_tool
from tests.test_reliability.test_run_validation import load_tool

DET = 'configs/demo/mask-rcnn_r18-w16_fpn_1xb4-12e_synthetic-coco-128x128.py'
PANOPTIC = 'configs/kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py'
# mmdet's COCO panoptic recipe: a CocoPanopticMetric plus a CocoMetric on the instances json
PANOPTIC_R50 = 'configs/kmax_deeplab/kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py'


def _test_cfg(config, options, tmp_path):
    tool = load_tool('tools/test.py')
    unused = tmp_path / 'unused.pth'  # must exist; never loaded here
    unused.touch()
    return prepare_config(tool.parse_args([config, str(unused), '--work-dir', str(tmp_path),
                                           '--cfg-options'] + list(options)), 'test')


def test_coco_metric_follows_an_overridden_data_root(synthetic_root, tmp_path, capsys):
    root = synthetic_root / 'coco'
    cfg = _test_cfg(DET, [f'test_dataloader.dataset.data_root={root}'], tmp_path)
    assert cfg.test_evaluator.ann_file == f'{root}/annotations/instances_val2017.json'
    out = capsys.readouterr().out
    assert 'test_evaluator.ann_file' in out and 'data/synthetic_coco/' in out  # said, not silent

    # the derived metric scores the ground truth of the data it is given as perfect
    from mmdet.evaluation import CocoMetric
    metric = CocoMetric(ann_file=cfg.test_evaluator.ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=cfg.test_dataloader.dataset.metainfo['classes'])
    gt = json.load(open(cfg.test_evaluator.ann_file))
    cat2label = {c['id']: i for i, c in enumerate(gt['categories'])}
    for img in gt['images']:
        anns = [a for a in gt['annotations'] if a['image_id'] == img['id']]
        boxes = torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns]).reshape(-1, 4)
        metric.process({}, [dict(img_id=img['id'], ori_shape=(img['height'], img['width']),
                                 pred_instances=dict(
                                     bboxes=boxes, scores=torch.ones(len(anns)),
                                     labels=torch.tensor([cat2label[a['category_id']]
                                                          for a in anns])))])
    assert metric.evaluate(len(gt['images']))['coco/bbox_mAP'] == pytest.approx(1.0)


def test_panoptic_metric_paths_follow_an_overridden_data_root(synthetic_root, tmp_path):
    root = synthetic_root / 'coco'
    cfg = _test_cfg(PANOPTIC, [f'test_dataloader.dataset.data_root={root}'], tmp_path)
    assert cfg.test_evaluator.ann_file == f'{root}/annotations/panoptic_val2017.json'
    assert cfg.test_evaluator.seg_prefix == f'{root}/annotations/panoptic_val2017/'
    # the instances json next to the panoptic one moves with the data root too
    from mmengine.config import Config
    from clusterseg.engine.validate import align_evaluators
    cfg = Config.fromfile(PANOPTIC_R50)
    cfg.merge_from_dict({'val_dataloader.dataset.data_root': '/elsewhere/coco/'})
    align_evaluators(cfg, {'val_dataloader.dataset.data_root': '/elsewhere/coco/'},
                     logger=lambda *a: None)
    assert [m['ann_file'] for m in cfg.val_evaluator] == [
        '/elsewhere/coco/annotations/panoptic_val2017.json',
        '/elsewhere/coco/annotations/instances_val2017.json']


def test_conflicting_explicit_paths_name_both(synthetic_root, tmp_path):
    other = tmp_path / 'other_coco'
    shutil.copytree(synthetic_root / 'coco' / 'annotations', other / 'annotations',
                    ignore=shutil.ignore_patterns('panoptic*'))
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')  # never read: the run stops before
    root = synthetic_root / 'coco'
    stale = f'{other}/annotations/instances_val2017.json'
    proc = run_tool(['tools/test.py', DET, str(ckpt), '--work-dir', str(tmp_path / 'w'),
                     '--cfg-options', f'test_dataloader.dataset.data_root={root}',
                     f'test_evaluator.ann_file={stale}'], check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'EvaluatorDatasetMismatchError' in err, err[-3000:]
    assert stale in err and f'{root}/annotations/instances_val2017.json' in err
    assert 'test_evaluator.ann_file' in err and 'test_dataloader.dataset.ann_file' in err
