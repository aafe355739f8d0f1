"""kMaX-DeepLab as an mmseg decode head (semantic segmentation, spec kmax.md §7.3).

The panoptic head with every class treated as stuff: one GT mask per class present in the image,
matched to the K clusters by the same PQ-style Hungarian matching and trained with the same
losses (instance discrimination becomes class-level discrimination). Inference is
``einsum(softmax(class)[..., :-1], softmax_K(mask))``: a softmax over clusters, not a sigmoid.
Runs inside mmseg's ``EncoderDecoder``; the fixed input size comes from
``SegDataPreProcessor(size=S, test_cfg=dict(size=S))`` and is checked here
(:func:`~clusterseg.models.layers.kmax_size.check_fixed_size`, the rule the detector pads by).
``cluster_maps`` (the cluster contract) is the panoptic head's.
"""
import torch

from clusterseg.registry import MODELS

from ..dense_heads.kmax_head import KMaXPanopticHead
from ..layers.kmax_size import check_fixed_size, kmax_align_corners, resize_like_kmax


@MODELS.register_module()
class KMaXSegHead(KMaXPanopticHead):
    """kMaX semantic segmentation head.

    Args:
        num_classes (int): semantic classes.
        ignore_index (int): label of unlabelled pixels (void for kMaX).
        align_corners (bool | None): read by mmseg's segmentor when it resizes the output to the
            original image. None (default): kMaX's rule, the parity of the padded width
            (``input_size[1]`` odd -> True), as the reference's post-processing; False without
            ``input_size``.
        input_size (tuple[int, int] | None): fixed (H, W) every batch must be padded to.
        **kwargs: :class:`KMaXPanopticHead` arguments (in_channels, num_queries, pixel_decoder,
            transformer_decoder, aux_semantic_head, assigner, loss, init_cfg).
    """

    def __init__(self, num_classes, ignore_index=255, align_corners=None, input_size=None, **kwargs):
        kwargs.pop('train_cfg', None), kwargs.pop('test_cfg', None)
        super().__init__(num_things_classes=0, num_stuff_classes=num_classes, **kwargs)
        self.out_channels = num_classes
        self.ignore_index = ignore_index
        self.input_size = tuple(input_size) if input_size is not None else None
        if align_corners is None:
            align_corners = self.input_size is not None and kmax_align_corners(self.input_size[1])
        self.align_corners = align_corners

    def _check_size(self, metas, shape):
        """mmseg pads before the model (the data preprocessor), so the batch must be at the size."""
        if self.input_size is None:
            return
        check_fixed_size(
            self.input_size, shape, [m['img_shape'] for m in metas], exact=True,
            hint=f'Use SegDataPreProcessor(size={self.input_size}, test_cfg=dict(size={self.input_size})) and '
                 f"resize images to fit, e.g. dict(type='Resize', scale={self.input_size[::-1]}, keep_ratio=True).")

    def _seg_to_gt(self, data_sample):
        sem = data_sample.gt_sem_seg.data[0]  # (H, W)
        labels = torch.unique(sem)
        labels = labels[(labels != self.ignore_index) & (labels < self.num_classes)]
        return labels.long(), sem[None] == labels[:, None, None]

    def loss(self, x, batch_data_samples, train_cfg=None):
        shape = batch_data_samples[0].gt_sem_seg.data.shape[-2:]  # padded with ignore_index
        self._check_size([ds.metainfo for ds in batch_data_samples], shape)
        outputs = self.forward_all(x)
        batch_gt = [self._seg_to_gt(ds) for ds in batch_data_samples]
        return self.loss_by_outputs(outputs, batch_gt, shape)

    def predict(self, x, batch_img_metas, test_cfg=None):
        """-> seg logits (B, num_classes, H_pad, W_pad); the segmentor removes padding and resizes."""
        meta = batch_img_metas[0]
        size = meta.get('pad_shape', meta['img_shape'])[:2]
        self._check_size(batch_img_metas, size)
        final = self.forward_all(x)['final']
        # align_corners by the padded image width (reference kmax_model.py post-processing)
        mask_prob = resize_like_kmax(final['mask_logits'], size, kmax_align_corners(size[1]))
        mask_prob = mask_prob.float().softmax(1)  # softmax over K
        cls_prob = final['class_logits'].float().softmax(-1)[..., :-1]
        return torch.einsum('bkc,bkhw->bchw', cls_prob, mask_prob)
