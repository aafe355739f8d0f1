"""Clustering-attention primitives: plain torch modules, tensor in / tensor out.

No mmdet / mmseg / mmpretrain imports here; backbones and heads compose these.
"""
from .axial_attn import AxialAttention, AxialAttention2D
from .dpc_cluster import ClusteredKVAttention, cluster_counts, dpc_knn, merge_clusters
from .drop import DropPath
from .embed import ConvDownsample, LayerNorm2d
from .ffn import DWConv, MixFFN
from .kmeans_attn import (KMaXPredictor, KMaXTransformerDecoder, KMaXTransformerLayer,
                          kmeans_assignment, kmeans_cross_attention, kmeans_update)
from .paca import CLUSTERING, P2CConv2d, P2CLinear, P2CMlp, PaCaAttention, cluster_tokens
from .paca_teacher import PaCaTeacherConvMixer
from .token_pool import FullAttention, SharedAttention, TokenPool, check_attention_sharing

__all__ = [
    # PaCa-ViT
    'CLUSTERING', 'P2CConv2d', 'P2CLinear', 'P2CMlp', 'PaCaAttention', 'cluster_tokens',
    'PaCaTeacherConvMixer',
    # ClusTR
    'ClusteredKVAttention', 'cluster_counts', 'dpc_knn', 'merge_clusters',
    # PSViT
    'FullAttention', 'SharedAttention', 'TokenPool', 'check_attention_sharing',
    # kMaX-DeepLab
    'AxialAttention', 'AxialAttention2D', 'KMaXPredictor', 'KMaXTransformerDecoder',
    'KMaXTransformerLayer', 'kmeans_assignment', 'kmeans_cross_attention', 'kmeans_update',
    # shared building blocks
    'ConvDownsample', 'DropPath', 'DWConv', 'LayerNorm2d', 'MixFFN',
]
