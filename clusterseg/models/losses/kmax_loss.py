"""kMaX-DeepLab's losses (spec kmax.md §3.3), all in fp32 at the final mask resolution.

* PQ-style class term: per-cluster CE (focal form with gamma 0, alpha 0.75 for non-void targets,
  0.25 for void) weighted by the matched dice (unmatched clusters: the share of their mask on void).
* PQ-style mask term: dice of softmax-over-clusters masks, weighted by the matched class prob.
* Mask-ID cross-entropy: per-pixel CE over the K clusters.
* Pixel-wise instance discrimination: contrastive loss between sampled pixel embeddings.
* Auxiliary semantic CE on sampled pixels.

:class:`KMaXLoss` takes the head's outputs and targets and owns the whole loop: one pixel sample
for instance discrimination shared by every output, the four terms for each deep-supervision output
(resized to the final masks) and the final one, then the semantic term on its own sample.

Target layout (built by the head, see ``KMaXPanopticHead.get_targets``): ``target_masks`` (B, K, N)
with the matched GT masks in their clusters' slots, ``target_labels`` (B, K) with void (= C) for
unmatched clusters, ``void`` (B, N) pixels covered by no GT mask, ``sem_gt`` (B, N) per-pixel
labels with :data:`SEMANTIC_VOID` where void.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from clusterseg.registry import MODELS

from ..layers.kmax_size import kmax_align_corners, resize_like_kmax

SEMANTIC_VOID = -1  # ``sem_gt`` label of pixels no GT mask covers; the semantic term skips them


def gumbel_topk(logits, k, generator=None):
    """Sample ``k`` indices per row without replacement, proportionally to ``softmax(logits)``.

    Args:
        logits (Tensor): (B, N).
    Returns:
        Tensor: (B, min(k, N)) indices.
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-10, 1 - 1e-10)
    return (logits - torch.log(-torch.log(u))).topk(min(k, logits.shape[1]), dim=1).indices


def pq_class_loss(class_logits, target_labels, weight, alpha=0.75):
    """PQ-style class term. class_logits (B, K, C+1), target_labels (B, K) (C = void), weight (B, K)."""
    void_label = class_logits.shape[-1] - 1
    ce = F.cross_entropy(class_logits.float().transpose(1, 2), target_labels, reduction='none')  # (B, K)
    a = torch.where(target_labels == void_label, 1 - alpha, alpha)
    loss = ce * a * weight
    return (loss.sum(1) / (weight > 0).sum(1).clamp(min=1)).mean()


def pq_dice_loss(mask_logits, target_masks, void, weight, alpha=0.75, smooth=1.0):
    """PQ-style mask term. mask_logits (B, K, N), target_masks (B, K, N), void (B, N), weight (B, K)."""
    K = mask_logits.shape[1]
    prob = mask_logits.float().softmax(1) * (~void).unsqueeze(1).float()
    inter = (prob * target_masks).sum(-1)
    dice = (2 * inter + smooth) / (prob.sum(-1) + target_masks.sum(-1) + smooth)  # (B, K)
    return ((1 - dice) * weight).sum(1).mul(alpha / K).mean()


def mask_id_cross_entropy(mask_logits, target_masks, void):
    """Per-pixel CE over the K clusters, averaged over each image's non-void pixels."""
    log_prob = mask_logits.float().log_softmax(1)
    loss = -(target_masks * log_prob).sum(1) * (~void).float()  # (B, N)
    return (loss.sum(1) / (~void).sum(1).clamp(min=1)).mean()


def instance_discrimination_loss(pixel_feature, target_masks, index, temperature=0.3):
    """Contrastive pixel loss: pixels of the same GT mask are positives.

    Args:
        pixel_feature (Tensor): (B, E, N) L2-normalised embeddings.
        target_masks (Tensor): (B, K, N) cluster-slot targets (any slot order).
        index (Tensor): (B, S) sampled pixel indices.
        temperature (float): logit temperature (0.3).
    """
    losses = []
    for feat, target, idx in zip(pixel_feature.float(), target_masks.float(), index):
        f = feat[:, idx]  # (E, S)
        g = target[:, idx]  # (K, S)
        same = g.t() @ g  # (S, S)
        rows = same.sum(1)
        valid = rows > 0
        soft_target = same / rows.clamp(min=1e-12).unsqueeze(1)
        logits = f.t() @ f / temperature
        loss = -(soft_target * logits.log_softmax(-1)).sum(-1)  # (S,)
        losses.append(loss[valid].sum() / valid.sum().clamp(min=1))
    return torch.stack(losses).mean()


def aux_semantic_loss(sem_logits, sem_gt, index, ignore_index):
    """CE of the auxiliary semantic logits (B, C+1, N) at sampled pixels; ``ignore_index`` skipped."""
    logits = torch.gather(sem_logits.float(), 2, index.unsqueeze(1).expand(-1, sem_logits.shape[1], -1))
    gt = torch.gather(sem_gt, 1, index)  # (B, S)
    loss = F.cross_entropy(logits, gt, ignore_index=ignore_index, reduction='none')
    valid = gt != ignore_index
    return (loss.sum(1) / valid.sum(1).clamp(min=1)).mean()


def resize_prediction(pred, size):
    """One deep-supervision output resized to the final masks' ``size`` (h, w); ``align_corners`` by
    the parity of the target *height*, as the reference's ``_set_aux_loss``."""
    align_corners = kmax_align_corners(size[0])
    return dict(class_logits=pred['class_logits'],
                mask_logits=resize_like_kmax(pred['mask_logits'], size, align_corners),
                pixel_feature=resize_like_kmax(pred['pixel_feature'], size, align_corners))


@MODELS.register_module()
class KMaXLoss(nn.Module):
    """All kMaX loss terms with the paper's weights (3.0 / 3.0 / 0.3 / 1.0 / 1.0).

    Args:
        class_weight, dice_weight, mask_weight, insdis_weight, aux_semantic_weight (float): weights.
        focal_alpha (float): alpha of the PQ-style terms (0.75).
        no_object_weight (float): floor of the dynamic weights (1e-5).
        insdis_temperature (float): temperature of the instance-discrimination logits (0.3).
        insdis_sample_k (int): pixels sampled per image for instance discrimination (4096).
        insdis_sample_temperature (float): sampling temperature on log inverse mask area (1.5 COCO).
        aux_semantic_sample_k (int): pixels for the aux semantic loss (4096; 0 = all pixels).
        aux_semantic_sample_temperature (float): its sampling temperature (2.0).
    """

    def __init__(self, class_weight=3.0, dice_weight=3.0, mask_weight=0.3, insdis_weight=1.0,
                 aux_semantic_weight=1.0, focal_alpha=0.75, no_object_weight=1e-5, insdis_temperature=0.3,
                 insdis_sample_k=4096, insdis_sample_temperature=1.5, aux_semantic_sample_k=4096,
                 aux_semantic_sample_temperature=2.0):
        super().__init__()
        self.class_weight, self.dice_weight, self.mask_weight = class_weight, dice_weight, mask_weight
        self.insdis_weight, self.aux_semantic_weight = insdis_weight, aux_semantic_weight
        self.focal_alpha, self.no_object_weight = focal_alpha, no_object_weight
        self.insdis_temperature = insdis_temperature
        self.insdis_sample_k, self.insdis_sample_temperature = insdis_sample_k, insdis_sample_temperature
        self.aux_semantic_sample_k = aux_semantic_sample_k
        self.aux_semantic_sample_temperature = aux_semantic_sample_temperature

    def forward(self, outputs, targets):
        """All loss terms of one batch.

        Args:
            outputs (dict): the head's outputs (``KMaXPanopticHead.forward_all``): ``final`` and each
                of ``aux`` (list) a prediction dict (``class_logits`` (B, K, C+1), ``mask_logits``
                (B, K, h_i, w_i), ``pixel_feature`` (B, E, h_i, w_i)); ``sem_logits``
                (B, C+1, h', w') or None. The final masks set the loss resolution (h, w); the other
                outputs are resized to it.
            targets (dict): see the module doc, at the final masks' resolution (N = h * w), plus
                ``matched`` (B, K) bool, ``matched_dice`` (B, K), ``matched_class_prob`` (B, K),
                ``inverse_area`` (B, N).
        Returns:
            dict: ``d{i}.loss_{cls,dice,mask,insdis}`` for the i-th aux output, ``loss_{cls,dice,
            mask,insdis}`` for the final one and ``loss_aux_sem`` when ``sem_logits`` is given.
        """
        final = outputs['final']
        size = tuple(final['mask_logits'].shape[-2:])
        num_pixels = targets['void'].shape[1]
        if size[0] * size[1] != num_pixels:
            raise ValueError(f'KMaXLoss: the targets have {num_pixels} pixels per image but the final '
                             f'mask logits are {size[0]}x{size[1]}; build the targets at their resolution')
        # one pixel sample for instance discrimination, shared by every output
        insdis_index = self._sample(targets, self.insdis_sample_k, self.insdis_sample_temperature)
        losses = {}
        for i, aux in enumerate(outputs.get('aux') or []):
            for k, v in self.loss_single(resize_prediction(aux, size), targets, insdis_index).items():
                losses[f'd{i}.{k}'] = v
        losses.update(self.loss_single(final, targets, insdis_index))
        if outputs.get('sem_logits') is not None:
            # at the final masks' resolution (the reference strides the GT instead): a no-op resize at OS4
            sem_logits = resize_like_kmax(outputs['sem_logits'], size, kmax_align_corners(size[0]))
            losses['loss_aux_sem'] = self.loss_semantic(sem_logits, targets)
        return losses

    def _sample(self, targets, k, temperature):
        """Gumbel-top-k pixel sample favouring small masks; void pixels last; k <= 0: all. -> (B, S)."""
        if k <= 0:
            n = targets['void'].shape[1]
            return torch.arange(n, device=targets['void'].device).expand(targets['void'].shape[0], -1)
        logits = torch.log(targets['inverse_area'].clamp(min=1e-12)) * temperature
        logits = logits.masked_fill(targets['void'], -99999.)
        return gumbel_topk(logits, k)

    def loss_single(self, pred, targets, insdis_index):
        """The four loss terms of one output.

        Args:
            pred (dict): ``class_logits`` (B, K, C+1), ``mask_logits`` (B, K, h, w),
                ``pixel_feature`` (B, E, h, w) at the targets' resolution.
            targets (dict): see :meth:`forward`.
            insdis_index (Tensor): (B, S) pixels for instance discrimination.
        Returns:
            dict: ``loss_cls``, ``loss_dice``, ``loss_mask``, ``loss_insdis`` (weighted).
        """
        mask_logits = pred['mask_logits'].flatten(2).float()  # (B, K, N)
        void = targets['void']
        matched = targets['matched']
        with torch.no_grad():
            prob = mask_logits.softmax(1)
            void_share = (prob * void.unsqueeze(1)).sum(-1) / prob.sum(-1).clamp(min=1e-12)  # (B, K)
            class_w = torch.where(matched, targets['matched_dice'], void_share).clamp(min=self.no_object_weight)
            dice_w = torch.where(matched, targets['matched_class_prob'].clamp(min=self.no_object_weight),
                                 torch.zeros_like(void_share))
        return dict(
            loss_cls=self.class_weight * pq_class_loss(pred['class_logits'], targets['target_labels'], class_w,
                                                       self.focal_alpha),
            loss_dice=self.dice_weight * pq_dice_loss(mask_logits, targets['target_masks'], void, dice_w,
                                                      self.focal_alpha),
            loss_mask=self.mask_weight * mask_id_cross_entropy(mask_logits, targets['target_masks'], void),
            loss_insdis=self.insdis_weight * instance_discrimination_loss(
                pred['pixel_feature'].flatten(2), targets['target_masks'], insdis_index, self.insdis_temperature))

    def loss_semantic(self, sem_logits, targets):
        """Weighted aux semantic loss on its own pixel sample. sem_logits (B, C+1, h, w) at the
        targets' resolution; ``targets['sem_gt']`` (B, N), :data:`SEMANTIC_VOID` skipped."""
        index = self._sample(targets, self.aux_semantic_sample_k, self.aux_semantic_sample_temperature)
        return self.aux_semantic_weight * aux_semantic_loss(sem_logits.flatten(2), targets['sem_gt'], index,
                                                            SEMANTIC_VOID)
