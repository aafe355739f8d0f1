"""clusterseg.DetLocalVisualizer draws an all-VOID panoptic prediction (mmdet 3.3.0's raises)."""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

from clusterseg.visualization import DetLocalVisualizer

CLASSES = ('person', 'car', 'road')


def _sample(pan):
    s = DetDataSample()
    s.pred_panoptic_seg = PixelData(sem_seg=torch.as_tensor(pan)[None])
    return s


def test_empty_panoptic_prediction_is_drawn(tmp_path):
    from mmdet.visualization import DetLocalVisualizer as MMDetVisualizer
    img = (np.random.RandomState(0).rand(32, 40, 3) * 255).astype(np.uint8)
    void = np.full((32, 40), len(CLASSES), dtype=np.int64)  # every pixel VOID
    meta = dict(classes=CLASSES, palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    ref = MMDetVisualizer(name='ref_vis')
    ref.dataset_meta = meta
    with pytest.raises(ValueError, match='need at least one array'):
        ref.add_datasample('x', img, _sample(void), draw_gt=False)
    vis = DetLocalVisualizer(name='cs_vis')
    vis.dataset_meta = meta
    vis.add_datasample('x', img, _sample(void), draw_gt=False)
    assert np.array_equal(vis.get_image(), img)
    # a map with segments draws exactly as mmdet's
    pan = void.copy()
    pan[4:20, 5:30] = 1 + 7 * 1000  # car, instance 7
    pan[20:, :] = 2  # road (stuff)
    ref.add_datasample('x', img, _sample(pan), draw_gt=False)
    vis.add_datasample('x', img, _sample(pan), draw_gt=False)
    assert np.array_equal(vis.get_image(), ref.get_image())
    assert not np.array_equal(vis.get_image(), img)
