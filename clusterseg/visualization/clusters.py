"""Learned clusters as colour-coded maps, next to the model's prediction.

The maps come only from the cluster contract (:mod:`clusterseg.models.layers.cluster`): every
module that clusters has ``cluster_maps(inputs) -> [(name, (B, h, w) long), ...]``. This module
knows no model: it asks the model itself if it has ``cluster_maps`` (given the image batch), else
the backbone (given the image batch) and then every other direct submodule that has it, the heads
(given ``model.extract_feat``), and draws whatever they return. What they show today: PaCa-ViT's
per-stage patch-to-cluster assignment, ClusTR's per-stage, per-scale density-peaks clusters (last
block), the PaCa head's class clusters and kMaX-DeepLab's k-means assignment (last decoder layer).
Maps are cropped to the image inside the (possibly padded) model input.
"""
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


def _clustering_modules(model):
    """``[(attribute name, module, takes)]`` in call order, ``takes`` = ``'image'`` or ``'feats'``:
    the model itself if it follows the contract, else its backbone and then the other direct
    submodules that do (the heads, in registration order)."""
    if callable(getattr(model, 'cluster_maps', None)):
        return [('model', model, 'image')]
    found = []
    backbone = getattr(model, 'backbone', None)
    if callable(getattr(backbone, 'cluster_maps', None)):
        found.append(('backbone', backbone, 'image'))
    for name, child in model.named_children():
        if child is not backbone and callable(getattr(child, 'cluster_maps', None)):
            found.append((name, child, 'feats'))
    return found


def _crop(index: torch.Tensor, input_shape, img_shape) -> torch.Tensor:
    """(h, w) map over the model input of ``input_shape`` -> the part over the image of
    ``img_shape`` at its top-left (padding is bottom/right)."""
    h, w = index.shape
    (ph, pw), (H, W) = input_shape, img_shape
    return index[:max(1, round(h * H / ph)), :max(1, round(w * W / pw))]


@torch.no_grad()
def cluster_maps(inferencer, img) -> List[Tuple[str, np.ndarray]]:
    """``[(title, (h, w) int map), ...]`` for every clustering the model exposes through the
    cluster contract, each map cropped to the image; titles are ``'{name}: {n} clusters'`` with n
    the clusters that occur in the map (a head's name is prefixed by its attribute name where two
    modules use the same name).

    Raises ``ValueError`` when no module of the model has ``cluster_maps``.
    """
    model = inferencer.model
    scope = type(inferencer).__module__.split('.')[0]
    with DefaultScope.overwrite_default_scope(scope):
        x, img_shape = _model_inputs(inferencer, img)  # (1, 3, H, W)
        modules = _clustering_modules(model)
        if not modules:
            backbone = getattr(model, 'backbone', None)
            raise ValueError(f'{type(model).__name__} with {type(backbone).__name__} exposes no '
                             'clusters: none of the model, its backbone or its heads has '
                             'cluster_maps (PaCa-ViT, ClusTR, the PaCa head and kMaX-DeepLab do)')
        feats = None
        named = []
        for owner, module, takes in modules:
            if takes == 'feats' and feats is None:
                feats = model.extract_feat(x)
            for name, index in module.cluster_maps(x if takes == 'image' else feats):
                named.append((owner, name, _crop(index[0], x.shape[-2:], img_shape).cpu().numpy()))
    names = [name for _, name, _ in named]
    maps = []
    for owner, name, index in named:
        title = name if names.count(name) == 1 or owner in ('model', 'backbone') else f'{owner}.{name}'
        maps.append((f'{title}: {len(np.unique(index))} clusters', index))
    return maps


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
