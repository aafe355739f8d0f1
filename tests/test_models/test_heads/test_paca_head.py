"""PaCa segmentation head: shapes, the cluster loss against a hand computation, and the
standard EncoderDecoder logging both losses."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from clusterseg.models.decode_heads import PaCaHead


def _samples(labels):
    out = []
    for lab in labels:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab[None])
        s.set_metainfo(dict(img_shape=lab.shape, ori_shape=lab.shape, pad_shape=lab.shape))
        out.append(s)
    return out


def _head(**kw):
    init_default_scope('mmseg')
    cfg = dict(in_channels=[8, 16, 24, 32], in_index=[0, 1, 2, 3], channels=12, num_classes=5,
               norm_cfg=dict(type='BN', requires_grad=True), align_corners=False, dropout_ratio=0.,
               loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True))
    cfg.update(kw)
    return PaCaHead(**cfg)


def _feats(B=2, H=8, W=12):
    return [torch.randn(B, c, H // s, W // s) for c, s in zip([8, 16, 24, 32], [1, 2, 4, 8])]


def test_shapes_and_keys():
    head = _head()
    feats = _feats()
    assert head(feats).shape == (2, 5, 8, 12)
    (name, maps), = head.cluster_maps(feats)
    assert name == 'head' and maps.shape == (2, 8, 12) and maps.dtype == torch.long
    _, cluster_logits = head._forward_with_clusters(feats)  # (B, L, H0, W0)
    z = cluster_logits.flatten(2).softmax(-1).view(2, 5, 8, 12)  # softmax over the pixels
    assert torch.equal(maps, z.argmax(1))  # each pixel's class cluster
    keys = set(head.state_dict())
    for k in ['convs.0.conv.weight', 'convs.3.bn.running_mean', 'q.0.conv.weight', 'clustering.0.bn.weight',
              'clustering.1.weight', 'clustering.1.bias', 'k.0.weight', 'k.2.running_var',
              'v.2.num_batches_tracked', 'proj.conv.weight', 'conv_seg.weight']:
        assert k in keys, k  # the published checkpoint's key names (spec pacavit.md §5)
    assert head.clustering[1].weight.shape == (5, 12, 1, 1) and head.k[0].weight.shape == (12, 48)


def test_cluster_loss_matches_hand_computation():
    torch.manual_seed(0)
    head = _head().train()
    feats = _feats(H=8, W=8)
    labels = torch.randint(0, 5, (2, 16, 16))
    labels[0, :4] = 255  # ignored pixels
    losses = head.loss(feats, _samples(labels), train_cfg={})
    assert set(losses) == {'loss_ce', 'loss_paca', 'acc_seg'}
    # recompute with the same dropout-free forward
    torch.manual_seed(0)
    _, cluster_logits = head._forward_with_clusters(feats)
    up = F.interpolate(cluster_logits, size=(16, 16), mode='bilinear', align_corners=False)
    logp = up.log_softmax(1)
    valid = labels != 255
    nll = -logp.permute(0, 2, 3, 1)[valid].gather(1, labels[valid][:, None]).squeeze(1)
    expected = 0.4 * nll.mean()  # weight 0.4, averaged over the non-ignored pixels
    torch.testing.assert_close(losses['loss_paca'], expected, rtol=1e-4, atol=1e-5)


def test_no_scaling_single_head_attention():
    head = _head().eval()
    feats = _feats(B=1)
    x = torch.cat([F.interpolate(conv(f), size=(8, 12), mode='bilinear', align_corners=False)
                   for conv, f in zip(head.convs, feats)], 1)
    q = head.q(x).flatten(2).transpose(1, 2)
    z = head.clustering(x).flatten(2).softmax(-1)
    c = z @ x.flatten(2).transpose(1, 2)
    a = (q @ head.k(c).transpose(1, 2)).softmax(-1)  # no 1/sqrt(d)
    out = head.proj((a @ head.v(c)).transpose(1, 2).reshape(1, 12, 8, 12))
    torch.testing.assert_close(head(feats), head.cls_seg(out), rtol=1e-4, atol=1e-5)


def test_inside_standard_encoder_decoder():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1], size=(64, 64)),
        backbone=dict(type='clusterseg.PaCaViT', arch='tiny', out_indices=(0, 1, 2, 3),
                      num_clusters=[8, 8, 8, 0]),
        decode_head=dict(type='clusterseg.PaCaHead', in_channels=[96, 192, 320, 384], in_index=[0, 1, 2, 3],
                         channels=16, num_classes=5, norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0))))
    assert type(model).__name__ == 'EncoderDecoder'
    labels = torch.randint(0, 5, (2, 64, 64))
    losses = model.loss(torch.randn(2, 3, 64, 64), _samples(labels))
    assert {'decode.loss_ce', 'decode.loss_paca'} <= set(losses)
    assert losses['decode.loss_paca'] > 0
