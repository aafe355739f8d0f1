"""Transforms that fail loudly on bad input files, naming the file.

``tools/train.py`` and ``tools/test.py`` put them into the pipelines of any config (see
:func:`clusterseg.engine.add_input_checks`); on valid data they change nothing.
"""
from collections import Counter

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as _MMCVLoadImageFromFile
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadPanopticAnnotations as _MMDetLoadPanopticAnnotations
from mmdet.structures.mask import BitmapMasks
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations as _MMSegLoadAnnotations

from clusterseg.registry import TRANSFORMS

_JPEG_SOI, _JPEG_EOI = b'\xff\xd8', b'\xff\xd9'
_PNG_SIG, _PNG_IEND = b'\x89PNG\r\n\x1a\n', b'IEND'


class CorruptImageError(ValueError):
    """An image file cannot be decoded, or is truncated."""


class SegLabelError(ValueError):
    """A segmentation annotation holds a label outside ``[0, num_classes)`` and not ignored."""


class PanopticAnnotationError(ValueError):
    """A panoptic PNG and its ``segments_info`` in the annotation json disagree."""


class SegAnnotationError(ValueError):
    """A segmentation annotation is not a single-channel 8-bit label map of its image's size."""


def check_image_bytes(data, path):
    """Raise :class:`CorruptImageError` naming ``path`` if a JPEG/PNG file is truncated.

    Depending on the build, OpenCV decodes a truncated JPEG with only a warning (the missing
    part comes back grey), so a cut file could train silently. A JPEG must end with its end-of-image marker (in its
    last KiB); a PNG must hold its ``IEND`` chunk.
    """
    if data[:2] == _JPEG_SOI:
        if _JPEG_EOI not in data[-1024:]:  # (0xFF is byte-stuffed inside the scan data)
            raise CorruptImageError(f'truncated JPEG file {path} ({len(data)} bytes, no '
                                    'end-of-image marker): re-download or remove it')
    elif data[:8] == _PNG_SIG:
        if _PNG_IEND not in data[-32:]:
            raise CorruptImageError(f'truncated PNG file {path} ({len(data)} bytes, no IEND '
                                    'chunk): re-download or remove it')


@TRANSFORMS.register_module()
class LoadImageFromFile(_MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments, same decoding) that raises
    :class:`CorruptImageError` naming the file when it is empty, truncated or undecodable,
    instead of a bare assertion (or, for a truncated JPEG, silently grey pixels)."""

    def transform(self, results):
        filename = results['img_path']
        try:
            if self.file_client_args is not None:
                img_bytes = fileio.FileClient.infer_client(self.file_client_args,
                                                           filename).get(filename)
            else:
                img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError as e:
            if self.ignore_empty:
                return None
            raise FileNotFoundError(f'image file {filename} listed by the dataset does not '
                                    'exist') from e
        try:
            if not img_bytes:
                raise CorruptImageError(f'empty image file {filename} (0 bytes)')
            check_image_bytes(img_bytes, filename)
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
            if img is None:
                raise CorruptImageError(f'cannot decode image file {filename} '
                                        f'({len(img_bytes)} bytes): not an image or corrupted')
        except Exception as e:
            if self.ignore_empty:
                return None
            if isinstance(e, CorruptImageError):
                raise
            raise CorruptImageError(f'cannot decode image file {filename}: {e}') from e
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class CheckSegLabels(BaseTransform):
    """Check a loaded ``gt_seg_map`` (after ``LoadAnnotations``' ``reduce_zero_label`` and
    ``label_map``) only holds ``0..num_classes-1`` or ``ignore_index``.

    A larger value would otherwise surface as an index error deep in the loss (or, on a GPU, a
    device-side assert) without saying which file is wrong.

    Args:
        num_classes (int): number of classes of the model's head.
        ignore_index (int): the label that is ignored. Default: 255.
    """

    def __init__(self, num_classes, ignore_index=255):
        if int(num_classes) <= 0:
            raise ValueError(f'CheckSegLabels: num_classes must be > 0, got {num_classes}')
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index

    def transform(self, results):
        seg = results.get('gt_seg_map', None)
        if seg is None:
            return results
        values = np.unique(seg)
        bad = values[((values < 0) | (values >= self.num_classes)) & (values != self.ignore_index)]
        if bad.size:
            path = results.get('seg_map_path', '<unknown file>')
            shown = ', '.join(str(int(v)) for v in bad[:10]) + (' ...' if bad.size > 10 else '')
            raise SegLabelError(
                f'annotation {path} holds label value(s) {shown} (after reduce_zero_label='
                f'{results.get("reduce_zero_label", False)} and the label map), outside '
                f'0..{self.num_classes - 1} (num_classes={self.num_classes}) and not the '
                f'ignore index {self.ignore_index}')
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')


@TRANSFORMS.register_module()
class LoadSegAnnotations(_MMSegLoadAnnotations):
    """mmseg's ``LoadAnnotations`` (same arguments, same ``gt_seg_map`` on valid data) that
    checks the decoded annotation file before using it, raising :class:`SegAnnotationError`
    naming the file and what was found:

    * not a single-channel map (an RGB or RGBA colour-coded mask): mmseg would keep the
      channels and fail much later, or mix them up;
    * not 8-bit (e.g. a 16-bit PNG): mmseg casts to ``uint8``, so label 256 silently becomes 0;
    * a size other than its image's (``ori_shape``): it trains at batch size 1 and fails with an
      anonymous ``stack expects each tensor to be equal size`` at larger batches.

    The file is read and decoded once, as mmseg does.
    """

    def _load_seg_map(self, results):
        path = results['seg_map_path']
        data = fileio.get(path, backend_args=self.backend_args)
        raw = mmcv.imfrombytes(data, flag='unchanged', backend=self.imdecode_backend)
        if raw is None:
            raise SegAnnotationError(f'cannot decode segmentation annotation {path} '
                                     f'({len(data)} bytes)')
        if raw.ndim == 3 and raw.shape[2] == 1:
            raw = raw[..., 0]
        img = results.get('img_path', '<unknown image>')
        if raw.ndim != 2:
            raise SegAnnotationError(
                f'segmentation annotation {path} (image {img}) has {raw.shape[2]} channels '
                f'({raw.shape[0]}x{raw.shape[1]}x{raw.shape[2]}, {raw.dtype}): expected a '
                'single-channel 8-bit label map whose pixel values are class ids (a colour-coded '
                'RGB mask must be converted to ids first)')
        if raw.dtype not in (np.uint8, np.bool_):
            raise SegAnnotationError(
                f'segmentation annotation {path} (image {img}) is {raw.dtype} (values '
                f'{int(raw.min())}..{int(raw.max())}): expected a single-channel 8-bit label '
                'map; mmseg casts to uint8, so values above 255 would wrap around (256 -> 0). '
                'Save it as an 8-bit PNG')
        shape = results.get('ori_shape', None)
        if shape is not None and tuple(raw.shape) != tuple(shape[:2]):
            raise SegAnnotationError(
                f'segmentation annotation {path} is {raw.shape[0]}x{raw.shape[1]} (HxW) but its '
                f'image {img} is {shape[0]}x{shape[1]}: an annotation must have its image\'s size')
        gt = raw.astype(np.uint8)
        # from here on exactly mmseg 1.2.2's LoadAnnotations._load_seg_map
        if self.reduce_zero_label is None:
            self.reduce_zero_label = results['reduce_zero_label']
        assert self.reduce_zero_label == results['reduce_zero_label'], \
            'Initialize dataset with `reduce_zero_label` as ' \
            f'{results["reduce_zero_label"]} but when load annotation ' \
            f'the `reduce_zero_label` is {self.reduce_zero_label}'
        if self.reduce_zero_label:
            gt[gt == 0] = 255
            gt = gt - 1
            gt[gt == 254] = 255
        if results.get('label_map', None) is not None:
            copy = gt.copy()
            for old_id, new_id in results['label_map'].items():
                gt[copy == old_id] = new_id
        results['gt_seg_map'] = gt
        results['seg_fields'].append('gt_seg_map')


def _ids(values, limit=10):
    values = sorted(int(v) for v in values)
    return ', '.join(str(v) for v in values[:limit]) + (f' ... ({len(values)} in all)'
                                                        if len(values) > limit else '')


@TRANSFORMS.register_module()
class LoadPanopticAnnotations(_MMDetLoadPanopticAnnotations):
    """mmdet's ``LoadPanopticAnnotations`` (same arguments and outputs on valid data) that checks
    the panoptic PNG against its ``segments_info`` from the annotation json.

    mmdet's loader reads segment ``id``'s pixels from the PNG without checking either side, so a
    json segment whose id is absent from the PNG becomes an empty thing mask, and PNG pixels whose
    id the json does not list silently become "ignore". Both are the classic symptom of a PNG
    folder and a json that belong to different versions of a dataset. Raised instead, naming
    the PNG, its image and the ids (:class:`PanopticAnnotationError`):

    * the PNG is missing, empty, truncated or undecodable;
    * the PNG size differs from the image's (or the json's ``height`` x ``width``);
    * a ``segments_info`` id does not occur in the PNG, a non-zero PNG id (0 is VOID) is not in
      ``segments_info``, or an id is listed twice.

    The checks cost one ``np.unique`` over the id map per image.
    """

    def _load_masks_and_semantic_segs(self, results):
        path = results.get('seg_map_path', None)
        if path is None:  # inference without ground truth
            return
        img = results.get('img_path', '<unknown image>')
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'panoptic PNG {path} of image {img} (listed in the '
                                    'annotation json) does not exist') from e
        if not data:
            raise CorruptImageError(f'empty panoptic PNG {path} (0 bytes) of image {img}')
        check_image_bytes(data, path)
        pan = mmcv.imfrombytes(data, flag='color', channel_order='rgb')
        if pan is None:
            raise CorruptImageError(f'cannot decode panoptic PNG {path} of image {img} '
                                    f'({len(data)} bytes)')
        pan = self.rgb2id(pan)
        expected = {}
        if 'ori_shape' in results:
            expected['image'] = tuple(results['ori_shape'][:2])
        if 'height' in results and 'width' in results:
            expected['annotation json (height, width)'] = (results['height'], results['width'])
        for what, shape in expected.items():
            if tuple(pan.shape[:2]) != tuple(shape):
                raise PanopticAnnotationError(
                    f'panoptic PNG {path} is {pan.shape[0]}x{pan.shape[1]} (HxW) but the '
                    f'{what} of {img} is {shape[0]}x{shape[1]}')
        segments = results.get('segments_info', [])
        json_ids = Counter(int(s['id']) for s in segments)
        dup = {i for i, n in json_ids.items() if n > 1}
        if dup:
            raise PanopticAnnotationError(
                f'segments_info of {img} lists segment id(s) {_ids(dup)} more than once '
                f'(panoptic PNG {path})')
        png_ids = np.unique(pan)
        png_ids = set(png_ids[png_ids != 0].tolist())
        missing, unlisted = json_ids.keys() - png_ids, png_ids - json_ids.keys()
        if missing or unlisted:
            parts = []
            if missing:
                parts.append(f'segment id(s) {_ids(missing)} are in the json segments_info but '
                             'not in the PNG')
            if unlisted:
                parts.append(f'segment id(s) {_ids(unlisted)} are in the PNG but not in the json '
                             'segments_info')
            raise PanopticAnnotationError(
                f'panoptic PNG {path} does not match the annotation json for image {img}: '
                + '; '.join(parts) + '. Are the PNG folder and the json from the same '
                'version of the dataset?')

        gt_masks, gt_seg = [], np.full(pan.shape, 255, dtype=pan.dtype)
        for seg in segments:
            mask = pan == seg['id']
            gt_seg[mask] = seg['category']
            if seg.get('is_thing'):
                gt_masks.append(mask.astype(np.uint8))
        if self.with_mask:
            h, w = results['ori_shape']
            results['gt_masks'] = BitmapMasks(gt_masks, h, w)
        if self.with_seg:
            results['gt_seg_map'] = gt_seg
