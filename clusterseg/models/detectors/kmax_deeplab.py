"""kMaX-DeepLab detector: mmdet's MaskFormer with kMaX's fixed-size input (spec kmax.md §7.4).

The axial attention of the pixel decoder and the paper's recipe assume one input size for
training and testing, so every batch is zero-padded bottom/right (after normalisation) to
``input_size`` here, for ``loss`` and ``predict`` alike. mmdet's ``BatchFixedSizePad`` runs in
training only, and a pipeline ``Pad`` overwrites ``img_shape`` so the padding would not be cropped.
"""
import torch.nn.functional as F
from mmdet.models.detectors import MaskFormer

from clusterseg.registry import MODELS


@MODELS.register_module()
class KMaXDeepLab(MaskFormer):
    """MaskFormer-style panoptic segmentor with fixed-size batch padding.

    Args:
        input_size (tuple[int, int] | None): (H, W) every batch is padded to; None disables padding.
        **kwargs: :class:`mmdet.models.MaskFormer` arguments (backbone, panoptic_head,
            panoptic_fusion_head, train_cfg, test_cfg, data_preprocessor, init_cfg).
    """

    def __init__(self, *args, input_size=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_size = tuple(input_size) if input_size is not None else None

    def pad_to_input_size(self, batch_inputs, batch_data_samples):
        """Zero-pad (B, 3, H, W) to ``input_size``; raise if an image is larger."""
        if self.input_size is None:
            return batch_inputs
        H, W = batch_inputs.shape[-2:]
        size_h, size_w = self.input_size
        too_large = [ds.metainfo.get('img_shape', (H, W))[:2] for ds in batch_data_samples]
        too_large = [s for s in too_large if s[0] > size_h or s[1] > size_w]
        if H > size_h or W > size_w or too_large:
            raise ValueError(
                f'kMaX-DeepLab runs at the fixed input size {size_h}x{size_w} but got a batch of {H}x{W} '
                f'(images larger than the size: {too_large}). Resize so that images fit, e.g. '
                f"dict(type='Resize', scale=({size_w}, {size_h}), keep_ratio=True) for testing and a "
                f'RandomCrop of crop_size={size_h, size_w} for training, and use pad_size_divisor=1.')
        if (H, W) != (size_h, size_w):
            batch_inputs = F.pad(batch_inputs, (0, size_w - W, 0, size_h - H), value=0)
        for ds in batch_data_samples:
            ds.set_metainfo(dict(batch_input_shape=(size_h, size_w), pad_shape=(size_h, size_w)))
        return batch_inputs

    def loss(self, batch_inputs, batch_data_samples):
        batch_inputs = self.pad_to_input_size(batch_inputs, batch_data_samples)
        return super().loss(batch_inputs, batch_data_samples)

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        batch_inputs = self.pad_to_input_size(batch_inputs, batch_data_samples)
        return super().predict(batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self, batch_inputs, batch_data_samples=None):
        if batch_data_samples is not None:
            batch_inputs = self.pad_to_input_size(batch_inputs, batch_data_samples)
        return super()._forward(batch_inputs, batch_data_samples)

    def add_pred_to_datasample(self, data_samples, results_list):
        """Also stores ``sem_results`` (semantic map) as ``pred_sem_seg``."""
        for data_sample, pred in zip(data_samples, results_list):
            if 'pan_results' in pred:
                data_sample.pred_panoptic_seg = pred['pan_results']
            if 'ins_results' in pred:
                data_sample.pred_instances = pred['ins_results']
            if 'sem_results' in pred:
                data_sample.pred_sem_seg = pred['sem_results']
        return data_samples
