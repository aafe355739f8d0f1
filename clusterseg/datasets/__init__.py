"""Datasets of clusterseg."""
from .transforms import (CheckSegLabels, CorruptImageError, LoadImageFromFile,
                         LoadPanopticAnnotations, PanopticAnnotationError, SegLabelError)
from .synthetic import (SYNTH_ADE20K_CLASSES, SYNTH_COCO_CLASSES,
                        SYNTH_COCO_PANOPTIC_STUFF_CLASSES,
                        SYNTH_COCO_PANOPTIC_THING_CLASSES,
                        SYNTH_IMAGENET_CLASSES, make_cls, make_det,
                        make_panoptic, make_seg)

__all__ = [
    'SYNTH_ADE20K_CLASSES', 'SYNTH_COCO_CLASSES',
    'SYNTH_COCO_PANOPTIC_THING_CLASSES', 'SYNTH_COCO_PANOPTIC_STUFF_CLASSES',
    'SYNTH_IMAGENET_CLASSES', 'make_seg', 'make_det', 'make_panoptic',
    'make_cls', 'CheckSegLabels', 'CorruptImageError', 'LoadImageFromFile',
    'LoadPanopticAnnotations', 'PanopticAnnotationError', 'SegLabelError'
]
