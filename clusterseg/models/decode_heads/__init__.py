"""mmseg decode heads."""
from .kmax_seg_head import KMaXSegHead
from .paca_head import PaCaHead

__all__ = ['KMaXSegHead', 'PaCaHead']
