"""kMaX losses."""
from .kmax_loss import KMaXLoss

__all__ = ['KMaXLoss']
