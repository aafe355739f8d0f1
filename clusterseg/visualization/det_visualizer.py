"""mmdet's ``DetLocalVisualizer`` that can draw an empty panoptic prediction."""
import numpy as np
from mmdet.visualization import DetLocalVisualizer as _MMDetDetLocalVisualizer

from clusterseg.registry import VISUALIZERS


@VISUALIZERS.register_module()
class DetLocalVisualizer(_MMDetDetLocalVisualizer):
    """mmdet 3.3.0's ``DetLocalVisualizer`` (same arguments and drawings) that also draws a panoptic
    map holding no segment.

    A panoptic prediction in which every pixel is VOID is valid (an untrained or very uncertain
    kMaX-DeepLab produces one, and mask-transformer heads drop low-confidence masks), but mmdet's
    ``_draw_panoptic_seg`` then fails with ``ValueError: need at least one array to stack``, which
    stops ``tools/test.py --show-dir``, the inferencers and the demos. Here such a map draws
    nothing and the image is returned as it is.
    """

    def _draw_panoptic_seg(self, image, panoptic_seg, classes, palette):
        data = panoptic_seg.sem_seg[0]
        ids = np.unique(data.cpu().numpy() if hasattr(data, 'cpu') else data)
        if 'label_names' in panoptic_seg:
            void = panoptic_seg.metainfo.get('ignore_index', len(panoptic_seg.metainfo['label_names']))
        else:
            void = len(classes)
        if not (ids != void).any():
            self.set_image(image)
            return self.get_image()
        return super()._draw_panoptic_seg(image, panoptic_seg, classes, palette)
