import os.path as osp

import numpy as np
import pytest

CONFIGS = {
    'seg': 'configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
    'det': 'configs/pacavit/mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py',
    'cls': 'configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py',
    'panoptic': 'configs/kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py',
}
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def config_path(task):
    return osp.join(REPO, CONFIGS[task])


@pytest.fixture(scope='session')
def inference_files(tmp_path_factory):
    """A square image (kMaX runs at a fixed square size) and an untrained checkpoint per task (built from the config, as a user's would be)."""
    import mmcv
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import clusterseg  # noqa: F401
    root = tmp_path_factory.mktemp('inference')
    img = (np.random.RandomState(0).rand(128, 128, 3) * 255).astype(np.uint8)
    img_path = str(root / 'demo.png')
    mmcv.imwrite(img, img_path)
    ckpts = {}
    for task in CONFIGS:
        cfg = Config.fromfile(config_path(task))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
        ckpts[task] = str(root / f'{task}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {'task': task}}, ckpts[task])
    return img_path, ckpts


@pytest.fixture
def fresh_scope(monkeypatch):
    """No default scope set, as in a fresh process: the stock inferencers expect to run in one
    (mmpretrain's builds its pipeline under whatever scope an earlier mmdet call left current)."""
    from collections import OrderedDict

    from mmengine.registry import DefaultScope
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())
