"""mmdet heads (kMaX panoptic head and its fusion head)."""
from .kmax_fusion_head import KMaXFusionHead
from .kmax_head import KMaXPanopticHead

__all__ = ['KMaXFusionHead', 'KMaXPanopticHead']
