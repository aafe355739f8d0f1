"""kMaX's Hungarian matcher (spec kmax.md §3.2): maximise the PQ-style similarity dice x class prob.

Masks are compared through a softmax over the K clusters (mask-ID softmax, not sigmoid) with void
pixels zeroed, on the full mask-resolution maps (no point sampling). The matched dice and class
probability are returned, detached: they become the PQ-style loss weights.
"""
import torch
from scipy.optimize import linear_sum_assignment

from clusterseg.registry import TASK_UTILS


def pq_similarity(class_logits, mask_logits, gt_labels, gt_masks, void=None, eps=1e-5):
    """Dice and class-probability similarity between K predictions and M ground truths.

    Args:
        class_logits (Tensor): (K, C+1), last column void.
        mask_logits (Tensor): (K, N).
        gt_labels (Tensor): (M,) in [0, C).
        gt_masks (Tensor): (M, N) binary (or soft) masks.
        void (Tensor | None): (N,) bool, pixels with no GT; zeroed in the predicted masks.
    Returns:
        tuple[Tensor, Tensor]: dice (K, M), class probability (K, M), both fp32.
    """
    with torch.autocast(device_type=mask_logits.device.type, enabled=False):
        mask_prob = mask_logits.float().softmax(dim=0)  # (K, N) softmax over clusters
        if void is not None:
            mask_prob = mask_prob * (~void).float()
        gt = gt_masks.float()
        inter = mask_prob @ gt.t()  # (K, M)
        denom = (mask_prob.sum(1, keepdim=True) + gt.sum(1)[None]) / 2 + eps
        dice = inter / denom
        class_prob = class_logits.float().softmax(-1)[:, :-1][:, gt_labels]  # (K, M)
    return dice, class_prob


@TASK_UTILS.register_module()
class KMaXHungarianAssigner:
    """One-to-one matching of K cluster predictions to M ground-truth masks (K >= M).

    Args:
        mask_void_pixels (bool): zero void pixels of the predicted masks first (kMaX: True).
        eps (float): dice denominator epsilon.
    """

    def __init__(self, mask_void_pixels=True, eps=1e-5):
        self.mask_void_pixels = mask_void_pixels
        self.eps = eps

    @torch.no_grad()
    def assign(self, class_logits, mask_logits, gt_labels, gt_masks, void=None):
        """Returns (query index per GT (M,), matched dice (M,), matched class prob (M,))."""
        num_gts = gt_labels.numel()
        if num_gts == 0:
            empty = class_logits.new_zeros(0)
            return gt_labels.new_zeros(0), empty, empty
        if num_gts > class_logits.shape[0]:
            raise ValueError(f'{num_gts} ground-truth masks but only {class_logits.shape[0]} clusters')
        dice, class_prob = pq_similarity(class_logits, mask_logits, gt_labels, gt_masks,
                                         void if self.mask_void_pixels else None, self.eps)
        cost = -(dice * class_prob)  # (K, M)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        order = cols.argsort()
        query = torch.as_tensor(rows[order], dtype=torch.long, device=class_logits.device)
        gt = torch.arange(num_gts, device=class_logits.device)
        return query, dice[query, gt], class_prob[query, gt]
