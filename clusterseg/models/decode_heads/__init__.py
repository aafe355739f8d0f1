"""mmseg decode heads."""
from .paca_head import PaCaHead

__all__ = ['PaCaHead']
