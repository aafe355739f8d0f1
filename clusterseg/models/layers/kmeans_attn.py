"""k-means cross-attention and the kMaX transformer decoder (Yu et al., ECCV 2022, spec kmax.md §1.3-2).

Cluster centres (the object queries) attend to pixels by *k-means*: every pixel is assigned to
the one cluster whose mask logit is highest (argmax over the K clusters, detached), and each
centre is updated by the sum of the values of its pixels (:func:`~.cluster.pool_clusters`, the
pooling every method here shares). The assignment logits are the layer's own mask prediction, so
deep supervision on the masks directly trains the clustering.

Plain torch modules, no mm* imports; built from the BatchNorm blocks of :mod:`.kmax_blocks`.
Module names follow the PyTorch port's keys without the leading underscores (spec §6), so the
converter is mostly a rename.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cluster import pool_clusters
from .drop import DropPath
from .kmax_blocks import ConvBN, kmax_norm


def kmeans_assignment(mask_logits):
    """The k-means assignment step: hard one-hot argmax over clusters, no gradient.

    Args:
        mask_logits (Tensor): (B, K, H, W) or (B, K, N) cluster-pixel affinities.
    Returns:
        Tensor: (B, K, N) float one-hot; every pixel belongs to exactly one cluster.
    """
    logits = mask_logits.detach().flatten(2)  # (B, K, N)
    num_clusters = logits.shape[1]
    index = logits.argmax(dim=1)  # (B, N)
    return F.one_hot(index, num_clusters).transpose(1, 2).float()  # (B, K, N)


def kmeans_update(assignment, values):
    """The k-means centre-update step: the SUM (not mean) of the values of each cluster's pixels.

    Args:
        assignment (Tensor): (B, K, N) one-hot assignment.
        values (Tensor): (B, C, N) pixel values.
    Returns:
        Tensor: (B, C, K), computed in fp32.
    """
    # fp32 even under autocast: a centre sums up to N pixel values
    with torch.autocast(device_type=values.device.type, enabled=False):
        centres = pool_clusters(assignment.float(), values.float().transpose(1, 2))  # (B, K, C)
    return centres.transpose(1, 2)  # (B, C, K)


def kmeans_cross_attention(mask_logits, values):
    """``argmax_K(Q_c K_p^T) V_p``: k-means cross-attention from the affinity logits.

    Args:
        mask_logits (Tensor): (B, K, H, W) affinities (the layer's mask logits).
        values (Tensor): (B, C, H, W) or (B, C, N) pixel values.
    Returns:
        Tensor: (B, C, K) updates for the cluster centres.
    """
    return kmeans_update(kmeans_assignment(mask_logits), values.flatten(2))


class KMaXPredictor(nn.Module):
    """Class, mask-kernel and pixel-embedding heads; mask logits are their dot product.

    Args:
        pixel_channels (int): channels of the pixel features it reads (256 in the paper).
        query_channels (int): channels of the class / mask embeddings (256).
        num_classes (int): C; the class head has C + 1 outputs, the last is void.
        embed_channels (int): pixel / mask-kernel embedding width (128).
        hidden_channels (int): pixel-head width (256).
        void_prior (float): prior probability of void, added as a constant logit bias (0.9).

    Returns (forward): dict with ``class_logits`` (B, K, C+1), ``mask_logits`` (B, K, H, W),
    ``pixel_feature`` (B, E, H, W) L2-normalised over E.
    """

    def __init__(self, pixel_channels=256, query_channels=256, num_classes=133, embed_channels=128,
                 hidden_channels=256, void_prior=0.9):
        super().__init__()
        self.pixel_space_head_conv0bnact = ConvBN(pixel_channels, pixel_channels, 5, groups=pixel_channels,
                                                  act=True, conv_init='xavier_uniform')
        self.pixel_space_head_conv1bnact = ConvBN(pixel_channels, hidden_channels, 1, act=True)
        self.pixel_space_head_last_convbn = ConvBN(hidden_channels, embed_channels, 1, bias=True,
                                                   conv_init=0.01)
        self.transformer_mask_head = ConvBN(query_channels, embed_channels, 1, ndim=1)
        self.transformer_class_head = ConvBN(query_channels, num_classes + 1, 1, ndim=1, bias=True,
                                             norm=False, conv_init=0.01)
        self.pixel_space_mask_batch_norm = kmax_norm(2, 1)  # a learned temperature on the mask logits
        nn.init.constant_(self.pixel_space_mask_batch_norm.weight, 0.1)
        # void logit offset so that softmax starts at ~void_prior for void: log(C * p / (1 - p))
        self.void_bias = math.log(num_classes * void_prior / (1 - void_prior))

    def forward(self, class_embed, mask_embed, pixel_space):
        pixel = self.pixel_space_head_conv0bnact(pixel_space)
        pixel = self.pixel_space_head_conv1bnact(pixel)
        pixel = F.normalize(self.pixel_space_head_last_convbn(pixel), p=2, dim=1)  # (B, E, H, W)
        class_logits = self.transformer_class_head(class_embed).transpose(1, 2)  # (B, K, C+1)
        void_bias = torch.zeros_like(class_logits[0, 0])
        void_bias[-1] = self.void_bias
        class_logits = class_logits + void_bias
        kernels = self.transformer_mask_head(mask_embed)  # (B, E, K)
        mask_logits = torch.einsum('behw,bek->bkhw', pixel, kernels)
        B, K, H, W = mask_logits.shape
        mask_logits = self.pixel_space_mask_batch_norm(mask_logits.reshape(B, 1, K, H * W))
        mask_logits = mask_logits.reshape(B, K, H, W)
        return dict(class_logits=class_logits, mask_logits=mask_logits, pixel_feature=pixel)


class ClusterSelfAttention(nn.Module):
    """Multi-head self-attention among cluster centres, BN on the logits, no 1/sqrt(d) scaling."""

    def __init__(self, key_channels=128, value_channels=256, num_heads=8):
        super().__init__()
        assert key_channels % num_heads == 0 and value_channels % num_heads == 0
        self.num_heads = num_heads
        self.batch_norm_similarity = kmax_norm(2, num_heads)
        self.batch_norm_retrieved_value = kmax_norm(1, value_channels)

    def forward(self, q, k, v):
        """q, k (B, Ck, K); v (B, Cv, K) -> (B, Cv, K) (BN + GELU applied)."""
        B, _, K = q.shape
        h = self.num_heads
        q, k, v = q.reshape(B, h, -1, K), k.reshape(B, h, -1, K), v.reshape(B, h, -1, K)
        sim = torch.einsum('bhdk,bhdl->bhkl', q, k)  # (B, h, K, K)
        sim = self.batch_norm_similarity(sim)
        attn = sim.float().softmax(dim=-1).to(v.dtype)
        out = torch.einsum('bhkl,bhdl->bhdk', attn, v).reshape(B, -1, K)  # (B, Cv, K)
        return F.gelu(self.batch_norm_retrieved_value(out))


class KMaXTransformerLayer(nn.Module):
    """One kMaX layer: k-means cross-attention and self-attention in parallel, then an FFN.

    Both attention branches read the same projected queries (dual-path layout); each branch ends
    in a zero-gamma BN so the layer starts as the identity.

    Args:
        pixel_channels (int): Cp of the pixel features of this stride.
        query_channels (int): D, the cluster-centre width (256).
        num_classes (int): C for the layer's predictor.
        bottleneck_channels (int): width of the pixel / query projections (256).
        key_channels (int): total self-attention key depth (128).
        value_channels (int): total value depth of both attentions (256).
        num_heads (int): self-attention heads (8).
        ffn_channels (int): FFN hidden width (2048).
        embed_channels (int): predictor embedding width (128).
        drop_path (float): stochastic depth on the three residual branches.
    """

    def __init__(self, pixel_channels, query_channels=256, num_classes=133, bottleneck_channels=256,
                 key_channels=128, value_channels=256, num_heads=8, ffn_channels=2048, embed_channels=128,
                 drop_path=0.0):
        super().__init__()
        self.key_channels, self.value_channels = key_channels, value_channels
        self.pixel_conv1_bn_act = ConvBN(pixel_channels, bottleneck_channels, 1, act=True)
        self.query_conv1_bn_act = ConvBN(query_channels, bottleneck_channels, 1, ndim=1, act=True)
        self.pixel_v_conv_bn = ConvBN(bottleneck_channels, value_channels, 1)
        self.predictor = KMaXPredictor(bottleneck_channels, bottleneck_channels, num_classes, embed_channels)
        self.kmeans_query_batch_norm_retrieved_value = kmax_norm(1, value_channels)
        self.kmeans_query_conv3_bn = ConvBN(value_channels, query_channels, 1, ndim=1, gamma_init=0.)
        self.query_qkv_conv_bn = ConvBN(bottleneck_channels, 2 * key_channels + value_channels, 1, ndim=1)
        self.query_self_attention = ClusterSelfAttention(key_channels, value_channels, num_heads)
        self.query_conv3_bn = ConvBN(value_channels, query_channels, 1, ndim=1, gamma_init=0.)
        self.query_ffn_conv1_bn_act = ConvBN(query_channels, ffn_channels, 1, ndim=1, act=True)
        self.query_ffn_conv2_bn = ConvBN(ffn_channels, query_channels, 1, ndim=1, gamma_init=0.)
        self.drop_path_kmeans = DropPath(drop_path)
        self.drop_path_attn = DropPath(drop_path)
        self.drop_path_ffn = DropPath(drop_path)

    def forward(self, pixel_feature, query):
        """pixel_feature (B, Cp, H, W), query (B, D, K) -> (query (B, D, K), prediction dict)."""
        pixel_space = self.pixel_conv1_bn_act(F.gelu(pixel_feature))  # (B, 256, H, W)
        query_space = self.query_conv1_bn_act(query)  # (B, 256, K)

        # k-means cross-attention; the affinities are this layer's mask logits (an aux output)
        pixel_value = self.pixel_v_conv_bn(pixel_space)  # (B, Cv, H, W)
        pred = self.predictor(query_space, query_space, pixel_space)
        update = kmeans_cross_attention(pred['mask_logits'], pixel_value).to(query.dtype)  # (B, Cv, K)
        update = self.kmeans_query_conv3_bn(self.kmeans_query_batch_norm_retrieved_value(update))
        query = query + self.drop_path_kmeans(update)

        # self-attention among the clusters, from the pre-update projection
        q, k, v = self.query_qkv_conv_bn(query_space).split(
            [self.key_channels, self.key_channels, self.value_channels], dim=1)
        attn = self.query_conv3_bn(self.query_self_attention(q, k, v))
        query = F.gelu(query + self.drop_path_attn(attn))

        ffn = self.query_ffn_conv2_bn(self.query_ffn_conv1_bn_act(query))
        query = F.gelu(query + self.drop_path_ffn(ffn))
        return query, pred


class KMaXTransformerDecoder(nn.Module):
    """Learned cluster centres refined by kMaX layers over strides 32, 16, 8, then the final predictor.

    Args:
        in_channels (list[int]): pixel channels of the multi-scale features (OS32, OS16, OS8).
        num_layers (list[int]): kMaX layers per scale ([2, 2, 2]).
        final_channels (int): channels of the final (OS4) pixel features.
        num_queries (int): K cluster centres (128).
        num_classes (int): C.
        query_channels (int): D (256).
        drop_path (float): stochastic depth of every layer.
        **layer_kwargs: passed to every :class:`KMaXTransformerLayer`.

    Returns (forward): (final prediction dict, list of per-layer prediction dicts), see
    :class:`KMaXPredictor`; per-layer predictions are made before that layer's update.
    """

    def __init__(self, in_channels=(2048, 1024, 512), num_layers=(2, 2, 2), final_channels=256,
                 num_queries=128, num_classes=133, query_channels=256, drop_path=0.0, embed_channels=128,
                 **layer_kwargs):
        super().__init__()
        self.num_layers = tuple(num_layers)
        self.cluster_centers = nn.Embedding(query_channels, num_queries)  # weight (D, K)
        nn.init.trunc_normal_(self.cluster_centers.weight, std=1.0)
        self.kmax_transformer_layers = nn.ModuleList()
        for channels, n in zip(in_channels, num_layers):
            for _ in range(n):
                self.kmax_transformer_layers.append(KMaXTransformerLayer(
                    channels, query_channels, num_classes, drop_path=drop_path, embed_channels=embed_channels,
                    **layer_kwargs))
        self.class_embedding_projection = ConvBN(query_channels, query_channels, 1, ndim=1, act=True)
        self.mask_embedding_projection = ConvBN(query_channels, query_channels, 1, ndim=1, act=True)
        self.predictor = KMaXPredictor(final_channels, query_channels, num_classes, embed_channels)

    def forward(self, multi_scale_features, final_features):
        B = final_features.shape[0]
        query = self.cluster_centers.weight.unsqueeze(0).expand(B, -1, -1)  # (B, D, K)
        aux = []
        layer_idx = 0
        for feat, n in zip(multi_scale_features, self.num_layers):
            for _ in range(n):
                query, pred = self.kmax_transformer_layers[layer_idx](feat, query)
                aux.append(pred)
                layer_idx += 1
        final = self.predictor(self.class_embedding_projection(query), self.mask_embedding_projection(query),
                               final_features)
        return final, aux
