"""Learned clusters as colour-coded maps, next to the model's prediction.

- PaCa-ViT: per stage, the patch-to-cluster assignment (B, M_i, H_i, W_i) -> argmax over M_i.
- ClusTR: per stage, the density-peaks cluster index of each token (last block, first scale).
- PaCa head: the per-class cluster assignment (B, L, H0, W0) -> argmax over L.
- kMaX-DeepLab (panoptic or semantic head): the k-means assignment of the last decoder layer,
  each pixel's argmax over the K cluster centres (object queries) of the final mask logits, which
  is the hard assignment kMaX's k-means cross-attention uses. On the padded input
  (kMaX runs at a fixed size) and cropped back to the image.
"""
import inspect
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
from mmengine.registry import DefaultScope


def palette(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct-enough RGB colours (uint8), the same for every call."""
    rng = np.random.RandomState(seed)
    return rng.randint(30, 256, size=(max(n, 1), 3)).astype(np.uint8)


def colour_index_map(index: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(h, w) integer map -> (H, W, 3) RGB, nearest-upsampled to ``size`` = (H, W)."""
    rgb = palette(int(index.max()) + 1)[index]
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _model_inputs(inferencer, img):
    """The batch the model sees for ``img`` (the inferencer's own pipeline and preprocessor), and
    the (H, W) of the image inside that possibly padded batch."""
    batch = next(iter(inferencer.preprocess([img], batch_size=1)))
    if isinstance(batch, (tuple, list)):  # mmdet yields (original inputs, data)
        batch = batch[1]
    data = inferencer.model.data_preprocessor(batch, False)
    samples = data.get('data_samples') or [None]
    meta = getattr(samples[0], 'metainfo', {}) or {}
    return data['inputs'], tuple(meta.get('img_shape', data['inputs'].shape[-2:]))[:2]


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def cluster_maps(inferencer, img) -> List[Tuple[str, np.ndarray]]:
    """``[(title, (h, w) int map), ...]`` for every clustering the model exposes.

    Raises ``ValueError`` when the model has no clusters to show.
    """
    model = inferencer.model
    scope = type(inferencer).__module__.split('.')[0]
    with DefaultScope.overwrite_default_scope(scope):
        x, img_shape = _model_inputs(inferencer, img)  # (1, 3, H, W)
        backbone = getattr(model, 'backbone', None)
        maps = []
        if backbone is not None and _accepts(backbone.forward, 'return_clusters'):
            _, clusters = backbone(x, return_clusters=True)
            for i, stage in enumerate(clusters):
                if isinstance(stage, torch.Tensor):  # PaCa-ViT: (1, M, h, w) soft assignment
                    m = stage.shape[1]
                    maps.append((f'stage {i + 1}: {m} clusters', stage[0].argmax(0).cpu().numpy()))
                elif stage and any(stage):  # ClusTR: per block, per scale (1, h, w) indices
                    index = [blk for blk in stage if blk][-1][0][0].cpu().numpy()
                    maps.append((f'stage {i + 1}: {len(np.unique(index))} clusters', index))
        head = getattr(model, 'decode_head', None)
        if head is not None and hasattr(head, 'cluster_maps'):
            assign = head.cluster_maps(model.extract_feat(x))  # (1, L, H0, W0)
            maps.append((f'head: {assign.shape[1]} class clusters', assign[0].argmax(0).cpu().numpy()))
        kmax = getattr(model, 'panoptic_head', None) or head
        if kmax is not None and hasattr(kmax, 'forward_all') and hasattr(kmax, 'transformer_decoder'):
            maps.append(_kmax_assignment(model, kmax, x, img_shape))
    if not maps:
        raise ValueError(f'{type(model).__name__} with {type(backbone).__name__} exposes no '
                         'clusters (expected a PaCa-ViT/ClusTR backbone, a PaCa head or a '
                         'kMaX-DeepLab head)')
    return maps


def _kmax_assignment(model, head, x, img_shape=None):
    """(title, (h, w) map): each pixel's k-means cluster (argmax over the K centres) in kMaX's last
    decoder layer, cropped to the image (``img_shape``: its (H, W) inside ``x``, which mmseg's
    preprocessor has already padded to the fixed size; default: all of ``x``)."""
    import torch.nn.functional as F
    H, W = img_shape or x.shape[-2:]
    if hasattr(model, 'pad_to_input_size'):  # mmdet KMaXDeepLab: pads, or names the sizes
        from mmdet.structures import DetDataSample
        x = model.pad_to_input_size(x, [DetDataSample(metainfo=dict(img_shape=(H, W)))])
    elif getattr(head, 'input_size', None) is not None:  # mmseg KMaXSegHead
        size = head.input_size
        if H > size[0] or W > size[1]:
            raise ValueError(f'kMaX runs at the fixed input size {tuple(size)} but the image is '
                             f'{H}x{W} after the test pipeline')
        x = F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]), value=0)
    mask_logits = head.forward_all(model.extract_feat(x))['final']['mask_logits']  # (1, K, h, w)
    k, h, w = mask_logits.shape[1:]
    ph, pw = x.shape[-2:]
    index = mask_logits[0].argmax(0)[:max(1, round(h * H / ph)), :max(1, round(w * W / pw))]
    index = index.cpu().numpy()
    return (f'k-means: {len(np.unique(index))} of {k} clusters used', index)


def _titled(img: np.ndarray, title: str) -> np.ndarray:
    bar = np.full((18, img.shape[1], 3), 255, np.uint8)
    scale = min(0.4, 0.4 * img.shape[1] / max(8 * len(title), 1) * 1.2)
    cv2.putText(bar, title, (2, 13), cv2.FONT_HERSHEY_SIMPLEX, max(scale, 0.2), (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def compose_panels(prediction: np.ndarray, maps: List[Tuple[str, np.ndarray]],
                   height: int = 256, image: Optional[np.ndarray] = None) -> np.ndarray:
    """One RGB strip: the input ``image`` (RGB, if given), the drawn prediction, then each cluster
    map at the same height."""
    h, w = prediction.shape[:2]
    width = max(1, round(w * height / h))
    panels = [] if image is None else [_titled(cv2.resize(image, (width, height)), 'image')]
    panels.append(_titled(cv2.resize(prediction, (width, height)), 'prediction'))
    for title, index in maps:
        panels.append(_titled(colour_index_map(index, (height, width)), title))
    gap = np.full((height + 18, 4, 3), 255, np.uint8)
    out = []
    for p in panels:
        out += [p, gap]
    return np.concatenate(out[:-1], axis=1)
