"""kMaX mask-wise merging (spec kmax.md §3.4) in mmdet's panoptic / instance / semantic output formats.

Unlike mmdet's ``MaskFormerFusionHead`` (sigmoid masks, per-pixel argmax), kMaX takes a softmax
over the K clusters, binarises each cluster's mask at ``pixel_confidence_threshold``, orders the
clusters by class prob x mask score and pastes confident, mostly-unoccupied masks in that order.
Panoptic ids are ``label + instance_id * INSTANCE_OFFSET`` for things, ``label`` for stuff and
``num_classes`` for void, which is what ``CocoPanopticMetric`` reads.
"""
import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads.panoptic_fusion_heads import BasePanopticFusionHead
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData, PixelData

from clusterseg.registry import MODELS

from ..layers.kmax_size import kmax_align_corners


@MODELS.register_module()
class KMaXFusionHead(BasePanopticFusionHead):
    """kMaX post-processing.

    ``test_cfg`` keys (COCO defaults): ``panoptic_on`` (True), ``instance_on`` (False),
    ``semantic_on`` (False), ``pixel_confidence_threshold`` (0.4), ``class_threshold_thing`` (0.7),
    ``class_threshold_stuff`` (0.5), ``overlap_threshold`` (0.8), ``reorder_class_weight`` (1.0),
    ``reorder_mask_weight`` (1.0), ``max_per_image`` (100, instances).
    """

    def __init__(self, num_things_classes=80, num_stuff_classes=53, test_cfg=None, init_cfg=None, **kwargs):
        super().__init__(num_things_classes=num_things_classes, num_stuff_classes=num_stuff_classes,
                         test_cfg=test_cfg, loss_panoptic=None, init_cfg=init_cfg, **kwargs)

    def loss(self, **kwargs):
        """The fusion head has no loss."""
        return dict()

    def _cfg(self, key, default):
        return (self.test_cfg or {}).get(key, default)

    def _cluster_scores(self, mask_cls, mask_pred):
        """-> class prob (K,), label (K,), softmax-over-K masks (K, H, W), binary masks, mask score (K,)."""
        cls_prob, cls_label = mask_cls.float().softmax(-1)[:, :-1].max(-1)
        mask_prob = mask_pred.float().softmax(0)
        binary = mask_prob > self._cfg('pixel_confidence_threshold', 0.4)
        area = binary.flatten(1).sum(1)
        mask_score = (mask_prob * binary).flatten(1).sum(1) / area.clamp(min=1)
        return cls_prob, cls_label, mask_prob, binary, mask_score

    def panoptic_postprocess(self, mask_cls, mask_pred):
        """mask_cls (K, C+1), mask_pred (K, H, W) logits -> PixelData(sem_seg=(1, H, W) int32 ids)."""
        cls_prob, cls_label, _, binary, mask_score = self._cluster_scores(mask_cls, mask_pred)
        reorder = (cls_prob ** self._cfg('reorder_class_weight', 1.0) *
                   mask_score ** self._cfg('reorder_mask_weight', 1.0))
        thr_thing = self._cfg('class_threshold_thing', 0.7)
        thr_stuff = self._cfg('class_threshold_stuff', 0.5)
        overlap = self._cfg('overlap_threshold', 0.8)
        H, W = mask_pred.shape[-2:]
        panoptic = torch.full((H, W), self.num_classes, dtype=torch.int32, device=mask_pred.device)
        occupied = torch.zeros((H, W), dtype=torch.bool, device=mask_pred.device)
        areas = binary.flatten(1).sum(1).tolist()
        instance_id = 1
        for k in reorder.argsort(descending=True).tolist():
            label = int(cls_label[k])
            is_thing = label < self.num_things_classes
            if areas[k] == 0 or cls_prob[k] <= (thr_thing if is_thing else thr_stuff):
                continue
            new = binary[k] & ~occupied
            if new.sum().item() <= overlap * areas[k]:
                continue
            if is_thing:
                panoptic[new] = label + instance_id * INSTANCE_OFFSET
                instance_id += 1
            else:
                panoptic[new] = label  # all segments of one stuff class share an id
            occupied |= new
        return PixelData(sem_seg=panoptic[None])

    def instance_postprocess(self, mask_cls, mask_pred):
        """Top-k (cluster, class) pairs; thing classes only when panoptic is on."""
        max_per_image = self._cfg('max_per_image', 100)
        K = mask_cls.shape[0]
        scores = mask_cls.float().softmax(-1)[:, :-1]  # (K, C)
        labels = torch.arange(self.num_classes, device=mask_cls.device).repeat(K)
        top_scores, top_idx = scores.flatten().topk(min(max_per_image, scores.numel()), sorted=False)
        labels = labels[top_idx]
        query = top_idx // self.num_classes
        mask_prob = mask_pred.float().softmax(0)[query]
        if self._cfg('panoptic_on', True):
            is_thing = labels < self.num_things_classes
            top_scores, labels, mask_prob = top_scores[is_thing], labels[is_thing], mask_prob[is_thing]
        binary = mask_prob > self._cfg('pixel_confidence_threshold', 0.4)
        mask_score = (mask_prob * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
        results = InstanceData()
        results.bboxes = mask2bbox(binary)
        results.labels = labels
        results.scores = top_scores * mask_score
        results.masks = binary
        return results

    def semantic_postprocess(self, mask_cls, mask_pred):
        """einsum of class probs (void dropped) and softmax-over-K masks -> PixelData(sem_seg (1, H, W))."""
        sem = torch.einsum('kc,khw->chw', mask_cls.float().softmax(-1)[:, :-1], mask_pred.float().softmax(0))
        return PixelData(sem_seg=sem.argmax(0)[None], seg_logits=sem)

    def predict(self, mask_cls_results, mask_pred_results, batch_data_samples, rescale=False, **kwargs):
        """Per image: crop the padding, optionally resize to ``ori_shape``, post-process.

        Returns:
            list[dict]: ``pan_results`` / ``ins_results`` / ``sem_results`` per image as enabled.
        """
        results = []
        for mask_cls, mask_pred, ds in zip(mask_cls_results, mask_pred_results, batch_data_samples):
            h, w = ds.metainfo['img_shape'][:2]
            # the reference (kmax_model.py) resizes with align_corners by the padded image width
            align_corners = kmax_align_corners(mask_pred.shape[-1])
            mask_pred = mask_pred[:, :h, :w]
            if rescale:
                ori_h, ori_w = ds.metainfo['ori_shape'][:2]
                if (ori_h, ori_w) != (h, w):
                    mask_pred = F.interpolate(mask_pred[None], size=(ori_h, ori_w), mode='bilinear',
                                              align_corners=align_corners)[0]
            result = dict()
            if self._cfg('panoptic_on', True):
                result['pan_results'] = self.panoptic_postprocess(mask_cls, mask_pred)
            if self._cfg('instance_on', False):
                result['ins_results'] = self.instance_postprocess(mask_cls, mask_pred)
            if self._cfg('semantic_on', False):
                result['sem_results'] = self.semantic_postprocess(mask_cls, mask_pred)
            results.append(result)
        return results
