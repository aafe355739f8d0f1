"""The config tools/train.py saves in the work dir runs in every tool, demo and inferencer
(issue 8, item 8).

The tools swap checking transforms into the pipelines (``clusterseg.LoadImageFromFile``, ...);
the stock inferencers look for ``LoadImageFromFile`` by name, so a saved config with those in
failed in ``demo/image_demo.py`` ("LoadImageFromFile is not found in the test pipeline";
``KeyError: 'img_path'`` for classification). The saved config is now the one before the swap.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import data_options, run_tool, small_seg_options
from tests.test_apis.conftest import fresh_scope  # noqa: F401  (fixture)
from tests.test_apis.test_image_demo import load_demo

CASES = {
    'seg': ('configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py', 'ade',
            ['train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1',
             'train_dataloader.batch_size=2'] + small_seg_options(64)),
    'det': ('configs/demo/mask-rcnn_r18-w16_fpn_1xb4-12e_synthetic-coco-128x128.py', 'coco',
            ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=4']),
    'cls': ('configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py', 'imagenet',
            ['train_cfg.max_epochs=2', 'train_dataloader.batch_size=8',
             'train_dataloader.dataset.indices=8']),
}
CHECKING = ('clusterseg.LoadImageFromFile', 'clusterseg.LoadSegAnnotations',
            'clusterseg.CheckSegLabels', 'clusterseg.LoadPanopticAnnotations')


def _stock_inferencer(task, config, ckpt):
    if task == 'seg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(config, ckpt, device='cpu')
    if task == 'det':
        from mmdet.apis import DetInferencer
        return DetInferencer(config, ckpt, device='cpu', show_progress=False)
    from mmpretrain.apis import ImageClassificationInferencer
    return ImageClassificationInferencer(config, pretrained=ckpt, device='cpu')


@pytest.mark.parametrize('task', list(CASES))
def test_saved_config_runs_in_demo_inferencer_and_test_tool(task, synthetic_root, tmp_path,
                                                        fresh_scope):
    config, sub, opts = CASES[task]
    work = tmp_path / 'work'
    run_tool(['tools/train.py', config, '--work-dir', str(work), '--no-validate',
              '--cfg-options'] + data_options(task, synthetic_root / sub) + opts)
    saved = str(work / osp.basename(config))
    ckpt = open(work / 'last_checkpoint').read().strip()
    vis_copy = glob.glob(str(work / '*' / 'vis_data' / 'config.py'))
    for path in [saved] + vis_copy:
        text = open(path).read()
        assert not any(t in text for t in CHECKING), path  # the stock loaders, as written
    img = sorted(glob.glob(str(synthetic_root / sub / '**' / '*.[jJ][pP]*[gG]'),
                           recursive=True))[0]
    out_file = tmp_path / 'vis.png'
    load_demo('image_demo').main([img, saved, ckpt, '--out-file', str(out_file)])
    assert out_file.stat().st_size > 0
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(Config.fromfile(saved).default_scope):
        inferencer = _stock_inferencer(task, saved, ckpt)
        inferencer(img, **({'no_save_vis': True, 'no_save_pred': True} if task == 'det' else {}))
    if task == 'cls':  # and in tools/test.py, which puts its checks back in
        # the saved config holds the data roots of the run: nothing else to pass
        out = run_tool(['tools/test.py', saved, ckpt, '--work-dir', str(tmp_path / 'test'),
                        '--cfg-options', 'test_dataloader.num_workers=0',
                        'test_dataloader.persistent_workers=False'])
        assert '[clusterseg] metrics written to' in out.stdout
        assert 'clusterseg.LoadImageFromFile' in out.stdout + out.stderr  # the run it logged


def test_config_with_checking_transforms_runs_in_the_inferencers(tmp_path, fresh_scope):
    """A config saved by an earlier version (checking transforms in) still runs in
    ``clusterseg.apis``: they are swapped back before the stock inferencer sees the config."""
    import mmcv
    import numpy as np

    from clusterseg.apis import predict_and_draw
    from clusterseg.engine import add_input_checks
    img = str(tmp_path / 'img.png')
    mmcv.imwrite((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8), img)
    cfg = Config.fromfile(CASES['cls'][0])
    add_input_checks(cfg)
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'clusterseg.LoadImageFromFile'
    sample, vis = predict_and_draw(cfg, None, img)
    assert vis.ndim == 3 and 'pred_score' in sample
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'clusterseg.LoadImageFromFile'  # copy
