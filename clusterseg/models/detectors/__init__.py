"""mmdet detectors (kMaX-DeepLab)."""
from .kmax_deeplab import KMaXDeepLab

__all__ = ['KMaXDeepLab']
