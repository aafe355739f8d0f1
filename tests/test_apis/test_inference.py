"""The stock OpenMMLab inferencers run clusterseg configs + checkpoints unchanged."""
import os
import os.path as osp

import numpy as np
import pytest

from tests.test_apis.conftest import config_path


def _saved_images(folder):
    return [osp.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.endswith(('.png', '.jpg'))]


def test_mmseg_inferencer(inference_files, tmp_path, fresh_scope):
    from mmseg.apis import MMSegInferencer
    img, ckpts = inference_files
    inferencer = MMSegInferencer(config_path('seg'), ckpts['seg'], device='cpu')
    out = inferencer(img, out_dir=str(tmp_path), return_vis=True)
    assert out['predictions'].shape == (128, 128)
    assert out['predictions'].max() < 8
    assert out['visualization'].shape == (128, 128, 3)
    assert _saved_images(tmp_path / 'vis') and _saved_images(tmp_path / 'pred')


@pytest.mark.parametrize('task', ['det', 'panoptic'])
def test_det_inferencer(inference_files, tmp_path, task, fresh_scope):
    from mmdet.apis import DetInferencer
    img, ckpts = inference_files
    inferencer = DetInferencer(config_path(task), ckpts[task], device='cpu', show_progress=False)
    out = inferencer(img, out_dir=str(tmp_path), return_vis=True, pred_score_thr=0.0,
                     no_save_pred=False)
    pred = out['predictions'][0]
    assert len(pred['labels']) == len(pred['scores']) == len(pred['bboxes'])
    if task == 'panoptic':
        assert osp.isfile(pred['panoptic_seg_path'])
    assert out['visualization'][0].shape == (128, 128, 3)
    assert _saved_images(tmp_path / 'vis')


def test_image_classification_inferencer(inference_files, tmp_path, fresh_scope):
    from mmpretrain.apis import ImageClassificationInferencer
    img, ckpts = inference_files
    inferencer = ImageClassificationInferencer(config_path('cls'), pretrained=ckpts['cls'], device='cpu')
    out = inferencer(img, show_dir=str(tmp_path))[0]
    assert len(out['pred_scores']) == 8
    assert 0 <= out['pred_label'] < 8
    assert abs(float(np.sum(out['pred_scores'])) - 1) < 1e-4
    assert _saved_images(tmp_path)


@pytest.mark.parametrize('task', ['seg', 'det', 'panoptic', 'cls'])
def test_predict_and_draw(inference_files, tmp_path, task):
    """clusterseg.apis picks the inferencer from the config's scope, for every task, one process."""
    import mmcv

    from clusterseg.apis import get_task, predict_and_draw
    img, ckpts = inference_files
    assert get_task(config_path(task)) == task
    out_file = str(tmp_path / 'vis.png')
    sample, vis = predict_and_draw(config_path(task), ckpts[task], img, out_file=out_file)
    key = {'seg': 'pred_sem_seg', 'det': 'pred_instances', 'panoptic': 'pred_panoptic_seg',
           'cls': 'pred_score'}[task]
    assert key in sample
    assert vis.shape[2] == 3 and mmcv.imread(out_file).shape == vis.shape


def test_get_task_rejects_unknown_scope():
    from mmengine.config import Config

    from clusterseg.apis import get_task
    with pytest.raises(ValueError, match='default_scope'):
        get_task(Config(dict(default_scope='mmocr', model=dict(type='X'))))


def test_mmseg_inferencer_without_importing_clusterseg(inference_files):
    """A plain mmseg script: the config's ``clusterseg.`` type prefix imports the package itself."""
    import sys

    from tests.conftest import run_tool
    img, ckpts = inference_files
    code = ('import sys\nfrom mmseg.apis import MMSegInferencer\n'
            f'inf = MMSegInferencer({config_path("seg")!r}, {ckpts["seg"]!r}, device="cpu")\n'
            f'print("SHAPE", inf({img!r})["predictions"].shape)\n')
    out = run_tool([sys.executable, '-c', code]).stdout
    assert 'SHAPE (128, 128)' in out
