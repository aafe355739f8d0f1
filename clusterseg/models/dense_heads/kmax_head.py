"""kMaX-DeepLab panoptic head for mmdet (Yu et al., ECCV 2022, spec kmax.md).

pixel decoder -> kMaX transformer decoder (k-means cross-attention, 128 cluster centres) ->
per-cluster class logits and mask logits at stride 4, plus an auxiliary semantic decoder for
training. Follows mmdet's MaskFormer head contract: ``forward`` -> per-layer (cls, mask) lists,
``loss(x, batch_data_samples)``, ``predict(x, batch_data_samples)`` -> (cls, mask) of the last
output at the padded input size; :class:`KMaXFusionHead` turns those into panoptic/instance/semantic
results.

Matching is done once per image on the final output (PQ-style similarity, :class:`KMaXHungarianAssigner`)
and reused for the six per-layer outputs; ground truth is subsampled by strided slicing. The head
builds the targets; :class:`KMaXLoss` takes ``(outputs, targets)`` and owns the loop over the
outputs, the pixel sampling and the semantic term. ``cluster_maps`` is the cluster contract.
"""
import torch
import torch.nn.functional as F
from mmdet.models.utils import preprocess_panoptic_gt
from mmengine.model import BaseModule

from clusterseg.registry import MODELS, TASK_UTILS

from ..layers.kmax_blocks import SemanticPredictor
from ..layers.kmax_size import kmax_align_corners, resize_like_kmax
from ..layers.kmeans_attn import KMaXTransformerDecoder
from ..losses.kmax_loss import SEMANTIC_VOID


@MODELS.register_module()
class KMaXPanopticHead(BaseModule):
    """kMaX head.

    Args:
        in_channels (list[int]): backbone channels, low stride first ([256, 512, 1024, 2048] for R50).
        num_things_classes (int): things (labels 0 .. T-1).
        num_stuff_classes (int): stuff (labels T .. C-1).
        num_queries (int): K cluster centres (128).
        pixel_decoder (dict): :class:`KMaXPixelDecoder` config; ``in_channels`` defaults to
            ``in_channels`` reversed.
        transformer_decoder (dict): :class:`KMaXTransformerDecoder` keyword arguments other than
            ``in_channels``, ``final_channels``, ``num_queries``, ``num_classes`` (paper: layers
            [2, 2, 2], drop_path 0.2 COCO / 0.0 ADE20K).
        aux_semantic_head (dict | None): :class:`SemanticPredictor` keyword arguments, or None.
        assigner (dict): matcher config.
        loss (dict): :class:`KMaXLoss` config.
        train_cfg, test_cfg (dict | None): injected by the detector; unused by the head itself.
        init_cfg (dict | None): MMEngine init config.
    """

    def __init__(self, in_channels=(256, 512, 1024, 2048), num_things_classes=80, num_stuff_classes=53,
                 num_queries=128, pixel_decoder=dict(type='clusterseg.KMaXPixelDecoder'),
                 transformer_decoder=dict(), aux_semantic_head=dict(),
                 assigner=dict(type='clusterseg.KMaXHungarianAssigner'), loss=dict(type='clusterseg.KMaXLoss'),
                 train_cfg=None, test_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.num_queries = num_queries
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        in_channels = list(in_channels)
        pixel_decoder = dict(pixel_decoder)
        pixel_decoder.setdefault('in_channels', in_channels[::-1])
        self.pixel_decoder = MODELS.build(pixel_decoder)
        dec_channels = self.pixel_decoder.out_channels  # [OS32, OS16, OS8, OS4]
        self.transformer_decoder = KMaXTransformerDecoder(
            in_channels=dec_channels[:-1], final_channels=dec_channels[-1], num_queries=num_queries,
            num_classes=self.num_classes, **transformer_decoder)
        if aux_semantic_head is not None:
            # raw backbone res5, res3, res2
            self.aux_semantic_head = SemanticPredictor(
                (in_channels[-1], in_channels[1], in_channels[0]), self.num_classes + 1, **aux_semantic_head)
        else:
            self.aux_semantic_head = None
        self.assigner = TASK_UTILS.build(assigner)
        self.criterion = MODELS.build(loss)

    # ------------------------------------------------------------------ forward
    def forward_all(self, x):
        """x: backbone features low stride first -> dict(final, aux (list), sem_logits or None)."""
        multi_scale, final_feat = self.pixel_decoder(x)
        final, aux = self.transformer_decoder(multi_scale, final_feat)
        sem_logits = None
        if self.training and self.aux_semantic_head is not None:
            sem_logits = self.aux_semantic_head([x[-1], x[1], x[0]])
        return dict(final=final, aux=aux, sem_logits=sem_logits)

    def forward(self, x, batch_data_samples=None):
        """-> (list of class logits (B, K, C+1), list of mask logits (B, K, h, w)), aux first, final last."""
        out = self.forward_all(x)
        preds = out['aux'] + [out['final']]
        return [p['class_logits'] for p in preds], [p['mask_logits'] for p in preds]

    @torch.no_grad()
    def cluster_maps(self, x):
        """The cluster contract (:mod:`clusterseg.models.layers.cluster`) for backbone features ``x``
        (low stride first, as :meth:`forward` takes them) -> ``[('head', (B, h, w) long)]``: each
        pixel's k-means cluster, the argmax over the K cluster centres of the final mask logits
        (stride 4 of the input), i.e. the hard assignment a k-means step makes from them."""
        multi_scale, final_feat = self.pixel_decoder(x)
        final, _ = self.transformer_decoder(multi_scale, final_feat)
        return [('head', final['mask_logits'].argmax(1))]  # (B, h, w)

    # ------------------------------------------------------------------ targets
    def _gt_masks_labels(self, data_sample):
        """-> (labels (M,), masks (M, h, w) bool) at the sample's (possibly padded) GT size."""
        gt_instances = data_sample.gt_instances
        sem = data_sample.gt_sem_seg.sem_seg if 'gt_sem_seg' in data_sample else None
        labels, masks = preprocess_panoptic_gt(gt_instances.labels, gt_instances.masks, sem,
                                               self.num_things_classes, self.num_stuff_classes)
        return labels, masks.bool()

    def get_targets(self, final, batch_gt, input_shape):
        """Match on the final output and build the K-slot targets at mask resolution.

        Args:
            final (dict): final prediction (``class_logits`` (B, K, C+1), ``mask_logits`` (B, K, h, w)).
            batch_gt (list[tuple]): per image (labels (M,), masks (M, H_i, W_i) bool), masks aligned
                to the top-left of the padded input.
            input_shape (tuple): padded input (H, W).
        Returns:
            dict of target tensors (see :class:`KMaXLoss`), incl. ``sem_gt`` (B, N) with
            ``SEMANTIC_VOID`` where void.
        """
        class_logits, mask_logits = final['class_logits'].detach(), final['mask_logits'].detach()
        B, K, h, w = mask_logits.shape
        N = h * w
        device = mask_logits.device
        # the stride of the mask logits: 4 for 1281 -> 321 (odd sizes keep the first and last pixel),
        # 128 -> 32 and 1280 -> 320 alike; (H - 1) / (h - 1) is exact where H / h is not
        stride = max(1, round((input_shape[0] - 1) / max(h - 1, 1)))
        t = dict(target_masks=torch.zeros(B, K, N, device=device),
                 target_labels=torch.full((B, K), self.num_classes, dtype=torch.long, device=device),
                 matched=torch.zeros(B, K, dtype=torch.bool, device=device),
                 matched_dice=torch.zeros(B, K, device=device),
                 matched_class_prob=torch.zeros(B, K, device=device),
                 inverse_area=torch.zeros(B, N, device=device),
                 sem_gt=torch.full((B, N), SEMANTIC_VOID, dtype=torch.long, device=device))
        for b, (labels, masks) in enumerate(batch_gt):
            # strided slicing (not nearest interpolation), then fit to the prediction's size
            masks = masks[:, ::stride, ::stride][:, :h, :w].float()
            masks = F.pad(masks, (0, w - masks.shape[-1], 0, h - masks.shape[-2])).flatten(1)  # (M, N)
            keep = masks.sum(1) > 0
            labels, masks = labels[keep].to(device), masks[keep].to(device)
            if len(labels) == 0:
                continue
            overlap = masks.sum(0).clamp(min=1)
            masks = masks / overlap  # each pixel sums to <= 1
            void = masks.sum(0) < 0.5
            query, dice, class_prob = self.assigner.assign(class_logits[b], mask_logits[b].flatten(1), labels,
                                                           masks, void)
            t['target_masks'][b, query] = masks
            t['target_labels'][b, query] = labels
            t['matched'][b, query] = True
            t['matched_dice'][b, query] = dice
            t['matched_class_prob'][b, query] = class_prob
            t['inverse_area'][b] = (masks * (N / masks.sum(1, keepdim=True))).sum(0)
            t['sem_gt'][b] = torch.where(void, torch.full_like(t['sem_gt'][b], SEMANTIC_VOID),
                                         labels[masks.argmax(0)])
        t['void'] = t['target_masks'].sum(1) < 0.5
        return t

    # ------------------------------------------------------------------ loss / predict
    def loss_by_outputs(self, outputs, batch_gt, input_shape):
        """Targets from the final output, then :class:`KMaXLoss` over every output.

        Args:
            outputs (dict): :meth:`forward_all`'s output.
            batch_gt (list[tuple]): per image (labels (M,), masks (M, H_i, W_i) bool).
            input_shape (tuple): padded input (H, W).
        """
        return self.criterion(outputs, self.get_targets(outputs['final'], batch_gt, input_shape))

    def loss(self, x, batch_data_samples):
        outputs = self.forward_all(x)
        batch_gt = [self._gt_masks_labels(ds) for ds in batch_data_samples]
        return self.loss_by_outputs(outputs, batch_gt, batch_data_samples[0].batch_input_shape)

    def predict(self, x, batch_data_samples):
        """-> (class logits (B, K, C+1), mask logits (B, K, H, W) at the padded input size)."""
        final = self.forward_all(x)['final']
        size = batch_data_samples[0].batch_input_shape
        # post-processing: align_corners by the padded image width (reference kmax_model.py)
        return final['class_logits'], resize_like_kmax(final['mask_logits'], size, kmax_align_corners(size[1]))
