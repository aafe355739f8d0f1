"""Backbones (one file each, arch presets as a class-level ``arch_zoo``)."""
from .clustr import ClusTR  # noqa: F401
from .pacavit import PaCaViT

__all__ = ['PaCaViT']
