"""Label assigners (kMaX's PQ-style Hungarian matcher)."""
from .kmax_assigner import KMaXHungarianAssigner

__all__ = ['KMaXHungarianAssigner']
