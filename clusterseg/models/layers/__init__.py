"""Clustering-attention primitives: plain torch modules, tensor in / tensor out.

No mmdet / mmseg / mmpretrain imports here; backbones and heads compose these.
"""
from .axial_attn import AxialAttention, AxialAttention2D
from .cluster import pool_clusters, recording_assignments
from .dpc_cluster import ClusteredKVAttention, cluster_counts, dpc_knn
from .drop import DropPath
from .dwconv import depthwise_conv2d
from .embed import ConvDownsample, LayerNorm2d
from .ffn import DWConv, MixFFN
from .kmax_blocks import ASPP, ConvBN, SemanticPredictor, kmax_norm
from .kmax_size import check_fixed_size, crop_to_extent, kmax_align_corners, pad_to_fixed_size, resize_like_kmax
from .kmeans_attn import (KMaXPredictor, KMaXTransformerDecoder, KMaXTransformerLayer,
                          kmeans_assignment, kmeans_cross_attention, kmeans_update)
from .paca import CLUSTERING, P2CConv2d, P2CLinear, P2CMlp, PaCaAttention
from .paca_teacher import PaCaTeacherConvMixer
from .token_pool import FullAttention, SharedAttention, TokenPool, check_attention_sharing

__all__ = [
    # the pooling primitive and the cluster contract's recording switch (every method)
    'pool_clusters', 'recording_assignments',
    # PaCa-ViT
    'CLUSTERING', 'P2CConv2d', 'P2CLinear', 'P2CMlp', 'PaCaAttention',
    'PaCaTeacherConvMixer',
    # ClusTR
    'ClusteredKVAttention', 'cluster_counts', 'dpc_knn',
    # PSViT
    'FullAttention', 'SharedAttention', 'TokenPool', 'check_attention_sharing',
    # kMaX-DeepLab
    'AxialAttention', 'AxialAttention2D', 'KMaXPredictor', 'KMaXTransformerDecoder',
    'KMaXTransformerLayer', 'kmeans_assignment', 'kmeans_cross_attention', 'kmeans_update',
    'ASPP', 'ConvBN', 'SemanticPredictor', 'kmax_norm', 'check_fixed_size', 'crop_to_extent',
    'kmax_align_corners', 'pad_to_fixed_size', 'resize_like_kmax',
    # shared building blocks
    'ConvDownsample', 'DropPath', 'DWConv', 'LayerNorm2d', 'MixFFN', 'depthwise_conv2d',
]
