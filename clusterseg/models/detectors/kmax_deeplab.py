"""kMaX-DeepLab detector: mmdet's MaskFormer with kMaX's fixed-size input (spec kmax.md §7.4).

The axial attention of the pixel decoder and the paper's recipe assume one input size for
training and testing, so every batch is zero-padded bottom/right (after normalisation) to
``input_size`` here, for ``loss`` and ``predict`` alike. mmdet's ``BatchFixedSizePad`` runs in
training only, and a pipeline ``Pad`` overwrites ``img_shape`` so the padding would not be cropped.
The rule (:func:`~clusterseg.models.layers.kmax_size.pad_to_fixed_size`) is the one the semantic
head checks by; :meth:`KMaXDeepLab.cluster_maps` pads the same way.
"""
import torch
from mmdet.models.detectors import MaskFormer

from clusterseg.registry import MODELS

from ..layers.kmax_size import crop_to_extent, pad_to_fixed_size


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

    def pad_to_input_size(self, batch_inputs, batch_data_samples=()):
        """Zero-pad (B, 3, H, W) to ``input_size`` and record it in the samples' metainfo; raise
        if the batch or an image is larger."""
        if self.input_size is None:
            return batch_inputs
        size_h, size_w = self.input_size
        batch_inputs = pad_to_fixed_size(
            batch_inputs, self.input_size, [ds.metainfo['img_shape'] for ds in batch_data_samples
                                            if 'img_shape' in ds.metainfo],
            hint=f"Resize so that images fit, e.g. dict(type='Resize', scale=({size_w}, {size_h}), "
                 f'keep_ratio=True) for testing and a RandomCrop of crop_size={size_h, size_w} for '
                 'training, and use pad_size_divisor=1.')
        for ds in batch_data_samples:
            ds.set_metainfo(dict(batch_input_shape=(size_h, size_w), pad_shape=(size_h, size_w)))
        return batch_inputs

    @torch.no_grad()
    def cluster_maps(self, batch_inputs):
        """The cluster contract (:mod:`clusterseg.models.layers.cluster`) for the whole model.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised images, padded to ``input_size`` here
                as in :meth:`predict`.
        Returns:
            list[tuple[str, Tensor]]: the backbone's maps (where it clusters) and the panoptic
            head's k-means assignment (``'head'``), each (B, h, w) long and cropped back to the
            (H, W) batch passed in.
        """
        extent = batch_inputs.shape[-2:]
        x = self.pad_to_input_size(batch_inputs)
        maps = []
        if callable(getattr(self.backbone, 'cluster_maps', None)):
            maps += self.backbone.cluster_maps(x)
        maps += self.panoptic_head.cluster_maps(self.extract_feat(x))
        return [(name, crop_to_extent(index, extent, x.shape[-2:])) for name, index in maps]

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
