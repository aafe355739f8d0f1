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
