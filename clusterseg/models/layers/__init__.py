"""Clustering-attention primitives: plain torch modules, tensor in / tensor out.

No mmdet / mmseg / mmpretrain imports here; backbones and heads compose these.
"""
from .drop import DropPath
from .dpc_cluster import ClusteredKVAttention, cluster_counts, dpc_knn, merge_clusters  # noqa: F401
from .embed import ConvDownsample, LayerNorm2d
from .ffn import DWConv, MixFFN
from .paca import CLUSTERING, P2CConv2d, P2CLinear, P2CMlp, PaCaAttention, cluster_tokens
from .token_pool import FullAttention, SharedAttention, TokenPool, check_attention_sharing  # noqa: F401

__all__ = ['DropPath', 'ConvDownsample', 'LayerNorm2d', 'DWConv', 'MixFFN', 'CLUSTERING', 'P2CConv2d',
           'P2CLinear', 'P2CMlp', 'PaCaAttention', 'cluster_tokens']
