"""Data transforms of clusterseg: input checks that name the culprit file."""
from .checks import (CheckSegLabels, CorruptImageError, LoadImageFromFile,
                     LoadPanopticAnnotations, LoadSegAnnotations, PanopticAnnotationError,
                     SegAnnotationError, SegLabelError)

__all__ = ['CheckSegLabels', 'CorruptImageError', 'LoadImageFromFile', 'LoadPanopticAnnotations',
           'LoadSegAnnotations', 'PanopticAnnotationError', 'SegAnnotationError', 'SegLabelError']
