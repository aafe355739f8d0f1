"""mmseg decode heads."""
from .paca_head import PaCaHead

__all__ = ['PaCaHead']
from .kmax_seg_head import KMaXSegHead  # noqa: F401,E402
