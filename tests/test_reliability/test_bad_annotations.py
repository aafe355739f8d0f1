"""Bad annotations are reported, not silently dropped or mis-read (issue 8, item 5).

* a segmentation mask of another size than its image, or not a single-channel 8-bit label map:
  ``SegAnnotationError`` naming the file and what was found
  (``clusterseg.LoadSegAnnotations``, swapped in for mmseg's ``LoadAnnotations``);
* COCO annotations mmdet drops without a word (degenerate or outside boxes, unknown image or
  category ids): counted per kind with the first ids at dataset build, an ``AnnotationError`` with
  ``strict_annotations=True``; a dataset that ``filter_cfg`` empties says so and why
  (``clusterseg.engine.data_checks``).
"""
import json
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from clusterseg.datasets.transforms import LoadSegAnnotations, SegAnnotationError
from clusterseg.engine import prepare_config
from tests.conftest import data_options, run_tool, small_seg_options
from tests.test_reliability.test_run_validation import load_tool

SEG = 'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py'
DET = 'configs/demo/mask-rcnn_r18-w16_fpn_1xb4-12e_synthetic-coco-128x128.py'


def test_mask_of_another_size_names_the_file(synthetic_root, tmp_path):
    root = tmp_path / 'ade'
    shutil.copytree(synthetic_root / 'ade', root)
    victim = sorted((root / 'annotations' / 'training').iterdir())[3]
    ann = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(victim), cv2.resize(ann, (48, 40), interpolation=cv2.INTER_NEAREST))
    proc = run_tool(['tools/train.py', SEG, '--work-dir', str(tmp_path / 'work'), '--no-validate',
                     '--cfg-options', 'train_cfg.max_iters=2', 'train_dataloader.batch_size=8']
                    + data_options('seg', root) + small_seg_options(64), check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'SegAnnotationError' in err and str(victim) in err, err[-3000:]
    assert 'is 40x48 (HxW) but its image' in err and 'is 64x64' in err
    assert 'stack expects each tensor' not in err


def _seg_results(path, shape=(16, 16)):
    return dict(seg_map_path=str(path), reduce_zero_label=True, seg_fields=[],
                img_path='img.jpg', ori_shape=shape, label_map={3: 0, 5: 1})


def test_mask_format_names_the_file_and_what_was_found(tmp_path):
    from mmseg.datasets.transforms import LoadAnnotations
    good = np.full((16, 16), 3, np.uint8)
    good[4:8] = 5
    good[0, 0] = 0
    cv2.imwrite(str(tmp_path / 'good.png'), good)
    out = LoadSegAnnotations()(_seg_results(tmp_path / 'good.png'))
    ref = LoadAnnotations()(_seg_results(tmp_path / 'good.png'))
    assert np.array_equal(out['gt_seg_map'], ref['gt_seg_map'])  # valid data: mmseg's result
    assert out['seg_fields'] == ['gt_seg_map']

    cv2.imwrite(str(tmp_path / 'rgb.png'), np.stack([good] * 3, -1))
    with pytest.raises(SegAnnotationError) as e:
        LoadSegAnnotations()(_seg_results(tmp_path / 'rgb.png'))
    assert str(tmp_path / 'rgb.png') in str(e.value) and 'has 3 channels' in str(e.value)

    wide = good.astype(np.uint16)
    wide[1, 1] = 300  # mmseg would read it as 300 % 256 = 44
    cv2.imwrite(str(tmp_path / 'wide.png'), wide)
    with pytest.raises(SegAnnotationError) as e:
        LoadSegAnnotations()(_seg_results(tmp_path / 'wide.png'))
    msg = str(e.value)
    assert str(tmp_path / 'wide.png') in msg and 'uint16' in msg and '0..300' in msg

    # the tools put it into mmseg pipelines (and the saved config gets mmseg's back)
    from clusterseg.engine import add_input_checks
    from clusterseg.engine import strip_input_checks
    cfg = Config.fromfile(SEG)
    add_input_checks(cfg)
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'clusterseg.LoadSegAnnotations' in types and 'LoadAnnotations' not in types
    strip_input_checks(cfg)
    assert cfg.train_dataloader.dataset.pipeline == Config.fromfile(SEG).train_dataloader.dataset.pipeline


def _broken_coco(synthetic_root, tmp_path):
    """A copy of the synthetic COCO set whose train json has one annotation of each kind mmdet
    drops: returns (root, {kind: annotation id})."""
    root = tmp_path / 'coco'
    shutil.copytree(synthetic_root / 'coco', root,
                    ignore=shutil.ignore_patterns('panoptic*'))
    path = root / 'annotations' / 'instances_train2017.json'
    data = json.load(open(path))
    anns = data['annotations']
    anns[0]['bbox'][2] = 0  # zero width
    anns[1]['bbox'][:2] = [5000, 5000]  # outside its image
    anns[2]['image_id'] = 987654  # no such image
    anns[3]['category_id'] = 999  # no such category
    json.dump(data, open(path, 'w'))
    return root, dict(degenerate=anns[0]['id'], outside=anns[1]['id'],
                      image=anns[2]['id'], category=anns[3]['id'])


_KINDS = dict(degenerate='degenerate_box', outside='outside_image', image='unknown_image',
              category='unknown_category')


def test_dropped_coco_annotations_are_counted(synthetic_root, tmp_path, monkeypatch):
    root, ids = _broken_coco(synthetic_root, tmp_path)
    total = len(json.load(open(root / 'annotations' / 'instances_train2017.json'))['annotations'])
    train = load_tool('tools/train.py')
    cfg = prepare_config(train.parse_args([DET, '--work-dir', str(tmp_path / 'w'),
                                           '--cfg-options'] + data_options('det', root)), 'train')
    from clusterseg.engine import data_checks
    said = []
    monkeypatch.setattr(data_checks, '_log', lambda msg, level: said.append(msg))
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(ds) == 12  # training goes on with what is valid ...
    report = next(m for m in said if 'annotations are dropped' in m)  # ... but it is said
    assert 'instances_train2017.json' in report and f'4 of {total} annotations' in report
    for kind, text in (('degenerate', 'width or height < 1 px'), ('outside', 'outside its image'),
                       ('image', 'image id that is not'), ('category', 'category id that is not')):
        what = data_checks.KINDS[_KINDS[kind]]
        assert text in what and f'1 {what} (annotation ids {ids[kind]})' in report, report
    assert 'strict_annotations=True' in report


def test_strict_annotations_stop_the_run(synthetic_root, tmp_path):
    root, ids = _broken_coco(synthetic_root, tmp_path)
    proc = run_tool(['tools/train.py', DET, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                     'strict_annotations=True'] + data_options('det', root), check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'AnnotationError' in err and 'instances_train2017.json' in err, err[-3000:]
    assert '4 of ' in err and f'(annotation ids {ids["outside"]})' in err
    assert 'Iter(train)' not in proc.stdout + err


def test_filtered_to_nothing_says_why(synthetic_root, tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(synthetic_root / 'coco', root, ignore=shutil.ignore_patterns('panoptic*'))
    path = root / 'annotations' / 'instances_train2017.json'
    data = json.load(open(path))
    for ann in data['annotations']:
        ann['category_id'] = 999  # a json from another label set
    json.dump(data, open(path, 'w'))
    train = load_tool('tools/train.py')
    cfg = prepare_config(train.parse_args([DET, '--work-dir', str(tmp_path / 'w'),
                                           '--cfg-options'] + data_options('det', root)), 'train')
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    from clusterseg.engine import EmptyDatasetError
    with DefaultScope.overwrite_default_scope('mmdet'), pytest.raises(EmptyDatasetError) as e:
        DATASETS.build(cfg.train_dataloader.dataset)  # what the runner builds first in train()
    err = str(e.value)
    assert 'all 12 images were filtered out' in err and 'instances_train2017.json' in err
    assert '12 with no annotation of the classes (filter_empty_gt=True)' in err
    assert 'of a category id that is not in the json' in err
    assert 'check data_root' not in err.lower()
