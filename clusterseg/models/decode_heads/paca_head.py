"""PaCa segmentation head (Grainger et al., CVPR 2023, spec pacavit.md §4.1).

One patch-to-cluster attention with one cluster per class: the fused multi-level features are
pooled into L = num_classes cluster tokens (softmax over the pixels), pixels attend to them, and
the cluster logits get their own cross-entropy loss so each cluster learns "its" class.
Runs inside mmseg's standard ``EncoderDecoder``; the cluster loss is logged as
``decode.loss_paca``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize

from clusterseg.models.layers import pool_clusters
from clusterseg.registry import MODELS


class _Transpose(nn.Module):
    """(B, L, C) <-> (B, C, L), so that BatchNorm1d normalises the channels."""

    def forward(self, x):
        # contiguous: torch.compile's AOT backward of BatchNorm1d on a transposed view fails
        # ("view size is not compatible", torch 2.14); the values are the same
        return x.transpose(1, 2).contiguous()


def _token_norm_cfg(norm_cfg):
    """The head's 2-D norm config, made to work on (B, C, L) tokens (BN -> BN1d)."""
    cfg = dict(norm_cfg)
    if cfg['type'] in ('BN', 'BN2d'):
        cfg['type'] = 'BN1d'
    return cfg


@MODELS.register_module()
class PaCaHead(BaseDecodeHead):
    """PaCa head for semantic segmentation.

    Args:
        loss_cluster (dict): loss on the cluster logits (the reference: CE, weight 0.4,
            ``avg_non_ignore=True``). Its ``loss_name`` is the logged name.
        **kwargs: :class:`BaseDecodeHead` arguments (``in_channels`` list, ``channels``,
            ``num_classes``, ``norm_cfg``, ``loss_decode``, ...). ``input_transform`` is
            ``'multiple_select'``.

    Shapes: inputs, a list of (B, C_i, H_i, W_i); the first one sets the output resolution
    (stride 4). Output (B, num_classes, H_0, W_0).
    """

    def __init__(self, loss_cluster=dict(type='mmseg.CrossEntropyLoss', use_sigmoid=False,
                                         loss_weight=0.4, avg_non_ignore=True, loss_name='loss_paca'),
                 **kwargs):
        super().__init__(input_transform='multiple_select', **kwargs)
        conv_kw = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.convs = nn.ModuleList(
            [ConvModule(c, self.channels, 1, **conv_kw) for c in self.in_channels])
        fused = self.channels * len(self.in_channels)
        self.q = nn.Sequential(ConvModule(fused, self.channels, 1, **conv_kw))
        # one cluster per class; its logits are supervised directly (loss_cluster)
        self.clustering = nn.Sequential(
            ConvModule(fused, self.channels, 1, **conv_kw), nn.Conv2d(self.channels, self.num_classes, 1))
        token_norm = _token_norm_cfg(self.norm_cfg) if self.norm_cfg else None

        def token_proj():
            layers = [nn.Linear(fused, self.channels), _Transpose()]
            layers.append(build_norm_layer(token_norm, self.channels)[1] if token_norm else nn.Identity())
            layers += [nn.ReLU(inplace=True), _Transpose()]
            return nn.Sequential(*layers)  # keys k.0 (Linear), k.2 (norm), as published

        self.k = token_proj()
        self.v = token_proj()
        self.proj = ConvModule(self.channels, self.channels, 1, **conv_kw)
        self.loss_cluster = MODELS.build(loss_cluster)

    def _forward_with_clusters(self, inputs):
        """-> (seg logits (B, L, H0, W0), cluster logits (B, L, H0, W0))."""
        feats = self._transform_inputs(inputs)
        size = feats[0].shape[2:]
        x = torch.cat([
            resize(conv(f), size=size, mode='bilinear', align_corners=self.align_corners)
            for conv, f in zip(self.convs, feats)], dim=1)  # (B, 4D, H0, W0)
        B, _, H, W = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, N, D)
        cluster_logits = self.clustering(x)  # (B, L, H0, W0)
        z = cluster_logits.flatten(2).softmax(dim=-1)  # (B, L, N), softmax over the pixels
        c = pool_clusters(z, x.flatten(2).transpose(1, 2))  # (B, L, 4D)
        k, v = self.k(c), self.v(c)  # (B, L, D)
        # single head, and no 1/sqrt(d) scaling, as in the reference head
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]
        out = self.proj(out.transpose(1, 2).reshape(B, self.channels, H, W))
        return self.cls_seg(out), cluster_logits

    def forward(self, inputs):
        return self._forward_with_clusters(inputs)[0]

    def loss(self, inputs, batch_data_samples, train_cfg):
        seg_logits, cluster_logits = self._forward_with_clusters(inputs)
        losses = self.loss_by_feat(seg_logits, batch_data_samples)
        seg_label = self._stack_batch_gt(batch_data_samples).squeeze(1)  # (B, H, W)
        cluster_logits = resize(cluster_logits, size=seg_label.shape[1:], mode='bilinear',
                                align_corners=self.align_corners)
        losses[self.loss_cluster.loss_name] = self.loss_cluster(
            cluster_logits, seg_label, ignore_index=self.ignore_index)
        return losses

    @torch.no_grad()
    def cluster_maps(self, inputs):
        """The cluster contract (:mod:`clusterseg.models.layers.cluster`): every pixel's class
        cluster.

        Args:
            inputs (list[Tensor]): what :meth:`forward` takes, (B, C_i, H_i, W_i) features.

        Returns:
            list[tuple[str, Tensor]]: ``[('head', (B, H0, W0) long)]``, the argmax over the L
            class clusters of the assignment z (softmax over the pixels) at the first input's
            resolution.
        """
        _, cluster_logits = self._forward_with_clusters(inputs)
        B, L, H, W = cluster_logits.shape
        z = cluster_logits.flatten(2).softmax(dim=-1)  # (B, L, N)
        return [('head', z.argmax(1).view(B, H, W))]
