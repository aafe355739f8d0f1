"""Pixel decoders (kMaX)."""
from .kmax_pixel_decoder import KMaXPixelDecoder

__all__ = ['KMaXPixelDecoder']
