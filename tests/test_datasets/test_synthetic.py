"""Tests for the synthetic datasets: files must load through the real mm* dataset classes."""
import copy
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from clusterseg.datasets import synthetic as syn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs', '_base_', 'datasets')
SIZE = 64


def _tree_digest(root):
    """Map relative path -> sha1 of every file under ``root``."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = osp.join(d, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def _build_dataset(scope, cfg_name, loader, data_root, **overrides):
    """Build the dataset of ``loader`` in a base config with a new data_root."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import DATASETS
    elif scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(osp.join(CFG_DIR, cfg_name))
    ds_cfg = copy.deepcopy(cfg[loader]['dataset'])
    ds_cfg['data_root'] = str(data_root)
    ds_cfg.update(overrides)
    return cfg, DATASETS.build(ds_cfg)


def _rgb2id(png_path):
    rgb = np.asarray(Image.open(png_path).convert('RGB')).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ade')
    syn.make_seg(str(root), num_train=4, num_val=2, size=SIZE, seed=0)
    return root


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    syn.make_panoptic(str(root), num_train=4, num_val=3, size=(SIZE, 80), seed=0)
    return root


@pytest.fixture(scope='module')
def cls_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet')
    syn.make_cls(str(root), num_train=3, num_val=2, size=32, seed=0)
    return root


# ---------------------------------------------------------------- generator level


def test_rle_matches_pycocotools():
    mask_utils = pytest.importorskip('pycocotools.mask')
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        ref = mask_utils.encode(np.asfortranarray(m))
        ours = syn.rle_encode(m)
        assert ours['counts'] == ref['counts'].decode()
        assert ours['size'] == [int(h), int(w)]
        np.testing.assert_array_equal(mask_utils.decode(ours), m)


def test_occlusion_reflected_in_visible_masks():
    occluded = dropped = 0
    for i in range(12):
        sc = syn.generate_scene('coco', i, 'train', seed=0, size=128)
        assert sc['image'].shape == (128, 128, 3) and sc['image'].dtype == np.uint8
        assert sc['inst_map'].max() == len(sc['instances'])
        for k, inst in enumerate(sc['instances']):
            vis = sc['inst_map'] == k + 1
            assert vis.sum() == inst['visible_area'] > 0
            assert inst['visible_area'] <= inst['drawn_area']
            ys, xs = np.nonzero(vis)
            assert inst['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                    ys.max() - ys.min() + 1]
            occluded += inst['visible_area'] < inst['drawn_area']
        dropped += sc['num_dropped']
    assert occluded >= 3, 'scenes should contain occluded instances'
    # tiny leftovers are removed rather than annotated
    min_area = max(12, int(0.0015 * 128 * 128))
    for i in range(12):
        for inst in syn.generate_scene('coco', i, 'train', 0, 128)['instances']:
            assert inst['visible_area'] >= min_area


def test_determinism_and_seed(tmp_path):
    def make_all(root, seed, n=2):
        syn.make_seg(str(root / 'seg'), n, 1, 48, seed)
        syn.make_panoptic(str(root / 'coco'), n, 1, 48, seed)
        syn.make_cls(str(root / 'cls'), 1, 1, 24, seed)
        return _tree_digest(str(root))

    a = make_all(tmp_path / 'a', 0)
    b = make_all(tmp_path / 'b', 0)
    c = make_all(tmp_path / 'c', 1)
    assert a == b
    assert sorted(a) == sorted(c)
    images = [k for k in a if k.endswith(('.jpg', '.JPEG'))]
    assert images and all(a[k] != c[k] for k in images)
    # per-image seeding: more training images leave earlier ones unchanged
    d = make_all(tmp_path / 'd', 0, n=3)
    for k in images:
        assert d[k] == a[k], k


def test_configs_match_module_classes():
    from mmengine.config import Config
    ade = Config.fromfile(osp.join(CFG_DIR, 'synthetic_ade20k.py'))
    assert tuple(ade.metainfo['classes']) == syn.SYNTH_ADE20K_CLASSES
    ins = Config.fromfile(osp.join(CFG_DIR, 'synthetic_coco_instance.py'))
    assert tuple(ins.metainfo['classes']) == syn.SYNTH_COCO_CLASSES
    pan = Config.fromfile(osp.join(CFG_DIR, 'synthetic_coco_panoptic.py'))
    assert tuple(pan.metainfo['thing_classes']) == syn.SYNTH_COCO_PANOPTIC_THING_CLASSES
    assert tuple(pan.metainfo['stuff_classes']) == syn.SYNTH_COCO_PANOPTIC_STUFF_CLASSES
    assert tuple(pan.metainfo['classes']) == (
        syn.SYNTH_COCO_PANOPTIC_THING_CLASSES + syn.SYNTH_COCO_PANOPTIC_STUFF_CLASSES)
    cls = Config.fromfile(osp.join(CFG_DIR, 'synthetic_imagenet.py'))
    assert tuple(cls.metainfo['classes']) == syn.SYNTH_IMAGENET_CLASSES


def test_class_names_are_real():
    from mmdet.datasets import CocoDataset, CocoPanopticDataset
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    from mmseg.datasets import ADE20KDataset
    ade = ADE20KDataset.METAINFO['classes']
    for name, ade_id in syn.SYNTH_ADE20K_IDS.items():
        assert ade[ade_id - 1] == name
    assert set(syn.SYNTH_COCO_CLASSES) <= set(CocoDataset.METAINFO['classes'])
    meta = CocoPanopticDataset.METAINFO
    assert set(syn.SYNTH_COCO_PANOPTIC_THING_CLASSES) <= set(meta['thing_classes'])
    assert set(syn.SYNTH_COCO_PANOPTIC_STUFF_CLASSES) <= set(meta['stuff_classes'])
    assert syn.SYNTH_IMAGENET_CLASSES == IMAGENET_CATEGORIES[:8]
    assert list(syn.SYNTH_IMAGENET_WNIDS) == sorted(syn.SYNTH_IMAGENET_WNIDS)


# ---------------------------------------------------------------- seg (mmseg)


def test_seg_ade20k_dataset(seg_root):
    ann = sorted(os.listdir(seg_root / 'annotations' / 'training'))
    assert len(ann) == 4 and ann[0] == 'ADE_train_00000001.png'
    raw_values = set()
    for split in ('training', 'validation'):
        for f in os.listdir(seg_root / 'annotations' / split):
            im = Image.open(seg_root / 'annotations' / split / f)
            assert im.mode == 'L'
            raw_values |= set(np.unique(np.asarray(im)).tolist())
    assert raw_values <= {0} | set(syn.SYNTH_ADE20K_IDS.values())
    assert 0 in raw_values, 'some pixels should be "other" (ignored)'

    # expected: reduce_zero_label (0 -> 255, id -> id - 1) then label_map -> 0..K-1
    lut = np.full(256, 255, np.uint8)
    for k, name in enumerate(syn.SYNTH_ADE20K_CLASSES):
        lut[syn.SYNTH_ADE20K_IDS[name]] = k
    num_classes = len(syn.SYNTH_ADE20K_CLASSES)

    cfg, val = _build_dataset(
        'mmseg', 'synthetic_ade20k.py', 'val_dataloader', seg_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    assert len(val) == 4
    assert val.metainfo['classes'] == syn.SYNTH_ADE20K_CLASSES
    assert len(val.metainfo['palette']) == num_classes
    seen = set()
    for i in range(len(val)):
        item = val[i]
        gt = item['data_samples'].gt_sem_seg.data.numpy()[0]
        raw = np.asarray(Image.open(val.get_data_info(i)['seg_map_path']))
        np.testing.assert_array_equal(gt, lut[raw])
        labels = set(np.unique(gt).tolist())
        assert labels <= set(range(num_classes)) | {255}
        assert len(labels - {255}) >= 2
        seen |= labels - {255}
    assert len(seen) >= 5

    _, train = _build_dataset('mmseg', 'synthetic_ade20k.py', 'train_dataloader', seg_root)
    for i in range(len(train)):
        item = train[i]
        gt = item['data_samples'].gt_sem_seg.data.numpy()
        assert gt.shape[-2:] == item['inputs'].shape[-2:]
        assert set(np.unique(gt).tolist()) <= set(range(num_classes)) | {255}


# ---------------------------------------------------------------- det (mmdet)


def test_det_coco_json(coco_root):
    mask_utils = pytest.importorskip('pycocotools.mask')
    with open(coco_root / 'annotations' / 'instances_train2017.json') as f:
        js = json.load(f)
    assert [c['id'] for c in js['categories']] == [
        syn.SYNTH_COCO_IDS[n] for n in syn.SYNTH_COCO_CLASSES]
    assert [c['name'] for c in js['categories']] == list(syn.SYNTH_COCO_CLASSES)
    by_img = {}
    for a in js['annotations']:
        by_img.setdefault(a['image_id'], []).append(a)
    for img in js['images']:
        sc = syn.generate_scene('coco', img['id'] - 1, 'train', 0, (SIZE, 80))
        anns = by_img[img['id']]
        assert len(anns) == len(sc['instances'])
        for k, a in enumerate(anns):
            m = mask_utils.decode(a['segmentation']).astype(bool)
            np.testing.assert_array_equal(m, sc['inst_map'] == k + 1)
            assert a['area'] == m.sum() and a['iscrowd'] == 0
            assert a['bbox'] == list(mask_utils.toBbox(a['segmentation']).astype(int))


def test_det_coco_dataset(coco_root):
    num_classes = len(syn.SYNTH_COCO_CLASSES)
    _, val = _build_dataset('mmdet', 'synthetic_coco_instance.py', 'val_dataloader', coco_root,
                            ann_file='annotations/instances_train2017.json',
                            data_prefix=dict(img='train2017/'))
    assert len(val) == 4
    counts, labels = [], set()
    for i in range(len(val)):
        ds = val[i]['data_samples']
        h, w = ds.ori_shape
        assert (h, w) == (SIZE, 80)
        inst = ds.gt_instances
        boxes = inst.bboxes.numpy()
        masks = inst.masks.masks
        assert len(boxes) == len(masks) == len(inst.labels) > 0
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        for box, m in zip(boxes, masks):
            ys, xs = np.nonzero(m)
            np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert ((inst.labels >= 0) & (inst.labels < num_classes)).all()
        counts.append(len(boxes))
        labels |= set(inst.labels.tolist())
    assert max(counts) >= 3 and np.mean(counts) >= 2
    assert len(labels) >= 3

    _, train = _build_dataset('mmdet', 'synthetic_coco_instance.py', 'train_dataloader',
                              coco_root)
    assert len(train) == 4
    item = train[0]
    assert item['inputs'].shape[0] == 3 and len(item['data_samples'].gt_instances) > 0


# ---------------------------------------------------------------- panoptic (mmdet)


def test_panoptic_png_matches_json(coco_root):
    mask_utils = pytest.importorskip('pycocotools.mask')
    n_void = 0
    for split in ('train', 'val'):
        ann_dir = coco_root / 'annotations'
        with open(ann_dir / f'panoptic_{split}2017.json') as f:
            pan = json.load(f)
        with open(ann_dir / f'instances_{split}2017.json') as f:
            ins = json.load(f)
        cats = {c['id']: c for c in pan['categories']}
        assert [c['name'] for c in pan['categories']] == list(
            syn.SYNTH_COCO_PANOPTIC_THING_CLASSES + syn.SYNTH_COCO_PANOPTIC_STUFF_CLASSES)
        for name, cid in syn.SYNTH_COCO_PANOPTIC_IDS.items():
            assert cats[cid]['name'] == name
            assert cats[cid]['isthing'] == int(name in syn.SYNTH_COCO_PANOPTIC_THING_CLASSES)
        ins_by_img = {}
        for a in ins['annotations']:
            ins_by_img.setdefault(a['image_id'], []).append(a)
        n_stuff = 0
        for ann in pan['annotations']:
            ids = _rgb2id(ann_dir / f'panoptic_{split}2017' / ann['file_name'])
            segs = {s['id']: s for s in ann['segments_info']}
            present = set(np.unique(ids).tolist())
            n_void += 0 in present
            assert present - {0} == set(segs)
            things = []
            for sid, s in segs.items():
                m = ids == sid
                assert s['area'] == m.sum() > 0
                ys, xs = np.nonzero(m)
                assert s['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
                assert s['iscrowd'] == 0
                if cats[s['category_id']]['isthing']:
                    things.append(m)
                else:
                    n_stuff += 1
            # the instances json describes the same visible thing masks
            inst_masks = [mask_utils.decode(a['segmentation']).astype(bool)
                          for a in ins_by_img[ann['image_id']]]
            assert len(inst_masks) == len(things)
            for a, b in zip(inst_masks, things):
                np.testing.assert_array_equal(a, b)
        assert n_stuff > 0
    assert n_void > 0, 'unlabelled clutter should be VOID (0) somewhere'


def _panoptic_val(coco_root, **overrides):
    return _build_dataset('mmdet', 'synthetic_coco_panoptic.py', 'val_dataloader', coco_root,
                          **overrides)


def test_panoptic_dataset_annotations(coco_root):
    # no pipeline: mmdet's LoadPanopticAnnotations needs panopticapi, the dataset does not
    things = syn.SYNTH_COCO_PANOPTIC_THING_CLASSES
    num_classes = len(things) + len(syn.SYNTH_COCO_PANOPTIC_STUFF_CLASSES)
    _, val = _panoptic_val(coco_root, pipeline=[])
    assert len(val) == 3
    assert val.metainfo['thing_classes'] == things
    with open(coco_root / 'annotations' / 'panoptic_val2017.json') as f:
        js = json.load(f)
    cat_name = {c['id']: c['name'] for c in js['categories']}
    classes = val.metainfo['classes']
    seen = set()
    for i, ann in enumerate(js['annotations']):
        info = val.get_data_info(i)
        assert info['img_id'] == ann['image_id']
        assert osp.isfile(info['seg_map_path']) and osp.isfile(info['img_path'])
        segs = info['segments_info']
        assert [s['id'] for s in segs] == [s['id'] for s in ann['segments_info']]
        for s, raw in zip(segs, ann['segments_info']):
            # contiguous label <-> real COCO id <-> class name agree
            assert classes[s['category']] == cat_name[raw['category_id']]
            assert s['is_thing'] == (s['category'] < len(things))
            seen.add(s['category'])
        assert len(info['instances']) == sum(s['is_thing'] for s in segs) >= 1
        assert all(0 <= x['bbox_label'] < len(things) for x in info['instances'])
    assert seen <= set(range(num_classes))
    assert seen & set(range(len(things))) and seen - set(range(len(things)))
    _, train = _build_dataset('mmdet', 'synthetic_coco_panoptic.py', 'train_dataloader',
                              coco_root, pipeline=[])
    assert len(train) == 4


def test_panoptic_pipeline(coco_root):
    pytest.importorskip('panopticapi')
    _, val = _panoptic_val(coco_root)
    things = syn.SYNTH_COCO_PANOPTIC_THING_CLASSES
    num_classes = len(val.metainfo['classes'])
    for i in range(len(val)):
        info = val.get_data_info(i)
        ds = val[i]['data_samples']
        sem = ds.gt_sem_seg.sem_seg.numpy()[0]
        assert set(np.unique(sem).tolist()) <= set(range(num_classes)) | {255}
        ids = _rgb2id(info['seg_map_path'])
        expected = np.full(ids.shape, 255)
        for s in info['segments_info']:
            expected[ids == s['id']] = s['category']
        np.testing.assert_array_equal(sem, expected)
        n_things = sum(s['is_thing'] for s in info['segments_info'])
        assert len(ds.gt_instances) == n_things
        assert (ds.gt_instances.labels < len(things)).all()

    _, train = _build_dataset('mmdet', 'synthetic_coco_panoptic.py', 'train_dataloader',
                              coco_root)
    item = train[0]
    assert item['data_samples'].gt_sem_seg.sem_seg.shape[-2:] == item['inputs'].shape[-2:]


def test_panoptic_metric_on_ground_truth_is_perfect(coco_root):
    pytest.importorskip('panopticapi')
    import torch
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from mmdet.registry import METRICS
    cfg, val = _panoptic_val(coco_root)
    ev = copy.deepcopy(cfg.val_evaluator)
    ev['ann_file'] = str(coco_root / 'annotations' / 'panoptic_val2017.json')
    ev['seg_prefix'] = str(coco_root / 'annotations' / 'panoptic_val2017')
    metric = METRICS.build(ev)
    metric.dataset_meta = val.metainfo
    num_classes = len(val.metainfo['classes'])
    for i in range(len(val)):
        ds = val[i]['data_samples']
        # rebuild a panoptic prediction from what the pipeline loaded
        sem = ds.gt_sem_seg.sem_seg[0].long()
        pan = torch.where(sem == 255, torch.full_like(sem, num_classes), sem)
        for k, (m, lab) in enumerate(zip(ds.gt_instances.masks.masks, ds.gt_instances.labels)):
            pan[torch.from_numpy(m.astype(bool))] = int(lab) + (k + 1) * INSTANCE_OFFSET
        sample = dict(img_id=ds.img_id, img_path=ds.img_path, ori_shape=ds.ori_shape,
                      pred_panoptic_seg=dict(sem_seg=pan[None]))
        metric.process({}, [sample])
    res = metric.evaluate(len(val))
    assert res['coco_panoptic/PQ'] == pytest.approx(100.0)
    assert res['coco_panoptic/PQ_th'] == pytest.approx(100.0)
    assert res['coco_panoptic/PQ_st'] == pytest.approx(100.0)


# ---------------------------------------------------------------- cls (mmpretrain)


def test_cls_imagenet_and_folder_mode(cls_root):
    k = len(syn.SYNTH_IMAGENET_CLASSES)
    with open(cls_root / 'meta' / 'train.txt') as f:
        lines = [ln.split() for ln in f.read().splitlines()]
    assert len(lines) == 3 * k
    for rel, lab in lines:
        assert rel.split('/')[0] == syn.SYNTH_IMAGENET_WNIDS[int(lab)]
        assert osp.isfile(cls_root / 'train' / rel)

    cfg, train = _build_dataset('mmpretrain', 'synthetic_imagenet.py', 'train_dataloader',
                                cls_root)
    assert train.ann_file.endswith(osp.join('meta', 'train.txt'))
    assert train.metainfo['classes'] == syn.SYNTH_IMAGENET_CLASSES
    ann_pairs = sorted((d['img_path'], d['gt_label']) for d in train.load_data_list())
    assert {lab for _, lab in ann_pairs} == set(range(k))

    from mmpretrain.datasets import CustomDataset, ImageNet
    folder = CustomDataset(data_root=str(cls_root), data_prefix='train', lazy_init=False)
    assert folder.metainfo['classes'] == syn.SYNTH_IMAGENET_WNIDS
    folder_pairs = sorted((d['img_path'], d['gt_label']) for d in folder.load_data_list())
    assert folder_pairs == ann_pairs

    explicit = ImageNet(data_root=str(cls_root), ann_file='meta/val.txt', data_prefix='val',
                        metainfo=dict(classes=syn.SYNTH_IMAGENET_CLASSES))
    assert len(explicit) == 2 * k

    _, val = _build_dataset('mmpretrain', 'synthetic_imagenet.py', 'val_dataloader', cls_root)
    assert len(val) == 2 * k
    labels = set()
    for i in range(len(val)):
        item = val[i]
        assert tuple(item['inputs'].shape) == (3, 56, 56)
        labels.add(int(item['data_samples'].gt_label))
    assert labels == set(range(k))
