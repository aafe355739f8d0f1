"""COCO annotations that mmdet drops without a word: counted, reported, or (strict) refused.

mmdet's ``CocoDataset`` silently skips an annotation whose box has a width or height below one
pixel or no area, whose box lies entirely outside its image, and (never looking them up) the
annotations of an image id or category id the json does not define. A set where most boxes are
broken then trains on almost nothing (``loss_bbox 0.0``) and nobody is told. And when
``filter_cfg`` removes every image the run stops with an empty-dataset error that does not say
the images were there but filtered out.

:func:`install_coco_checks` (called by ``tools/train.py`` and ``tools/test.py`` through
:func:`~clusterseg.engine.errors.add_input_checks`) makes every ``CocoDataset`` (not the
panoptic one, whose loader checks its segments itself) count those annotations per kind while
it loads its json, and log the counts with the first annotation ids. With strict annotations
(config key ``strict_annotations = True``, ``--cfg-options strict_annotations=True`` or
``CLUSTERSEG_STRICT_ANNOTATIONS=1``) the same report is an :class:`AnnotationError`. Annotations
of categories the config's ``metainfo.classes`` leaves out are only mentioned: dropping them is
what selecting a subset of classes means. Valid data loads exactly as before.
"""
import os
from collections import OrderedDict

STRICT_ENV = 'CLUSTERSEG_STRICT_ANNOTATIONS'
_STRICT = [False]
_SHOWN_IDS = 5

# kind -> what it means, in the order these checks apply
KINDS = OrderedDict([
    ('unknown_image', 'of an image id that is not in the json\'s images'),
    ('unknown_category', 'of a category id that is not in the json\'s categories'),
    ('degenerate_box', 'with a box of width or height < 1 px or area <= 0'),
    ('outside_image', 'with a box entirely outside its image'),
])


class AnnotationError(ValueError):
    """A COCO json holds annotations mmdet would drop, and strict annotations are on."""

    def __str__(self):
        return str(self.args[0])


def set_strict(strict):
    """Turn strict annotations on or off for datasets built from now on in this process."""
    _STRICT[0] = bool(strict)


def is_strict():
    return _STRICT[0] or os.environ.get(STRICT_ENV, '') not in ('', '0')


def audit_coco(coco, classes):
    """Classify each annotation of a loaded COCO api object as mmdet's ``CocoDataset`` will.

    Args:
        coco: ``mmdet.datasets.api_wrappers.COCO`` (``.dataset``, ``.imgs``, ``.cats``).
        classes (Sequence[str]): the dataset's ``metainfo['classes']``.

    Returns:
        dict: ``total`` (number of annotations), one list of annotation ids per kind of
        :data:`KINDS` (dropped), ``other_category`` (count of annotations of categories
        outside ``classes``, dropped by design) and ``missing_classes`` (names of ``classes``
        that no json category has: no annotation can have that label).
    """
    selected = set(coco.get_cat_ids(cat_names=classes))
    out = {k: [] for k in KINDS}
    out['other_category'] = 0
    names = {c.get('name') for c in coco.cats.values()}
    out['missing_classes'] = [c for c in classes if c not in names]
    anns = coco.dataset.get('annotations', []) or []
    out['total'] = len(anns)
    for ann in anns:
        ann_id = ann.get('id')
        img = coco.imgs.get(ann.get('image_id'))
        if img is None:
            out['unknown_image'].append(ann_id)
            continue
        if ann.get('category_id') not in coco.cats:
            out['unknown_category'].append(ann_id)
            continue
        if ann.get('ignore', False):
            continue
        if ann['category_id'] not in selected:
            out['other_category'] += 1  # not one of the classes: dropped by design
            continue
        try:
            x, y, w, h = ann['bbox']
            inter_w = max(0, min(x + w, img['width']) - max(x, 0))
            inter_h = max(0, min(y + h, img['height']) - max(y, 0))
            area = ann['area']
        except (KeyError, TypeError, ValueError):
            continue  # malformed: mmdet's own parser raises on it
        if w < 1 or h < 1 or area <= 0:
            out['degenerate_box'].append(ann_id)
        elif inter_w * inter_h == 0:
            out['outside_image'].append(ann_id)
    return out


def _ids(ids):
    shown = ', '.join(str(i) for i in ids[:_SHOWN_IDS])
    return shown + (', ...' if len(ids) > _SHOWN_IDS else '')


def format_audit(audit):
    """``'3 of 120 annotations are dropped: 2 with a box ... (ids 5, 9), ...'`` or ``''``."""
    parts = [f'{len(audit[k])} {what} (annotation ids {_ids(audit[k])})'
             for k, what in KINDS.items() if audit.get(k)]
    if not parts:
        return ''
    n = sum(len(audit[k]) for k in KINDS)
    return f'{n} of {audit["total"]} annotations are dropped: ' + '; '.join(parts)


def _missing(audit):
    missing = (audit or {}).get('missing_classes') or []
    if not missing:
        return ''
    return (f'metainfo.classes {", ".join(repr(c) for c in missing[:10])} '
            f'{"is" if len(missing) == 1 else "are"} not among the json\'s category names, so no '
            'annotation has that label')


def _where(ds):
    return f'{type(ds).__name__}(ann_file={getattr(ds, "ann_file", None)!r})'


def _log(msg, level):
    from mmengine.logging import print_log
    print_log(msg, logger='current', level=level)


def install_coco_checks():
    """Patch mmdet's ``CocoDataset`` (load and filter) and ``CocoPanopticDataset`` (filter)
    as described in the module docstring. Idempotent."""
    import logging

    from mmdet.datasets import CocoDataset, CocoPanopticDataset
    if getattr(CocoDataset.load_data_list, '_clusterseg_checked', False):
        return
    orig_load = CocoDataset.load_data_list

    def load_data_list(self):
        if isinstance(self, CocoPanopticDataset):
            return orig_load(self)
        api = self.COCOAPI

        def build_and_audit(path):
            coco = api(path)
            self._clusterseg_audit = audit_coco(coco, self.metainfo['classes'])
            return coco

        self.COCOAPI = build_and_audit  # instance attribute: what load_data_list calls
        try:
            data_list = orig_load(self)
        finally:
            del self.COCOAPI
        audit = getattr(self, '_clusterseg_audit', None)
        text = format_audit(audit) if audit else ''
        if text:
            if is_strict():
                raise AnnotationError(
                    f'{_where(self)}: {text}. mmdet would drop them without a word; with '
                    'strict annotations this is an error (fix the json, or leave '
                    'strict_annotations off to train without them).')
            _log(f'{_where(self)}: {text}. mmdet drops them; set strict_annotations=True '
                 '(--cfg-options strict_annotations=True) to make this an error.',
                 logging.WARNING)
        if _missing(audit):
            _log(f'{_where(self)}: {_missing(audit)}', logging.WARNING)
        if audit and audit['other_category']:
            _log(f'{_where(self)}: {audit["other_category"]} annotations of categories outside '
                 'metainfo.classes are not used (as selected by the config)', logging.INFO)
        return data_list

    load_data_list._clusterseg_checked = True
    CocoDataset.load_data_list = load_data_list
    for cls in (CocoDataset, CocoPanopticDataset):
        cls.filter_data = _explained_filter(cls.filter_data)


def _explained_filter(orig):

    def filter_data(self):
        import logging

        from clusterseg.engine.errors import EmptyDatasetError
        before = list(self.data_list)
        out = orig(self)
        if self.test_mode or not self.filter_cfg or len(out) == len(before):
            return out
        kept = {id(d) for d in out}
        removed = [d for d in before if id(d) not in kept]
        min_size = self.filter_cfg.get('min_size', 0)
        small = sum(min(d['width'], d['height']) < min_size for d in removed)
        reasons = []
        if len(removed) - small:
            what = ('no thing segment' if 'segments_info' in removed[0]
                    else 'no annotation of the classes')
            reasons.append(f'{len(removed) - small} with {what} '
                           f'(filter_empty_gt={self.filter_cfg.get("filter_empty_gt", False)})')
        if small:
            reasons.append(f'{small} smaller than min_size={min_size} px')
        text = (f'filter_cfg={dict(self.filter_cfg)} removed {len(removed)} of {len(before)} '
                f'images: {", ".join(reasons)}')
        if not out:
            audit = getattr(self, '_clusterseg_audit', None) or {}
            notes = (f' At loading, {format_audit(audit)}.' if format_audit(audit) else '')
            notes += f' Also, {_missing(audit)}.' if _missing(audit) else ''
            raise EmptyDatasetError(
                f'{_where(self)}: all {len(before)} images were filtered out, none is left to '
                f'train on ({text}).' + notes +
                ' The images were found: check the annotations (categories, boxes, '
                'metainfo.classes) or relax filter_cfg.')
        _log(f'{_where(self)}: {text}', logging.INFO)
        return out

    filter_data._clusterseg_checked = True
    return filter_data
