"""k-means cross-attention and the kMaX transformer decoder (Yu et al., ECCV 2022, spec kmax.md §1.3-2).

Cluster centres (the object queries) attend to pixels by *k-means*: every pixel is assigned to
the one cluster whose mask logit is highest (argmax over the K clusters, detached), and each
centre is updated by the sum of the values of its pixels. The assignment logits are the layer's
own mask prediction, so deep supervision on the masks directly trains the clustering.

Plain torch modules, no mm* imports. Everything is BatchNorm (SyncBN in the paper, eps 1e-3,
momentum 0.01); module names follow the PyTorch port's keys without the leading underscores
(spec §6), so the converter is mostly a rename.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .drop import DropPath

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # torch momentum 0.01 == TF decay 0.99


def _norm(ndim, channels):
    bn = nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d
    return bn(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBN(nn.Module):
    """Conv (1-D or 2-D) + BatchNorm (+ GELU): the one building block of the kMaX decoder.

    Args:
        in_channels, out_channels (int): channels.
        kernel_size (int): odd kernel; 'same' padding.
        ndim (int): 1 for (B, C, K) query tensors, 2 for (B, C, H, W) pixel maps.
        groups (int): conv groups (``in_channels`` for depthwise).
        bias (bool): conv bias.
        norm (bool): add the BatchNorm.
        act (bool): add a GELU after the norm.
        gamma_init (float): BN weight init; 0 makes a residual branch start as the identity.
        conv_init (str | float): ``'he_normal'``, ``'xavier_uniform'`` or a float: trunc-normal std.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, ndim=2, groups=1, bias=False, norm=True,
                 act=False, gamma_init=1.0, conv_init='he_normal'):
        super().__init__()
        conv = nn.Conv1d if ndim == 1 else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                         bias=bias)
        self.norm = _norm(ndim, out_channels) if norm else None
        self.act = nn.GELU() if act else None
        if conv_init == 'he_normal':
            fan_in = self.conv.weight[0].numel()
            nn.init.trunc_normal_(self.conv.weight, std=math.sqrt(2.0 / fan_in))
        elif conv_init == 'xavier_uniform':
            nn.init.xavier_uniform_(self.conv.weight)
        else:
            nn.init.trunc_normal_(self.conv.weight, std=float(conv_init))
        if bias:
            nn.init.zeros_(self.conv.bias)
        if self.norm is not None:
            nn.init.constant_(self.norm.weight, gamma_init)

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


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
    with torch.autocast(device_type=values.device.type, enabled=False):
        return torch.einsum('bkn,bcn->bck', assignment.float(), values.float())


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
        self.pixel_space_mask_batch_norm = _norm(2, 1)  # a learned temperature on the mask logits
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
        self.batch_norm_similarity = _norm(2, num_heads)
        self.batch_norm_retrieved_value = _norm(1, value_channels)

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
        self.kmeans_query_batch_norm_retrieved_value = _norm(1, value_channels)
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


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (1x1, three dilated 3x3, image pooling), ConvBN-GELU branches."""

    def __init__(self, in_channels, channels=256, rates=(6, 12, 18), dropout=0.1):
        super().__init__()
        self.aspp_conv0 = ConvBN(in_channels, channels, 1, act=True)
        self.aspp_dilated = nn.ModuleList()
        for rate in rates:
            m = ConvBN(in_channels, channels, 3, act=True)
            m.conv.padding, m.conv.dilation = (rate, rate), (rate, rate)
            self.aspp_dilated.append(m)
        self.aspp_pool = ConvBN(in_channels, channels, 1, act=True)
        self.proj_conv_bn_act = ConvBN(channels * (len(rates) + 2), channels, 1, act=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        outs = [self.aspp_conv0(x)] + [m(x) for m in self.aspp_dilated]
        pooled = self.aspp_pool.conv(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        if not (self.training and x.shape[0] == 1):  # BN cannot train on one value per channel
            pooled = self.aspp_pool.norm(pooled)
        pooled = self.aspp_pool.act(pooled)
        outs.append(pooled.expand(-1, -1, *x.shape[2:]))
        return self.dropout(self.proj_conv_bn_act(torch.cat(outs, dim=1)))


def kmax_align_corners(length):
    """kMaX's ``align_corners`` rule: True when ``length`` is odd (sizes like 1281 = 4 * 320 + 1,
    whose strided maps keep the first and last pixel). Which length decides differs per call site
    in the reference (bytedance/kmax-deeplab), so every caller names it:

    - pixel decoder ``ResizedFuse``: the *source* (low-resolution) width;
    - auxiliary semantic predictor: the width of the ASPP output, for both of its upsamplings;
    - deep-supervision outputs (``_set_aux_loss``): the *target height*;
    - post-processing (``kmax_model.py``): the padded image width.
    """
    return int(length) % 2 == 1


def resize_like_kmax(x, size, align_corners):
    """Bilinear resize of (B, C, h, w) to ``size``; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)


class SemanticPredictor(nn.Module):
    """Auxiliary semantic decoder (Panoptic-DeepLab style, training only): ASPP on res5, fuse res3, res2.

    Args:
        in_channels (list[int]): channels of (res5, res3, res2).
        num_classes (int): number of output channels (C + 1 in kMaX: void is an output, never a target).
        aspp_channels (int): 256.
        low_level_channels (list[int]): projections of res3 / res2 (64, 32).
        decoder_channels (int): fusion / head width (256).
    """

    def __init__(self, in_channels=(2048, 512, 256), num_classes=134, aspp_channels=256,
                 low_level_channels=(64, 32), decoder_channels=256):
        super().__init__()
        self.aspp = ASPP(in_channels[0], aspp_channels)
        self.low_level_projection = nn.ModuleList()
        self.low_level_fusion_conv0 = nn.ModuleList()
        self.low_level_fusion_conv1 = nn.ModuleList()
        prev = aspp_channels
        for c_in, c_proj in zip(in_channels[1:], low_level_channels):
            self.low_level_projection.append(ConvBN(c_in, c_proj, 1, act=True))
            fused = prev + c_proj
            self.low_level_fusion_conv0.append(ConvBN(fused, fused, 5, groups=fused, act=True,
                                                      conv_init='xavier_uniform'))
            self.low_level_fusion_conv1.append(ConvBN(fused, decoder_channels, 1, act=True))
            prev = decoder_channels
        self.conv_block_0 = ConvBN(prev, prev, 5, groups=prev, act=True, conv_init='xavier_uniform')
        self.conv_block_1 = ConvBN(prev, decoder_channels, 1, act=True)
        self.final_conv = ConvBN(decoder_channels, num_classes, 1, bias=True, norm=False, conv_init=0.01)

    def forward(self, features):
        """features: [res5, res3, res2] -> logits (B, num_classes, H_res2, W_res2)."""
        x = self.aspp(features[0])
        # one rule for both upsamplings, taken from the ASPP output (reference SemanticPredictor)
        align_corners = kmax_align_corners(x.shape[-1])
        for i, low in enumerate(features[1:]):
            low = self.low_level_projection[i](low)
            x = torch.cat([resize_like_kmax(x, low.shape[-2:], align_corners), low], dim=1)
            x = self.low_level_fusion_conv1[i](self.low_level_fusion_conv0[i](x))
        x = self.conv_block_1(self.conv_block_0(x))
        return self.final_conv(x)
