"""Backbones (one file each, arch presets as a class-level ``arch_zoo``)."""
from .pacavit import PaCaViT

__all__ = ['PaCaViT']
