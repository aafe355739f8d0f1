"""Data transforms of clusterseg: input checks that name the culprit file."""
from .checks import (CheckSegLabels, CorruptImageError, LoadImageFromFile,
                     LoadPanopticAnnotations, PanopticAnnotationError, SegLabelError)

__all__ = ['CheckSegLabels', 'CorruptImageError', 'LoadImageFromFile', 'LoadPanopticAnnotations',
           'PanopticAnnotationError', 'SegLabelError']
