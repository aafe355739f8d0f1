"""Backbones (one file each, arch presets as a class-level ``arch_zoo``)."""
from .clustr import ClusTR
from .pacavit import PaCaViT
from .psvit import PSViT

__all__ = ['ClusTR', 'PaCaViT', 'PSViT']
