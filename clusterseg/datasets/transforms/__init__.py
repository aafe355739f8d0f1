"""Data transforms of clusterseg: input checks that name the culprit file."""
from .checks import CheckSegLabels, CorruptImageError, LoadImageFromFile, SegLabelError

__all__ = ['CheckSegLabels', 'CorruptImageError', 'LoadImageFromFile', 'SegLabelError']
