"""kMaX-DeepLab's size rules: the fixed input size and the ``align_corners`` of every resize.

kMaX runs at one padded input size for training and testing (its axial attention has a learned
table of relative positions, and the paper's recipe is tuned at that size), and resizes with
``align_corners`` chosen by the parity of one length. The detector, the semantic head and the
cluster maps all use these functions, so the rule lives here once.

Plain torch, no mm* imports.
"""
from typing import Iterable, Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import Tensor


def kmax_align_corners(length):
    """kMaX's ``align_corners`` rule: True when ``length`` is odd (sizes like 1281 = 4 * 320 + 1,
    whose strided maps keep the first and last pixel). Which length decides differs per call site
    in the reference (bytedance/kmax-deeplab), so every caller names it:

    - pixel decoder ``ResizedFuse``: the *source* (low-resolution) width;
    - auxiliary semantic predictor: the width of the ASPP output, for both of its upsamplings;
    - deep-supervision outputs (``_set_aux_loss``): the *target height*;
    - post-processing (``kmax_model.py``): the padded image width.
    """
    return int(length) % 2 == 1


def resize_like_kmax(x, size, align_corners):
    """Bilinear resize of (B, C, h, w) to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)


def check_fixed_size(size: Sequence[int],
                     batch_shape: Sequence[int],
                     img_shapes: Iterable[Sequence[int]] = (),
                     exact: bool = False,
                     hint: str = '') -> Tuple[int, int]:
    """Raise ``ValueError`` unless a batch fits kMaX's fixed input size; return the size.

    Args:
        size (tuple[int, int]): the fixed (H, W).
        batch_shape (tuple[int, int]): (H, W) of the batch as it is.
        img_shapes (iterable of tuple): (H, W, ...) of each image inside the batch (top-left).
        exact (bool): the batch must already be padded to ``size`` (where padding is done before
            the model, e.g. by mmseg's preprocessor); otherwise it may be smaller (it will be padded).
        hint (str): how to configure the pipeline so that images fit; appended to the message.
    """
    size_h, size_w = (int(s) for s in size)
    H, W = (int(s) for s in batch_shape[-2:])
    too_large = [tuple(int(v) for v in s[:2]) for s in img_shapes if s[0] > size_h or s[1] > size_w]
    wrong = (H, W) != (size_h, size_w) if exact else (H > size_h or W > size_w)
    if wrong or too_large:
        raise ValueError(
            f'kMaX runs at the fixed input size {size_h}x{size_w} but got a batch of {H}x{W} '
            f'(images larger than the size: {too_large}).' + (f' {hint}' if hint else ''))
    return size_h, size_w


def pad_to_fixed_size(x: Tensor,
                      size: Optional[Sequence[int]],
                      img_shapes: Iterable[Sequence[int]] = (),
                      hint: str = '') -> Tensor:
    """Zero-pad a (B, C, H, W) batch bottom/right to kMaX's fixed ``size`` (None: unchanged).

    Raises ``ValueError`` (see :func:`check_fixed_size`) if the batch or an image is larger.
    """
    if size is None:
        return x
    size_h, size_w = check_fixed_size(size, x.shape[-2:], img_shapes, hint=hint)
    H, W = x.shape[-2:]
    if (H, W) == (size_h, size_w):
        return x
    return F.pad(x, (0, size_w - W, 0, size_h - H), value=0)  # (B, C, size_h, size_w)


def crop_to_extent(index: Tensor, extent: Sequence[int], padded: Sequence[int]) -> Tensor:
    """Crop a (B, h, w) map of a padded (H_pad, W_pad) input to the part that covers the top-left
    ``extent`` (H, W): the first ``round(h * H / H_pad)`` rows and ``round(w * W / W_pad)`` columns
    (at least one of each)."""
    h, w = index.shape[-2:]
    rows = max(1, round(h * int(extent[0]) / int(padded[0])))
    cols = max(1, round(w * int(extent[1]) / int(padded[1])))
    return index[..., :rows, :cols]
