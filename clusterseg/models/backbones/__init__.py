"""Backbones (one file each, arch presets as a class-level ``arch_zoo``)."""
from .clustr import ClusTR  # noqa: F401
from .pacavit import PaCaViT
from .psvit import PSViT  # noqa: F401

__all__ = ['PaCaViT']
