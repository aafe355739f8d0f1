"""A panoptic PNG that disagrees with its json ``segments_info`` raises, naming the PNG, the image
and the ids (issue 7, item 3); on valid data the checked loader equals mmdet's."""
import json
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from clusterseg.datasets.transforms import LoadPanopticAnnotations, PanopticAnnotationError
from clusterseg.engine import add_input_checks
from tests.conftest import data_options, run_tool

KMAX_SYNTH = 'configs/kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py'


def _dataset(root, checked):
    from mmdet.datasets import CocoPanopticDataset
    load = dict(type='clusterseg.LoadPanopticAnnotations' if checked else 'LoadPanopticAnnotations',
                backend_args=None)
    # as an mmdet config builds it: in the mmdet scope, whatever scope an earlier test left set
    # (in the mmdet scope a ``mmdet.`` prefix finds only mmdet's own transforms, not mmcv's
    # LoadImageFromFile, which mmdet reaches through its parent registry)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return CocoPanopticDataset(
            data_root=str(root), ann_file='annotations/panoptic_train2017.json',
            data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
            pipeline=[dict(type='LoadImageFromFile'), load], test_mode=False, filter_cfg=None)


def _copy(synthetic_root, tmp_path):
    root = tmp_path / 'coco'
    shutil.copytree(synthetic_root / 'coco', root)
    return root


def test_valid_panoptic_data_loads_exactly_as_mmdet(synthetic_root):
    ours, ref = _dataset(synthetic_root / 'coco', True), _dataset(synthetic_root / 'coco', False)
    assert len(ours) == len(ref) > 0
    for i in range(len(ours)):
        a, b = ours[i], ref[i]
        assert np.array_equal(a['gt_seg_map'], b['gt_seg_map'])
        assert a['gt_seg_map'].dtype == b['gt_seg_map'].dtype
        assert np.array_equal(a['gt_masks'].masks, b['gt_masks'].masks)
        assert (a['gt_masks'].height, a['gt_masks'].width) == (b['gt_masks'].height,
                                                               b['gt_masks'].width)
        assert np.array_equal(a['gt_bboxes_labels'], b['gt_bboxes_labels'])
        assert (a['gt_seg_map'] != 255).any()


def _first_image(root):
    ann_path = root / 'annotations' / 'panoptic_train2017.json'
    ann = json.loads(ann_path.read_text())
    entry = ann['annotations'][0]
    png = root / 'annotations' / 'panoptic_train2017' / entry['file_name']
    return ann_path, ann, entry, png


def _error_for(root, index_of_png):
    ds = _dataset(root, True)
    idx = [i for i in range(len(ds))
           if osp.basename(ds.get_data_info(i)['seg_map_path']) == index_of_png][0]
    with pytest.raises(PanopticAnnotationError) as e:
        ds[idx]
    return str(e.value)


def test_segment_in_json_but_not_in_png(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    ann_path, ann, entry, png = _first_image(root)
    fake = dict(entry['segments_info'][0], id=987654)
    entry['segments_info'].append(fake)
    ann_path.write_text(json.dumps(ann))
    msg = _error_for(root, png.name)
    assert str(png) in msg and '987654 are in the json segments_info but not in the PNG' in msg, msg
    assert entry['file_name'].replace('.png', '.jpg') in msg  # the image


def test_segment_in_png_but_not_in_json(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    ann_path, ann, entry, png = _first_image(root)
    dropped = entry['segments_info'].pop(-1)
    ann_path.write_text(json.dumps(ann))
    msg = _error_for(root, png.name)
    assert f"{dropped['id']} are in the PNG but not in the json segments_info" in msg, msg
    assert str(png) in msg


def test_png_of_another_size(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    _, _, entry, png = _first_image(root)
    pan = cv2.imread(str(png))
    h, w = pan.shape[:2]
    cv2.imwrite(str(png), cv2.resize(pan, (w // 2, h), interpolation=cv2.INTER_NEAREST))
    msg = _error_for(root, png.name)
    assert str(png) in msg and f'is {h}x{w // 2} (HxW)' in msg and f'is {h}x{w}' in msg, msg


def test_missing_png_and_duplicate_ids(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    ann_path, ann, entry, png = _first_image(root)
    load = LoadPanopticAnnotations()
    base = dict(img_path='x.jpg', ori_shape=(96, 96), height=96, width=96,
                segments_info=[dict(id=5, category=0, is_thing=True)] * 2,
                instances=[], seg_map_path=str(png))
    with pytest.raises(PanopticAnnotationError, match=r'lists segment id\(s\) 5 more than once'):
        load(dict(base))
    with pytest.raises(FileNotFoundError, match='panoptic PNG .*nope.png of image x.jpg'):
        load(dict(base, seg_map_path=str(root / 'nope.png')))


def test_checked_loader_is_wired_into_panoptic_configs():
    cfg = Config.fromfile(KMAX_SYNTH)
    add_input_checks(cfg)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        types = [t['type'] for t in cfg[key].dataset.pipeline]
        assert 'clusterseg.LoadPanopticAnnotations' in types, types
        assert 'LoadPanopticAnnotations' not in types


def test_train_with_mismatched_panoptic_png_names_it(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path)
    ann_path, ann, entry, png = _first_image(root)
    for e in ann['annotations']:  # every image: whichever is sampled first fails
        e['segments_info'].pop(-1)
    ann_path.write_text(json.dumps(ann))
    proc = run_tool(['tools/train.py', KMAX_SYNTH, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options', 'train_cfg.max_iters=1'] + data_options('panoptic', root),
                    check=False)
    assert proc.returncode != 0
    assert 'PanopticAnnotationError: panoptic PNG' in proc.stderr, proc.stderr[-3000:]
    assert 'are in the PNG but not in the json segments_info' in proc.stderr
