"""Deterministic synthetic datasets written in the real on-disk formats.

The generators here draw small procedural scenes (textured "stuff" regions
such as sky, wall, grass and road, plus occluding "thing" instances such as
people and cars) and write them exactly as the original datasets are laid out
on disk, so that the unmodified OpenMMLab dataset classes and their standard
pipelines can read them:

* :func:`make_seg` -- ADE20K (``ADEChallengeData2016``) layout for mmseg's
  ``ADE20KDataset``; annotation pixels hold the real 1-based ADE20K class ids
  and ``0`` means "other" (ignored after ``reduce_zero_label``).
* :func:`make_det` -- COCO instances json (real COCO category ids, compressed
  RLE masks of the *visible* part of every instance) for mmdet's
  ``CocoDataset``.
* :func:`make_panoptic` -- COCO panoptic json + RGB-encoded PNGs (real COCO
  panoptic category ids for things and stuff) for mmdet's
  ``CocoPanopticDataset`` and ``CocoPanopticMetric``; it also writes the
  instances json of the same scenes.
* :func:`make_cls` -- ImageNet layout (class folders named by real wnids plus
  ``meta/{train,val}.txt``) for mmpretrain's ``ImageNet`` and
  ``CustomDataset``.

Everything is a pure function of ``(seed, task, split, index)``: every image
gets its own ``numpy.random.Generator``, so the same seed gives byte-identical
files and changing ``num_train`` does not change earlier images.

This module only depends on numpy, Pillow and the standard library (no mm*
imports), so data can be generated without the OpenMMLab stack.
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    'SYNTH_ADE20K_CLASSES', 'SYNTH_ADE20K_IDS', 'SYNTH_COCO_CLASSES',
    'SYNTH_COCO_IDS', 'SYNTH_COCO_PANOPTIC_THING_CLASSES',
    'SYNTH_COCO_PANOPTIC_STUFF_CLASSES', 'SYNTH_COCO_PANOPTIC_IDS',
    'SYNTH_IMAGENET_CLASSES', 'SYNTH_IMAGENET_WNIDS', 'generate_scene',
    'generate_cls_image', 'rle_encode', 'make_seg', 'make_det',
    'make_panoptic', 'make_cls', 'make_all', 'summarise'
]

# --------------------------------------------------------------------------
# Class definitions (real dataset names and ids)
# --------------------------------------------------------------------------

#: Subset of ADE20K's 150 classes, ordered by their ADE20K index so that the
#: contiguous labels mmseg's ``label_map`` produces (0..K-1) follow the
#: original order.
SYNTH_ADE20K_CLASSES = ('wall', 'sky', 'floor', 'tree', 'road', 'grass',
                        'person', 'car')
#: Pixel values written to the ADE20K annotation PNGs (1-based index into
#: ``ADE20KDataset.METAINFO['classes']``; 0 = other/unlabelled).
SYNTH_ADE20K_IDS = {
    'wall': 1,
    'sky': 3,
    'floor': 4,
    'tree': 5,
    'road': 7,
    'grass': 10,
    'person': 13,
    'car': 21
}

#: COCO thing classes, ordered by their COCO category id. mmdet derives the
#: contiguous label of a class from the order of ``categories`` in the json
#: (``COCO.get_cat_ids`` keeps json order, not the order of ``classes``), so
#: the json lists categories in exactly this order.
SYNTH_COCO_CLASSES = ('person', 'car', 'stop sign', 'sports ball', 'kite')
#: Real COCO category ids of :data:`SYNTH_COCO_CLASSES`.
SYNTH_COCO_IDS = {
    'person': 1,
    'car': 3,
    'stop sign': 13,
    'sports ball': 37,
    'kite': 38
}
SYNTH_COCO_PANOPTIC_THING_CLASSES = SYNTH_COCO_CLASSES
#: COCO panoptic stuff classes (merged names as in COCO panoptic 2017),
#: ordered by category id.
SYNTH_COCO_PANOPTIC_STUFF_CLASSES = ('road', 'sky-other-merged',
                                     'grass-merged', 'wall-other-merged')
#: Real COCO panoptic category ids of things and stuff.
SYNTH_COCO_PANOPTIC_IDS = dict(
    SYNTH_COCO_IDS, **{
        'road': 149,
        'sky-other-merged': 187,
        'grass-merged': 193,
        'wall-other-merged': 199
    })
_COCO_SUPERCATEGORY = {
    'person': 'person',
    'car': 'vehicle',
    'stop sign': 'outdoor',
    'sports ball': 'sports',
    'kite': 'sports',
    'road': 'ground',
    'sky-other-merged': 'sky',
    'grass-merged': 'plant',
    'wall-other-merged': 'wall'
}
# Official COCO panoptic colours, only used for the json ``color`` field.
_COCO_COLOR = {
    'person': [220, 20, 60],
    'car': [0, 0, 142],
    'stop sign': [220, 220, 0],
    'sports ball': [78, 180, 255],
    'kite': [0, 228, 0],
    'road': [128, 64, 128],
    'sky-other-merged': [70, 130, 180],
    'grass-merged': [152, 251, 152],
    'wall-other-merged': [102, 102, 156]
}

#: Real ImageNet-1k wnids; sorted, so that mmpretrain's folder mode (which
#: numbers sorted folder names) and ``meta/*.txt`` agree on labels.
SYNTH_IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361',
                        'n01494475', 'n01496331', 'n01498041', 'n01514668')
#: Class names exactly as in mmpretrain's ``IMAGENET_CATEGORIES``.
SYNTH_IMAGENET_CLASSES = (
    'tench, Tinca tinca',
    'goldfish, Carassius auratus',
    'great white shark, white shark, man-eater, man-eating shark, '
    'Carcharodon carcharias',
    'tiger shark, Galeocerdo cuvieri',
    'hammerhead, hammerhead shark',
    'electric ray, crampfish, numbfish, torpedo',
    'stingray',
    'cock',
)

# Internal scene vocabulary -> dataset class name, per flavour.
_FLAVOURS = {
    'ade20k':
    dict(
        stuff={
            'wall': 'wall',
            'sky': 'sky',
            'floor': 'floor',
            'road': 'road',
            'grass': 'grass'
        },
        things={
            'tree': 'tree',
            'person': 'person',
            'car': 'car'
        },
        salt=1),
    'coco':
    dict(
        stuff={
            'road': 'road',
            'sky': 'sky-other-merged',
            'grass': 'grass-merged',
            'wall': 'wall-other-merged'
        },
        things={
            'person': 'person',
            'car': 'car',
            'stop_sign': 'stop sign',
            'ball': 'sports ball',
            'kite': 'kite'
        },
        salt=2),
}
_CLS_SALT = 3
_SPLIT_SALT = {'train': 0, 'val': 1}

SizeType = Union[int, Sequence[int]]
ProgressType = Optional[Callable[[Iterable, str], Iterable]]

# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _hw(size: SizeType) -> Tuple[int, int]:
    """Normalise ``size`` (int or ``(H, W)``) to a ``(H, W)`` tuple.

    Args:
        size (int | Sequence[int]): Square side or ``(height, width)``.

    Returns:
        tuple[int, int]: ``(height, width)``.
    """
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h < 16 or w < 16:
        raise ValueError(f'image size must be at least 16x16, got {(h, w)}')
    return h, w


def _rng(*keys: int) -> np.random.Generator:
    """Build an independent generator from a tuple of integer keys.

    Args:
        *keys (int): Seed, task salt, split salt, index...

    Returns:
        numpy.random.Generator: A PCG64 generator for exactly these keys.
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _identity_progress(iterable: Iterable, desc: str) -> Iterable:
    """Default progress hook that just returns the iterable."""
    return iterable


def _raster(h: int, w: int, polys: Sequence[np.ndarray]) -> np.ndarray:
    """Rasterise polygons (union) into a boolean mask.

    Args:
        h (int): Mask height.
        w (int): Mask width.
        polys (Sequence[np.ndarray]): ``(N, 2)`` arrays of ``x, y`` pixel
            coordinates.

    Returns:
        np.ndarray: ``(h, w)`` bool mask.
    """
    im = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(im)
    for p in polys:
        draw.polygon([(float(x), float(y)) for x, y in p], fill=1)
    return np.asarray(im).astype(bool)


def _smooth_noise(rng: np.random.Generator, h: int, w: int,
                  cell: float) -> np.ndarray:
    """Value noise in ``[0, 1]`` with blobs of roughly ``cell`` pixels.

    Args:
        rng (numpy.random.Generator): Random source.
        h (int): Height.
        w (int): Width.
        cell (float): Blob size in pixels.

    Returns:
        np.ndarray: ``(h, w)`` float32 array.
    """
    cell = max(2, int(round(cell)))
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    im = Image.fromarray(grid).resize((gw * cell, gh * cell),
                                      Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32)[:h, :w]


def _jitter(rng: np.random.Generator, colour: Sequence[float],
            sigma: float) -> np.ndarray:
    """Return ``colour`` plus Gaussian jitter, clipped to ``[0, 255]``."""
    return np.clip(
        np.asarray(colour, np.float32) + rng.normal(0, sigma, 3), 0, 255)


def _mix(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Blend two colours with a per-pixel weight map ``p`` in ``[0, 1]``."""
    p = p[..., None].astype(np.float32)
    return a * (1 - p) + b * p


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28):
    """Polygon approximating an ellipse, in local object coordinates."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _rect(x0: float, y0: float, x1: float, y1: float):
    """Axis-aligned rectangle polygon in local object coordinates."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _ngon(n: int, r: float, rot: float = 0.0, cx=0.0, cy=0.0):
    """Regular ``n``-gon of circumradius ``r`` in local object coordinates."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rot
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def rle_encode(mask: np.ndarray) -> dict:
    """Encode a binary mask as COCO compressed RLE (pure Python).

    Produces exactly what ``pycocotools.mask.encode`` returns (with
    ``counts`` decoded to ``str`` so it is json serialisable), without
    depending on pycocotools.

    Args:
        mask (np.ndarray): ``(H, W)`` boolean / 0-1 mask.

    Returns:
        dict: ``{'size': [H, W], 'counts': str}``.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    h, w = mask.shape
    flat = mask.ravel(order='F')  # COCO RLE runs are column-major
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts  # runs always start with a run of zeros
    # pycocotools' rleToString: delta-code counts[i] against counts[i-2]
    # for i > 2, then write 5-bit groups as chars offset by 48.
    out = []
    for i, x in enumerate(counts):
        x = int(x)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return {'size': [int(h), int(w)], 'counts': ''.join(out)}


def _bbox_xywh(mask: np.ndarray) -> List[int]:
    """COCO ``[x, y, w, h]`` box of a mask (same convention as RLE toBbox)."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [
        int(xs[0]),
        int(ys[0]),
        int(xs[-1] - xs[0] + 1),
        int(ys[-1] - ys[0] + 1)
    ]


def _write_json(obj: dict, path: str) -> None:
    """Write json compactly and deterministically."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))


def _save_jpg(img: np.ndarray, path: str) -> None:
    """Save an RGB uint8 array as JPEG with fixed settings."""
    # Fixed quality/subsampling and no optimize pass keep bytes reproducible.
    Image.fromarray(img).save(
        path, format='JPEG', quality=92, subsampling=0)


# --------------------------------------------------------------------------
# Stuff textures (full frame, float32 HxWx3)
# --------------------------------------------------------------------------


def _tex_sky(rng, h, w, scale):
    y = np.arange(h, dtype=np.float32)[:, None] / max(h - 1, 1)
    top = _jitter(rng, (70, 130, 215), 12)
    bot = _jitter(rng, (175, 210, 240), 10)
    base = top * (1 - y[..., None]) + bot * y[..., None]
    base = np.broadcast_to(base, (h, w, 3))
    clouds = _smooth_noise(rng, h, w, 14 * scale)
    cloud = np.clip((clouds - rng.uniform(0.45, 0.7)) * 2.5, 0, 1)
    return _mix(base, np.float32([245, 245, 248]), cloud)


def _tex_wall(rng, h, w, scale):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bh = max(3.0, rng.uniform(5, 9) * scale)
    bw = bh * rng.uniform(1.8, 2.6)
    row = np.floor(yy / bh)
    off = (row % 2) * bw / 2
    col = np.floor((xx + off) / bw)
    # per-brick shade from a small random table indexed by (row, col)
    table = rng.normal(0, 12, (17, 19)).astype(np.float32)
    shade = table[(row % 17).astype(int), (col % 19).astype(int)]
    brick = _jitter(rng, (160, 96, 76), 14)
    img = brick[None, None] + shade[..., None]
    mortar = ((yy % bh) < 1) | (((xx + off) % bw) < 1)
    img[mortar] = _jitter(rng, (205, 200, 190), 8)
    return img


def _tex_floor(rng, h, w, scale):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ph = max(3.0, rng.uniform(6, 11) * scale)
    row = np.floor(yy / ph)
    table = rng.normal(0, 14, 23).astype(np.float32)
    shade = table[(row % 23).astype(int)]
    grain = np.sin(xx * rng.uniform(0.4, 0.9) + 3 * _smooth_noise(
        rng, h, w, 6 * scale) * np.pi)
    wood = _jitter(rng, (150, 105, 62), 12)
    img = wood[None, None] + (shade + 8 * grain)[..., None]
    img[(yy % ph) < 1] = wood * 0.45
    return img


def _tex_grass(rng, h, w, scale):
    base = _jitter(rng, (70, 148, 52), 12)
    # vertical streaks (blades): noise stretched along y
    k = max(2, int(round(3 * scale)))
    streak = rng.normal(0, 1, (h // k + 1, w)).astype(np.float32)
    streak = np.repeat(streak, k, 0)[:h]
    blob = _smooth_noise(rng, h, w, 12 * scale) - 0.5
    return base[None, None] + (16 * streak + 40 * blob)[..., None] * \
        np.float32([0.6, 1.0, 0.4])


def _tex_road(rng, h, w, scale):
    base = _jitter(rng, (88, 88, 94), 8)
    speck = rng.normal(0, 10, (h, w)).astype(np.float32)
    bright = (rng.random((h, w)) < 0.02) * 60.0
    blob = 20 * (_smooth_noise(rng, h, w, 16 * scale) - 0.5)
    return base[None, None] + (speck + bright + blob)[..., None]


_STUFF_TEXTURES = {
    'sky': _tex_sky,
    'wall': _tex_wall,
    'floor': _tex_floor,
    'grass': _tex_grass,
    'road': _tex_road
}

# --------------------------------------------------------------------------
# Things: part lists in local coordinates (unit = object size)
# --------------------------------------------------------------------------


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, freq: float,
             rng: np.random.Generator) -> np.ndarray:
    """Texture weight map in object-local coordinates.

    Args:
        kind (str): One of ``solid``, ``hstripes``, ``vstripes``,
            ``checker``, ``dots``, ``quadrant``, ``vgrad``, ``blotch``,
            ``diag``.
        u (np.ndarray): Local x coordinate of every pixel.
        v (np.ndarray): Local y coordinate of every pixel.
        freq (float): Pattern frequency (cycles per object size).
        rng (numpy.random.Generator): Random source (phase/noise).

    Returns:
        np.ndarray: Weights in ``[0, 1]`` (0 = colour a, 1 = colour b).
    """
    ph = rng.uniform(0, 1)
    if kind == 'solid':
        return np.zeros_like(u)
    if kind == 'hstripes':
        return ((v * freq + ph) % 1.0 < 0.5).astype(np.float32)
    if kind == 'vstripes':
        return ((u * freq + ph) % 1.0 < 0.5).astype(np.float32)
    if kind == 'diag':
        return (((u + v) * freq + ph) % 1.0 < 0.3).astype(np.float32)
    if kind == 'checker':
        return ((np.floor(u * freq + ph) + np.floor(v * freq)) % 2).astype(
            np.float32)
    if kind == 'dots':
        du = (u * freq + ph) % 1.0 - 0.5
        dv = (v * freq) % 1.0 - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if kind == 'quadrant':
        return ((u > 0) ^ (v > -0.1)).astype(np.float32)
    if kind == 'vgrad':
        return np.clip(v + 0.5, 0, 1)
    if kind == 'blotch':
        # noise in local coordinates so the pattern moves with the object
        n = rng.random((8, 8)).astype(np.float32)
        iu = np.clip(((u + 0.5) * 7.99).astype(int), 0, 7)
        iv = np.clip(((v + 0.5) * 7.99).astype(int), 0, 7)
        return n[iv, iu]
    raise ValueError(f'unknown pattern {kind}')


def _thing_parts(key: str, rng: np.random.Generator) -> List[dict]:
    """Geometry and appearance of one thing instance, as drawable parts.

    Args:
        key (str): Internal thing key (``person``, ``car``, ``tree``,
            ``stop_sign``, ``ball``, ``kite``).
        rng (numpy.random.Generator): Random source for colour jitter.

    Returns:
        list[dict]: Parts drawn in order, each with ``poly`` (local coords,
        y down, object spans about ``[-0.5, 0.5]``), colours ``a``/``b``,
        ``pattern`` and ``freq``.
    """
    j = lambda c, s=14: _jitter(rng, c, s)  # noqa: E731
    if key == 'person':
        shirt = j((200, 40, 50), 20)
        return [
            dict(poly=_rect(-0.13, 0.08, -0.015, 0.5), a=j((40, 45, 90)),
                 b=j((30, 30, 60)), pattern='solid', freq=1),
            dict(poly=_rect(0.015, 0.08, 0.13, 0.5), a=j((40, 45, 90)),
                 b=j((30, 30, 60)), pattern='solid', freq=1),
            dict(poly=_ellipse(0, -0.08, 0.17, 0.22), a=shirt,
                 b=j((235, 225, 215), 10), pattern='hstripes', freq=8),
            dict(poly=_ellipse(0, -0.38, 0.09, 0.095), a=j((224, 172, 135)),
                 b=j((120, 70, 40)), pattern='vgrad', freq=1),
        ]
    if key == 'car':
        body = j((40, 70, 190), 22)
        return [
            dict(poly=_rect(-0.5, -0.06, 0.5, 0.2), a=body, b=body * 0.55,
                 pattern='vgrad', freq=1),
            dict(poly=np.array([[-0.3, -0.06], [-0.17, -0.26], [0.2, -0.26],
                                [0.33, -0.06]]), a=j((170, 215, 235), 10),
                 b=j((235, 245, 250), 6), pattern='diag', freq=5),
            dict(poly=_ellipse(-0.3, 0.2, 0.1, 0.1, 16), a=j((25, 25, 25), 6),
                 b=j((120, 120, 120), 6), pattern='dots', freq=14),
            dict(poly=_ellipse(0.3, 0.2, 0.1, 0.1, 16), a=j((25, 25, 25), 6),
                 b=j((120, 120, 120), 6), pattern='dots', freq=14),
        ]
    if key == 'tree':
        return [
            dict(poly=_rect(-0.055, 0.0, 0.055, 0.5), a=j((105, 70, 40)),
                 b=j((70, 45, 25)), pattern='vstripes', freq=24),
            dict(poly=_ellipse(0, -0.2, 0.3, 0.3), a=j((25, 90, 30)),
                 b=j((60, 130, 40)), pattern='blotch', freq=1),
        ]
    if key == 'stop_sign':
        red = j((200, 25, 30), 12)
        white = j((240, 240, 240), 6)
        rot = np.pi / 8
        return [
            dict(poly=_ngon(8, 0.5, rot), a=red, b=red, pattern='solid',
                 freq=1),
            dict(poly=_ngon(8, 0.43, rot), a=white, b=white, pattern='solid',
                 freq=1),
            dict(poly=_ngon(8, 0.37, rot), a=red, b=red * 0.8,
                 pattern='vgrad', freq=1),
            dict(poly=_rect(-0.26, -0.05, 0.26, 0.05), a=white, b=red,
                 pattern='vstripes', freq=10),
        ]
    if key == 'ball':
        return [
            dict(poly=_ellipse(0, 0, 0.5, 0.5, 32), a=j((235, 235, 235), 10),
                 b=j((30, 30, 30), 10), pattern='checker', freq=3.2),
        ]
    if key == 'kite':
        return [
            dict(poly=np.array([[0, -0.5], [0.32, -0.1], [0, 0.5],
                                [-0.32, -0.1]]), a=j((240, 210, 30), 18),
                 b=j((200, 40, 170), 18), pattern='quadrant', freq=1),
        ]
    raise KeyError(key)


# Per-class placement: (size range as fraction of min(H, W), rotation range
# in degrees, where it lives, local y of the object's base).
_THING_PLACEMENT = {
    'person': ((0.30, 0.55), 8, 'ground', 0.5),
    'car': ((0.35, 0.60), 4, 'ground', 0.3),
    'tree': ((0.35, 0.65), 5, 'ground', 0.5),
    'stop_sign': ((0.14, 0.26), 10, 'any', 0.0),
    'ball': ((0.10, 0.20), 180, 'ground', 0.5),
    'kite': ((0.16, 0.30), 35, 'sky', 0.0),
}


def _place_parts(parts: List[dict], h: int, w: int, cx: float, cy: float,
                 s: float, angle: float, flip: bool,
                 rng: np.random.Generator):
    """Rasterise an object's parts at a pose; return its mask and texture.

    Args:
        parts (list[dict]): Output of :func:`_thing_parts` or the cls glyphs.
        h (int): Image height.
        w (int): Image width.
        cx (float): Centre x in pixels.
        cy (float): Centre y in pixels.
        s (float): Object size in pixels (local unit).
        angle (float): Rotation in radians.
        flip (bool): Mirror horizontally in local coordinates.
        rng (numpy.random.Generator): Random source for pattern phases.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(h, w)`` bool mask of the whole
        shape and ``(h, w, 3)`` float32 texture (valid inside the mask).
    """
    ca, sa = np.cos(angle), np.sin(angle)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    u = (ca * dx + sa * dy) / s
    v = (-sa * dx + ca * dy) / s
    if flip:
        u = -u
    mask = np.zeros((h, w), bool)
    tex = np.zeros((h, w, 3), np.float32)
    for part in parts:
        p = np.asarray(part['poly'], np.float64).copy()
        if flip:
            p[:, 0] = -p[:, 0]
        px = cx + s * (ca * p[:, 0] - sa * p[:, 1])
        py = cy + s * (sa * p[:, 0] + ca * p[:, 1])
        m = _raster(h, w, [np.stack([px, py], 1)])
        if not m.any():
            continue
        wgt = _pattern(part['pattern'], u, v, part['freq'], rng)
        col = _mix(np.asarray(part['a'], np.float32),
                   np.asarray(part['b'], np.float32), wgt)
        tex[m] = col[m]
        mask |= m
    return mask, tex


# --------------------------------------------------------------------------
# Scene generation
# --------------------------------------------------------------------------


def _stuff_layout(rng, h, w, keys):
    """Lay out stuff regions; returns (map of key index or -1, horizon)."""
    code = {k: i for i, k in enumerate(keys)}
    smap = np.full((h, w), -1, np.int16)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hor0 = h * rng.uniform(0.3, 0.6)
    indoor = 'floor' in code and 'wall' in code and rng.random() < 0.35
    if indoor:
        horizon = hor0 + rng.uniform(-0.1, 0.1) * (xx[0] - w / 2)
    else:
        horizon = hor0 + h * rng.uniform(0, 0.06) * np.sin(
            2 * np.pi * xx[0] / (w * rng.uniform(0.6, 1.6)) +
            rng.uniform(0, 2 * np.pi))
    upper = yy < horizon[None, :]
    if indoor:
        smap[upper] = code['wall']
        smap[~upper] = code['floor']
        if 'sky' in code and rng.random() < 0.6:
            # a window showing sky, fully inside the wall
            x0 = rng.uniform(0.05, 0.6) * w
            x1 = x0 + rng.uniform(0.15, 0.35) * w
            y0 = rng.uniform(0.05, 0.15) * h
            y1 = y0 + rng.uniform(0.4, 0.8) * (hor0 - y0)
            win = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1) & upper
            smap[win] = code['sky']
    else:
        up = 'sky' if 'sky' in code else 'wall'
        lows = [k for k in ('grass', 'road') if k in code]
        low = lows[int(rng.integers(len(lows)))]
        smap[upper] = code[up]
        smap[~upper] = code[low]
        if up == 'sky' and 'wall' in code and rng.random() < 0.55:
            for _ in range(int(rng.integers(1, 3))):
                bx0 = rng.uniform(-0.1, 0.8) * w
                bx1 = bx0 + rng.uniform(0.15, 0.45) * w
                top = hor0 - rng.uniform(0.1, 0.35) * h
                bld = (xx >= bx0) & (xx < bx1) & (yy >= top) & upper
                smap[bld] = code['wall']
        other = [k for k in lows if k != low]
        if other and rng.random() < 0.6:
            # a road/grass band converging towards the horizon
            xv = rng.uniform(0.3, 0.7) * w
            tw = rng.uniform(0.02, 0.1) * w
            xb0 = xv - rng.uniform(0.2, 0.6) * w
            xb1 = xv + rng.uniform(0.2, 0.6) * w
            poly = np.array([[xb0, h + 1], [xb1, h + 1], [xv + tw, hor0],
                             [xv - tw, hor0]])
            band = _raster(h, w, [poly]) & ~upper
            smap[band] = code[other[0]]
    return smap, float(hor0)


def _clutter(rng, h, w):
    """Irregular unlabelled blobs (ADE "other" / COCO VOID) with textures."""
    out = []
    for _ in range(int(rng.integers(0, 3))):
        n = int(rng.integers(5, 9))
        r = rng.uniform(0.06, 0.14) * min(h, w)
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.2, n)
        cx, cy = rng.uniform(0, w), rng.uniform(0.2 * h, h)
        poly = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
        m = _raster(h, w, [poly])
        a = rng.uniform(30, 225, 3).astype(np.float32)
        b = rng.uniform(30, 225, 3).astype(np.float32)
        tex = _mix(a, b, _smooth_noise(rng, h, w, 4))
        out.append((m, tex))
    return out


def _finish_image(rng, img: np.ndarray) -> np.ndarray:
    """Global lighting jitter, sensor noise and a slight blur."""
    gain = rng.uniform(0.85, 1.15)
    bias = rng.uniform(-12, 12)
    img = img * gain + bias + rng.normal(0, 3, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    # soften the aliased polygon edges a little so edges are not trivially
    # sharp; annotations stay binary
    im = Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.5))
    return np.asarray(im)


def generate_scene(flavour: str,
                   index: int,
                   split: str = 'train',
                   seed: int = 0,
                   size: SizeType = 128,
                   num_things: Tuple[int, int] = (3, 6),
                   min_visible_frac: float = 0.1) -> dict:
    """Generate one scene with stuff regions and occluding thing instances.

    Things are drawn in depth order (lower in the image = closer = drawn
    later), so later instances occlude earlier ones. An instance whose
    *visible* area becomes tiny is removed from the scene entirely (it is
    not drawn), so every annotated pixel is exactly what is seen.

    Args:
        flavour (str): ``'ade20k'`` or ``'coco'`` (which class vocabulary).
        index (int): Image index inside the split.
        split (str): ``'train'`` or ``'val'``.
        seed (int): Global seed.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.
        num_things (tuple[int, int]): Inclusive range of things attempted.
        min_visible_frac (float): Instances whose visible fraction of their
            drawn (in-image) area falls below this are dropped.

    Returns:
        dict: ``image`` (H, W, 3) uint8; ``stuff_map`` (H, W) int16 with the
        index into ``stuff_names`` or -1 (void/other) for the background
        under everything; ``inst_map`` (H, W) int32 with ``k + 1`` where
        instance ``k`` is visible, else 0; ``stuff_names`` and
        ``instances`` (list of dicts with ``name``, ``key``,
        ``drawn_area``, ``visible_area``, ``bbox`` xywh of the visible
        mask), ``num_dropped``.
    """
    fl = _FLAVOURS[flavour]
    h, w = _hw(size)
    rng = _rng(seed, fl['salt'], _SPLIT_SALT[split], index)
    scale = min(h, w) / 128.0
    stuff_keys = list(fl['stuff'])
    thing_keys = list(fl['things'])

    smap, hor = _stuff_layout(rng, h, w, stuff_keys)
    clutter = _clutter(rng, h, w)
    img = np.zeros((h, w, 3), np.float32)
    for i, k in enumerate(stuff_keys):
        m = smap == i
        if m.any():
            img[m] = _STUFF_TEXTURES[k](rng, h, w, scale)[m]
    for m, tex in clutter:
        img[m] = tex[m]
        smap[m] = -1

    # --- things, sampled then sorted far-to-near
    specs = []
    n = int(rng.integers(num_things[0], num_things[1] + 1))
    base = min(h, w)
    for _ in range(n):
        key = thing_keys[int(rng.integers(len(thing_keys)))]
        (s0, s1), rot, where, foot = _THING_PLACEMENT[key]
        s = rng.uniform(s0, s1) * base
        cx = rng.uniform(0.05, 0.95) * w
        if where == 'ground':
            yb = rng.uniform(min(hor + 0.05 * h, h), 1.05 * h)
            persp = np.clip((yb - hor) / max(h - hor, 1.0), 0.15, 1.0)
            s *= 0.5 + 0.7 * persp
            cy = yb - foot * s
        elif where == 'sky':
            cy = rng.uniform(0.08 * h, max(hor, 0.2 * h))
        else:
            cy = rng.uniform(0.15, 0.85) * h
        angle = np.deg2rad(rng.uniform(-rot, rot))
        flip = bool(rng.random() < 0.5)
        parts = _thing_parts(key, rng)
        specs.append((cy + 0.5 * s, key, parts, cx, cy, s, angle, flip))
    specs.sort(key=lambda t: t[0])

    drawn = []
    for _, key, parts, cx, cy, s, angle, flip in specs:
        m, tex = _place_parts(parts, h, w, cx, cy, s, angle, flip, rng)
        drawn.append((key, m, tex))

    min_area = max(12, int(0.0015 * h * w))
    keep = list(range(len(drawn)))
    # Dropping an instance only uncovers what is below it, so visible areas
    # of the remaining ones can only grow: two passes reach a fixed point.
    for _ in range(2):
        imap = np.zeros((h, w), np.int32)
        for k in keep:
            imap[drawn[k][1]] = k + 1
        new_keep = []
        for k in keep:
            vis = int((imap == k + 1).sum())
            tot = int(drawn[k][1].sum())
            if vis >= min_area and vis >= min_visible_frac * tot:
                new_keep.append(k)
        if new_keep == keep:
            break
        keep = new_keep

    inst_map = np.zeros((h, w), np.int32)
    instances = []
    for j, k in enumerate(keep):
        key, m, tex = drawn[k]
        img[m] = tex[m]
        inst_map[m] = j + 1
    for j, k in enumerate(keep):
        key, m, _ = drawn[k]
        vis = inst_map == j + 1
        instances.append(
            dict(
                key=key,
                name=fl['things'][key],
                drawn_area=int(m.sum()),
                visible_area=int(vis.sum()),
                bbox=_bbox_xywh(vis)))

    # Stuff classes with only a sliver visible become "other"/VOID: slivers
    # are label noise rather than learnable regions.
    free = inst_map == 0
    for i in range(len(stuff_keys)):
        area = int(((smap == i) & free).sum())
        if 0 < area < min_area:
            smap[smap == i] = -1

    return dict(
        image=_finish_image(rng, img),
        stuff_map=smap,
        inst_map=inst_map,
        stuff_names=[fl['stuff'][k] for k in stuff_keys],
        instances=instances,
        num_dropped=len(drawn) - len(keep))


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------


def make_seg(out_dir: str = 'data/synthetic_ade20k',
             num_train: int = 80,
             num_val: int = 20,
             size: SizeType = 128,
             seed: int = 0,
             progress: ProgressType = None) -> dict:
    """Write a synthetic semantic segmentation set in ADE20K layout.

    Layout (as ``ADEChallengeData2016``)::

        OUT/images/{training,validation}/ADE_{train,val}_%08d.jpg
        OUT/annotations/{training,validation}/ADE_{train,val}_%08d.png

    Annotation PNGs are mode ``'L'`` with real ADE20K ids
    (:data:`SYNTH_ADE20K_IDS`) and 0 for unlabelled clutter. Read with
    ``ADE20KDataset(reduce_zero_label=True,
    metainfo=dict(classes=SYNTH_ADE20K_CLASSES))``: ``reduce_zero_label``
    turns 0 into 255 and id ``i`` into ``i - 1``, then mmseg's ``label_map``
    maps ADE20K indices to ``0..K-1`` in :data:`SYNTH_ADE20K_CLASSES` order.

    Args:
        out_dir (str): Output root.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.
        seed (int): Global seed.
        progress (callable, optional): ``progress(iterable, desc)`` wrapper
            used to report progress (e.g. around mmengine's
            ``track_iter_progress``).

    Returns:
        dict: Summary with ``root``, ``classes``, per-split ``images``,
        ``instances`` and ``occluded`` counts.
    """
    _check_counts(num_train, num_val)
    progress = progress or _identity_progress
    lut = {n: SYNTH_ADE20K_IDS[n] for n in SYNTH_ADE20K_CLASSES}
    summary = dict(root=out_dir, task='seg', classes=SYNTH_ADE20K_CLASSES,
                   splits={})
    for split, num, sub, tag in (('train', num_train, 'training', 'train'),
                                 ('val', num_val, 'validation', 'val')):
        img_dir = osp.join(out_dir, 'images', sub)
        ann_dir = osp.join(out_dir, 'annotations', sub)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        n_inst = n_occ = 0
        for i in progress(range(num), f'seg/{split}'):
            sc = generate_scene('ade20k', i, split, seed, size)
            label = np.zeros(sc['stuff_map'].shape, np.uint8)
            for c, name in enumerate(sc['stuff_names']):
                label[sc['stuff_map'] == c] = lut[name]
            for k, inst in enumerate(sc['instances']):
                label[sc['inst_map'] == k + 1] = lut[inst['name']]
            stem = f'ADE_{tag}_{i + 1:08d}'
            _save_jpg(sc['image'], osp.join(img_dir, stem + '.jpg'))
            Image.fromarray(label).save(osp.join(ann_dir, stem + '.png'))
            n_inst += len(sc['instances'])
            n_occ += sum(x['visible_area'] < x['drawn_area']
                         for x in sc['instances'])
        summary['splits'][split] = dict(
            images=num, instances=n_inst, occluded=n_occ, img_dir=img_dir,
            ann_dir=ann_dir)
    return summary


def _coco_split(out_dir, split, num, size, seed, progress, panoptic):
    """Generate one COCO split; returns (instances json, panoptic json)."""
    year_split = f'{split}2017'
    img_dir = osp.join(out_dir, year_split)
    pan_dir = osp.join(out_dir, 'annotations', f'panoptic_{year_split}')
    os.makedirs(img_dir, exist_ok=True)
    if panoptic:
        os.makedirs(pan_dir, exist_ok=True)
    images, anns, pan_anns = [], [], []
    ann_id = 1
    n_occ = 0
    for i in progress(range(num), f'coco/{split}'):
        sc = generate_scene('coco', i, split, seed, size)
        h, w = sc['inst_map'].shape
        img_id = i + 1
        fname = f'{img_id:012d}.jpg'
        _save_jpg(sc['image'], osp.join(img_dir, fname))
        images.append(
            dict(id=img_id, file_name=fname, height=int(h), width=int(w)))
        seg_infos = []
        pan = np.zeros((h, w), np.int64)
        # Segment ids only need to be unique per image (as in COCO); making
        # them unique per split as well avoids mmdet's cross-image id
        # filtering. 256 ids per image, wrapping after 65535 images.
        id_base = ((i % 65535) + 1) * 256
        for k, inst in enumerate(sc['instances']):
            vis = sc['inst_map'] == k + 1
            cat = SYNTH_COCO_IDS[inst['name']]
            area = int(vis.sum())
            bbox = _bbox_xywh(vis)
            anns.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=cat,
                    segmentation=rle_encode(vis),
                    area=area,
                    bbox=bbox,
                    iscrowd=0))
            ann_id += 1
            n_occ += inst['visible_area'] < inst['drawn_area']
            seg_id = id_base + len(seg_infos) + 1
            pan[vis] = seg_id
            seg_infos.append(
                dict(id=seg_id, category_id=cat, iscrowd=0, bbox=bbox,
                     area=area))
        free = sc['inst_map'] == 0
        for c, name in enumerate(sc['stuff_names']):
            m = (sc['stuff_map'] == c) & free
            if not m.any():
                continue
            seg_id = id_base + len(seg_infos) + 1
            pan[m] = seg_id
            seg_infos.append(
                dict(
                    id=seg_id,
                    category_id=SYNTH_COCO_PANOPTIC_IDS[name],
                    iscrowd=0,
                    bbox=_bbox_xywh(m),
                    area=int(m.sum())))
        if panoptic:
            png = fname.replace('.jpg', '.png')
            rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536 % 256],
                           -1).astype(np.uint8)
            Image.fromarray(rgb).save(osp.join(pan_dir, png))
            pan_anns.append(
                dict(image_id=img_id, file_name=png, segments_info=seg_infos))
    info = dict(
        description='clusterseg synthetic COCO-format data',
        version='1.0',
        year=2017,
        contributor='clusterseg.datasets.synthetic',
        date_created='2017/01/01')
    thing_cats = [
        dict(id=SYNTH_COCO_IDS[n], name=n, supercategory=_COCO_SUPERCATEGORY[n])
        for n in SYNTH_COCO_CLASSES
    ]
    inst_json = dict(
        info=info, licenses=[], images=images, annotations=anns,
        categories=thing_cats)
    pan_json = None
    if panoptic:
        # things first, then stuff: mmdet's label for a category is its
        # position in this list, and its models assume things come first.
        cats = [
            dict(id=SYNTH_COCO_PANOPTIC_IDS[n], name=n, isthing=1,
                 supercategory=_COCO_SUPERCATEGORY[n], color=_COCO_COLOR[n])
            for n in SYNTH_COCO_PANOPTIC_THING_CLASSES
        ] + [
            dict(id=SYNTH_COCO_PANOPTIC_IDS[n], name=n, isthing=0,
                 supercategory=_COCO_SUPERCATEGORY[n], color=_COCO_COLOR[n])
            for n in SYNTH_COCO_PANOPTIC_STUFF_CLASSES
        ]
        pan_json = dict(
            info=info, licenses=[], images=images, annotations=pan_anns,
            categories=cats)
    stats = dict(
        images=num, instances=len(anns), occluded=int(n_occ),
        img_dir=img_dir)
    return inst_json, pan_json, stats


def _check_counts(num_train: int, num_val: int) -> None:
    if num_train < 0 or num_val < 0:
        raise ValueError('num_train and num_val must be >= 0')


def make_det(out_dir: str = 'data/synthetic_coco',
             num_train: int = 64,
             num_val: int = 16,
             size: SizeType = 128,
             seed: int = 0,
             progress: ProgressType = None) -> dict:
    """Write a synthetic instance detection/segmentation set in COCO layout.

    Layout::

        OUT/{train2017,val2017}/%012d.jpg
        OUT/annotations/instances_{train,val}2017.json

    Annotations use real COCO category ids (:data:`SYNTH_COCO_IDS`), boxes
    are ``[x, y, w, h]`` of the visible mask, masks are compressed RLE of
    the visible part, ``iscrowd = 0``. Read with ``CocoDataset(
    metainfo=dict(classes=SYNTH_COCO_CLASSES))``.

    Args:
        out_dir (str): Output root.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.
        seed (int): Global seed.
        progress (callable, optional): ``progress(iterable, desc)`` wrapper.

    Returns:
        dict: Summary with ``root``, ``classes``, per-split counts and the
        annotation file paths.
    """
    _check_counts(num_train, num_val)
    progress = progress or _identity_progress
    summary = dict(root=out_dir, task='det', classes=SYNTH_COCO_CLASSES,
                   splits={})
    for split, num in (('train', num_train), ('val', num_val)):
        inst, _, stats = _coco_split(out_dir, split, num, size, seed,
                                     progress, panoptic=False)
        path = osp.join(out_dir, 'annotations', f'instances_{split}2017.json')
        _write_json(inst, path)
        stats['instances_json'] = path
        summary['splits'][split] = stats
    return summary


def make_panoptic(out_dir: str = 'data/synthetic_coco',
                  num_train: int = 64,
                  num_val: int = 16,
                  size: SizeType = 128,
                  seed: int = 0,
                  progress: ProgressType = None) -> dict:
    """Write a synthetic COCO panoptic set (and the matching instances json).

    Layout (same scenes and images as :func:`make_det` for equal
    arguments)::

        OUT/{train2017,val2017}/%012d.jpg
        OUT/annotations/panoptic_{train,val}2017.json
        OUT/annotations/panoptic_{train,val}2017/%012d.png
        OUT/annotations/instances_{train,val}2017.json

    PNGs encode ``id = R + 256 * G + 256**2 * B``; 0 is VOID (unlabelled
    clutter). ``segments_info`` uses the real COCO panoptic category ids
    (:data:`SYNTH_COCO_PANOPTIC_IDS`) and the json ``categories`` carry
    ``isthing``. Read with ``CocoPanopticDataset(metainfo=dict(
    classes=THINGS + STUFF, thing_classes=THINGS, stuff_classes=STUFF))``.

    Args:
        out_dir (str): Output root.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.
        seed (int): Global seed.
        progress (callable, optional): ``progress(iterable, desc)`` wrapper.

    Returns:
        dict: Summary with ``root``, ``classes``, per-split counts and the
        annotation file paths.
    """
    _check_counts(num_train, num_val)
    progress = progress or _identity_progress
    summary = dict(
        root=out_dir,
        task='panoptic',
        thing_classes=SYNTH_COCO_PANOPTIC_THING_CLASSES,
        stuff_classes=SYNTH_COCO_PANOPTIC_STUFF_CLASSES,
        splits={})
    for split, num in (('train', num_train), ('val', num_val)):
        inst, pan, stats = _coco_split(out_dir, split, num, size, seed,
                                       progress, panoptic=True)
        ann_dir = osp.join(out_dir, 'annotations')
        ipath = osp.join(ann_dir, f'instances_{split}2017.json')
        ppath = osp.join(ann_dir, f'panoptic_{split}2017.json')
        _write_json(inst, ipath)
        _write_json(pan, ppath)
        stats.update(
            instances_json=ipath,
            panoptic_json=ppath,
            panoptic_dir=osp.join(ann_dir, f'panoptic_{split}2017'),
            segments=sum(len(a['segments_info']) for a in pan['annotations']))
        summary['splits'][split] = stats
    return summary


# --------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------


def _cls_glyph(cls_idx: int, rng: np.random.Generator) -> List[dict]:
    """Parts of the object for ImageNet-style class ``cls_idx``.

    Pairs of classes share a silhouette and differ only in texture/colour
    (tench vs goldfish, great white vs tiger shark), so the task needs both
    shape and appearance.
    """
    j = lambda c, s=16: _jitter(rng, c, s)  # noqa: E731
    fish_body = _ellipse(0.05, 0, 0.38, 0.2)
    fish_tail = np.array([[-0.3, 0], [-0.5, -0.2], [-0.5, 0.2]])
    shark_body = _ellipse(0.05, 0, 0.45, 0.13)
    shark_fin = np.array([[-0.05, -0.1], [0.08, -0.34], [0.15, -0.1]])
    shark_tail = np.array([[-0.35, 0], [-0.52, -0.25], [-0.45, 0],
                           [-0.52, 0.18]])
    if cls_idx == 0:  # tench: fish, olive with dark dots
        a, b = j((95, 120, 60)), j((40, 55, 25))
        return [
            dict(poly=fish_tail, a=a, b=b, pattern='solid', freq=1),
            dict(poly=fish_body, a=a, b=b, pattern='dots', freq=9),
        ]
    if cls_idx == 1:  # goldfish: same fish, orange smooth gradient
        a, b = j((250, 150, 30)), j((200, 70, 10))
        return [
            dict(poly=fish_tail, a=a, b=b, pattern='solid', freq=1),
            dict(poly=fish_body, a=a, b=b, pattern='vgrad', freq=1),
        ]
    if cls_idx == 2:  # great white: shark, grey top / white belly
        a, b = j((115, 120, 130)), j((235, 235, 235), 8)
        return [
            dict(poly=shark_tail, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_fin, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_body, a=a, b=b, pattern='vgrad', freq=1),
        ]
    if cls_idx == 3:  # tiger shark: same shark, vertical dark stripes
        a, b = j((125, 125, 120)), j((55, 55, 50))
        return [
            dict(poly=shark_tail, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_fin, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_body, a=a, b=b, pattern='vstripes', freq=9),
        ]
    if cls_idx == 4:  # hammerhead: shark with a T-bar head
        a, b = j((110, 115, 135)), j((170, 175, 190))
        return [
            dict(poly=shark_tail, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_fin, a=a, b=a, pattern='solid', freq=1),
            dict(poly=shark_body, a=a, b=b, pattern='blotch', freq=1),
            dict(poly=_rect(0.38, -0.2, 0.48, 0.2), a=a, b=b, pattern='solid',
                 freq=1),
        ]
    if cls_idx == 5:  # electric ray: round disc with light spots + tail
        a, b = j((140, 95, 55)), j((225, 195, 150))
        return [
            dict(poly=_rect(-0.5, -0.03, 0, 0.03), a=a, b=a, pattern='solid',
                 freq=1),
            dict(poly=_ellipse(0.1, 0, 0.33, 0.3), a=a, b=b, pattern='dots',
                 freq=6),
        ]
    if cls_idx == 6:  # stingray: rhombus, dark blotchy, long thin tail
        a, b = j((70, 70, 80)), j((120, 115, 110))
        return [
            dict(poly=_rect(-0.52, -0.02, 0, 0.02), a=a, b=a,
                 pattern='solid', freq=1),
            dict(poly=np.array([[-0.15, 0], [0.15, -0.38], [0.45, 0],
                                [0.15, 0.38]]), a=a, b=b, pattern='blotch',
                 freq=1),
        ]
    if cls_idx == 7:  # cock: round body, fan tail, red comb
        body_a, body_b = j((190, 110, 40)), j((120, 50, 20))
        red = j((220, 30, 30), 10)
        return [
            dict(poly=np.array([[-0.1, 0.05], [-0.5, -0.4], [-0.35, -0.45],
                                [-0.2, -0.5], [-0.05, -0.1]]), a=j((20, 70,
                                                                   50)),
                 b=j((10, 30, 60)), pattern='hstripes', freq=10),
            dict(poly=_ellipse(0.0, 0.1, 0.28, 0.22), a=body_a, b=body_b,
                 pattern='hstripes', freq=7),
            dict(poly=_ellipse(0.25, -0.18, 0.11, 0.11, 16), a=body_a,
                 b=body_b, pattern='solid', freq=1),
            dict(poly=np.array([[0.17, -0.27], [0.22, -0.4], [0.27, -0.31],
                                [0.32, -0.42], [0.35, -0.26]]), a=red, b=red,
                 pattern='solid', freq=1),
            dict(poly=np.array([[0.35, -0.2], [0.46, -0.16], [0.35, -0.13]]),
                 a=j((240, 200, 40)), b=red, pattern='solid', freq=1),
        ]
    raise IndexError(cls_idx)


def generate_cls_image(cls_idx: int,
                       index: int,
                       split: str = 'train',
                       seed: int = 0,
                       size: SizeType = 64) -> np.ndarray:
    """Generate one object-centric classification image.

    Args:
        cls_idx (int): Class index into :data:`SYNTH_IMAGENET_CLASSES`.
        index (int): Image index inside the class and split.
        split (str): ``'train'`` or ``'val'``.
        seed (int): Global seed.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB image.
    """
    h, w = _hw(size)
    rng = _rng(seed, _CLS_SALT, _SPLIT_SALT[split], cls_idx, index)
    scale = min(h, w) / 128.0
    # background: one or two random stuff textures split by a horizon
    keys = list(_STUFF_TEXTURES)
    k1, k2 = rng.choice(len(keys), 2, replace=False)
    img = _STUFF_TEXTURES[keys[k1]](rng, h, w, scale)
    if rng.random() < 0.5:
        hor = int(rng.uniform(0.2, 0.8) * h)
        img[hor:] = _STUFF_TEXTURES[keys[k2]](rng, h, w, scale)[hor:]
    for m, tex in _clutter(rng, h, w):
        img[m] = tex[m]
    parts = _cls_glyph(cls_idx, rng)
    s = rng.uniform(0.55, 0.95) * min(h, w)
    cx = rng.uniform(0.35, 0.65) * w
    cy = rng.uniform(0.35, 0.65) * h
    angle = np.deg2rad(rng.uniform(-30, 30))
    flip = bool(rng.random() < 0.5)
    m, tex = _place_parts(parts, h, w, cx, cy, s, angle, flip, rng)
    img[m] = tex[m]
    return _finish_image(rng, img)


def make_cls(out_dir: str = 'data/synthetic_imagenet',
             num_train: int = 24,
             num_val: int = 6,
             size: SizeType = 64,
             seed: int = 0,
             progress: ProgressType = None) -> dict:
    """Write a synthetic classification set in ImageNet layout.

    Layout::

        OUT/train/<wnid>/<wnid>_%05d.JPEG
        OUT/val/<wnid>/<wnid>_val_%05d.JPEG
        OUT/meta/train.txt   ("<wnid>/<file>.JPEG <label>" per line)
        OUT/meta/val.txt

    Both splits use class sub-folders, so mmpretrain's ``ImageNet`` (which
    picks ``meta/{split}.txt`` when present) and ``CustomDataset`` folder
    mode (which numbers the sorted folder names) give the same labels.

    Args:
        out_dir (str): Output root.
        num_train (int): Training images *per class*.
        num_val (int): Validation images *per class*.
        size (int | Sequence[int]): ``H`` or ``(H, W)``.
        seed (int): Global seed.
        progress (callable, optional): ``progress(iterable, desc)`` wrapper.

    Returns:
        dict: Summary with ``root``, ``classes``, ``wnids`` and per-split
        counts and meta file paths.
    """
    _check_counts(num_train, num_val)
    progress = progress or _identity_progress
    summary = dict(root=out_dir, task='cls', classes=SYNTH_IMAGENET_CLASSES,
                   wnids=SYNTH_IMAGENET_WNIDS, splits={})
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    for split, num in (('train', num_train), ('val', num_val)):
        jobs = [(c, i) for c in range(len(SYNTH_IMAGENET_WNIDS))
                for i in range(num)]
        lines = []
        for c, i in progress(jobs, f'cls/{split}'):
            wnid = SYNTH_IMAGENET_WNIDS[c]
            os.makedirs(osp.join(out_dir, split, wnid), exist_ok=True)
            tag = '' if split == 'train' else 'val_'
            rel = f'{wnid}/{wnid}_{tag}{i:05d}.JPEG'
            img = generate_cls_image(c, i, split, seed, size)
            _save_jpg(img, osp.join(out_dir, split, rel))
            lines.append(f'{rel} {c}\n')
        meta = osp.join(out_dir, 'meta', f'{split}.txt')
        with open(meta, 'w') as f:
            f.writelines(lines)
        summary['splits'][split] = dict(
            images=len(jobs), per_class=num, meta=meta)
    return summary


def summarise(summary: dict) -> str:
    """Human readable one-paragraph summary of a ``make_*`` result.

    Args:
        summary (dict): Return value of a ``make_*`` function.

    Returns:
        str: Multi-line description.
    """
    lines = [f"[{summary['task']}] {summary['root']}"]
    for split, st in summary['splits'].items():
        items = ', '.join(f'{k}={v}' for k, v in st.items()
                          if isinstance(v, (int, np.integer)))
        lines.append(f'  {split}: {items}')
        for k, v in st.items():
            if isinstance(v, str):
                lines.append(f'    {k}: {v}')
    return '\n'.join(lines)


def make_all(roots: Optional[Dict[str, str]] = None, **kwargs) -> List[dict]:
    """Generate seg, COCO (instances + panoptic) and cls sets.

    Args:
        roots (dict, optional): Output roots keyed by ``seg``, ``coco``,
            ``cls``; defaults to the ``data/synthetic_*`` folders.
        **kwargs: Forwarded to every ``make_*`` call.

    Returns:
        list[dict]: The three summaries.
    """
    defaults = dict(
        seg='data/synthetic_ade20k',
        coco='data/synthetic_coco',
        cls='data/synthetic_imagenet')
    roots = {**defaults, **(roots or {})}
    return [
        make_seg(roots['seg'], **kwargs),
        make_panoptic(roots['coco'], **kwargs),
        make_cls(roots['cls'], **kwargs)
    ]
