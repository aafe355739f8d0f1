"""Every config in configs/ parses and builds its model; the heads fit the backbone's outputs.

For the synthetic siblings (same models as the full recipes, small data) shapes are also checked
by running the network on a small image (mmseg / mmpretrain models, and the backbone + neck of
mmdet models), which catches heads whose ``in_channels`` do not fit.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from clusterseg.engine import adapt_to_device

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def _null_pretrained(node):
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' or (isinstance(node.get('init_cfg'), dict) and
                                                 node['init_cfg'].get('type') == 'Pretrained'):
            node['init_cfg'] = None
        node.pop('pretrained', None)
        for v in node.values():
            _null_pretrained(v)
    elif isinstance(node, list):
        for v in node:
            _null_pretrained(v)


def build(path):
    cfg = Config.fromfile(path)
    _null_pretrained(cfg.model)
    adapt_to_device(cfg, logger=lambda *a: None)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return cfg, registry.build(cfg.model).eval()


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, REPO) for p in CONFIGS])
def test_config_builds(path):
    cfg, model = build(path)
    assert cfg.default_scope in ('mmseg', 'mmdet', 'mmpretrain')
    assert cfg.get('train_dataloader') and cfg.get('test_evaluator') is not None
    if 'synthetic' not in osp.basename(path):
        return
    size = tuple(cfg.model.get('data_preprocessor', {}).get('size') or (64, 64))  # fixed-size models
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        if cfg.default_scope == 'mmseg':
            out = model.encode_decode(x, [dict(img_shape=size, pad_shape=size, ori_shape=size)])
            assert out.shape[:2] == (1, cfg.model.decode_head.num_classes)
        elif cfg.default_scope == 'mmpretrain':
            out = model.head(model.extract_feat(x)) if model.with_head else model.extract_feat(x)
            assert out.shape[-1] == cfg.model.head.num_classes
        else:
            feats = model.extract_feat(x) if hasattr(model, 'extract_feat') else model.backbone(x)
            assert len(feats) >= 1


def test_synthetic_class_counts_match_generator():
    from clusterseg.datasets import synthetic
    n = {'ade20k': len(synthetic.SYNTH_ADE20K_CLASSES), 'coco': len(synthetic.SYNTH_COCO_CLASSES),
         'imagenet': len(synthetic.SYNTH_IMAGENET_CLASSES)}
    checked = 0
    for path in CONFIGS:
        if 'synthetic' not in osp.basename(path):
            continue
        cfg = Config.fromfile(path)
        ds = cfg.train_dataloader.dataset
        classes = ds.get('metainfo', {}).get('classes')
        if 'synthetic-ade20k' in path:
            assert cfg.model.decode_head.num_classes == n['ade20k'] == len(classes), path
        elif 'synthetic-coco' in path and 'panoptic' not in path and cfg.model.get('roi_head'):
            assert cfg.model.roi_head.bbox_head.num_classes == n['coco'] == len(classes), path
        elif 'synthetic-imagenet' in path:
            assert cfg.model.head.num_classes == n['imagenet'] == len(classes), path
        else:
            continue
        checked += 1
    assert checked >= 3


# the ADE20K / COCO model bases every backbone shares: the head, the losses, the pre-processor
SHARED_MODEL_BASES = ('upernet_ade20k.py', 'pacahead_ade20k.py', 'mask-rcnn_fpn.py')
# configs that still replace a whole backbone dict, and why
BACKBONE_DELETE_ALLOWED = {
    # their base is the kMaX-DeepLab R50 model itself (the paper's), not a shared base
    'configs/kmax_deeplab/kmax-deeplab_convnext-t_32xb2-150k_coco-panoptic-1280x1280.py',
    'configs/kmax_deeplab/kmax-deeplab_pacavit-tiny_32xb2-150k_coco-panoptic-1280x1280.py',
    'configs/kmax_deeplab/kmax-deeplab_clustr-small_32xb2-150k_coco-panoptic-1280x1280.py',
    # a preset name (str) becomes an explicit arch dict
    'configs/demo/pacahead_pacavit-demo_1xb8-300it_synthetic-ade20k-128x128.py',
}


def test_shared_model_bases_leave_the_backbone_to_each_method():
    """No config needs ``_delete_=True`` to give its own backbone: the shared bases have none."""
    import re
    for name in SHARED_MODEL_BASES:
        cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', name))
        assert 'backbone' not in cfg.model, name
    swapping = {osp.relpath(p, REPO) for p in CONFIGS
                if re.search(r'backbone=dict\(\s*_delete_=True', open(p).read())}
    assert swapping == BACKBONE_DELETE_ALLOWED


@pytest.mark.parametrize('variant,channels', [('small', 576), ('base', 1152)])
def test_psvit_imagenet_variants_inherit_the_tiny_recipe(variant, channels):
    path = osp.join(REPO, 'configs', 'psvit', f'psvit-{variant}_8xb128-300e_in1k.py')
    tiny = Config.fromfile(osp.join(REPO, 'configs', 'psvit', 'psvit-tiny_8xb128-300e_in1k.py')).to_dict()
    cfg = Config.fromfile(path)
    assert cfg.filename and "_base_ = './psvit-tiny_8xb128-300e_in1k.py'" in open(path).read()
    assert cfg.model.backbone.arch == variant and cfg.model.head.in_channels == channels
    d = cfg.to_dict()
    d['model']['backbone']['arch'], d['model']['head']['in_channels'] = 'tiny', 288
    assert d == tiny  # everything else is the tiny recipe
