"""kMaX's ``align_corners`` is chosen per call site, as in the reference (bytedance/kmax-deeplab).

Each test uses sizes where the source and target parities differ, so a module that picks the
rule by the wrong length gives a different result (checked: the other choice does not match).
At the paper's sizes (1281, 1280) every rule agrees, which is why these sizes are unusual.
"""
import torch
import torch.nn.functional as F

from clusterseg.models.dense_heads import KMaXFusionHead
from clusterseg.models.layers.kmax_blocks import SemanticPredictor
from clusterseg.models.losses.kmax_loss import resize_prediction
from clusterseg.models.pixel_decoders.kmax_pixel_decoder import ResizedFuse
from mmdet.structures import DetDataSample


def _randomise_bn(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module.eval()


def _up(x, size, align_corners):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)


def _differs(a, b):
    """Relative to the output's scale (the semantic predictor's final conv starts at std 0.01)."""
    return (a - b).abs().max() > 1e-3 * b.abs().max()


@torch.no_grad()
def test_pixel_decoder_fuse_uses_the_source_width():
    """Reference: ``kmax_deeplab/modeling/pixel_decoder/kmax_pixel_decoder.py``, ``ResizedFuse.forward``:
    ``align_corners = (lowres_x.shape[-1] % 2 == 1)``."""
    torch.manual_seed(0)
    fuse = _randomise_bn(ResizedFuse(8, 6, 4))
    low, high = torch.randn(2, 8, 3, 5), torch.randn(2, 6, 6, 10)  # source width 5 (odd), target 10
    out = fuse(low, high)
    lo = fuse.conv_bn_low(F.gelu(low))
    hi = fuse.conv_bn_high(F.gelu(high))
    torch.testing.assert_close(out, _up(lo, (6, 10), True) + hi)
    assert _differs(out, _up(lo, (6, 10), False) + hi)


@torch.no_grad()
def test_semantic_predictor_uses_the_aspp_width_for_both_upsamplings():
    """Reference: ``kmax_deeplab/modeling/transformer_decoder/kmax_transformer_decoder.py``,
    ``SemanticPredictor.forward``: ``align_corners = (x.shape[-1] % 2 == 1)`` taken once from the
    ASPP output and used for the OS8 and the OS4 upsampling."""
    torch.manual_seed(0)
    pred = _randomise_bn(SemanticPredictor(in_channels=(16, 8, 4), num_classes=3, aspp_channels=8,
                                           low_level_channels=(4, 2), decoder_channels=8))
    # ASPP output 3x5 (odd width); res3 6x10 and res2 12x20 have even widths
    feats = [torch.randn(1, 16, 3, 5), torch.randn(1, 8, 6, 10), torch.randn(1, 4, 12, 20)]

    def by_hand(align_corners):
        x = pred.aspp(feats[0])
        for i, low in enumerate(feats[1:]):
            low = pred.low_level_projection[i](low)
            x = torch.cat([_up(x, low.shape[-2:], align_corners), low], dim=1)
            x = pred.low_level_fusion_conv1[i](pred.low_level_fusion_conv0[i](x))
        return pred.final_conv(pred.conv_block_1(pred.conv_block_0(x)))

    out = pred(feats)
    torch.testing.assert_close(out, by_hand(True))
    assert _differs(out, by_hand(False))


def test_deep_supervision_outputs_use_the_target_height():
    """Reference: ``kmax_transformer_decoder.py``, ``kMaXTransformerDecoder._set_aux_loss``:
    ``align_corners = (target_size[0] % 2 == 1)``."""
    torch.manual_seed(0)
    aux = dict(class_logits=torch.randn(1, 4, 3), mask_logits=torch.randn(1, 4, 3, 3),
               pixel_feature=torch.randn(1, 5, 3, 3))
    size = (9, 8)  # odd height, even width
    out = resize_prediction(aux, size)
    torch.testing.assert_close(out['mask_logits'], _up(aux['mask_logits'], size, True))
    torch.testing.assert_close(out['pixel_feature'], _up(aux['pixel_feature'], size, True))
    assert _differs(out['mask_logits'], _up(aux['mask_logits'], size, False))
    assert out['class_logits'] is aux['class_logits']
    size = (8, 9)  # even height, odd width: False
    torch.testing.assert_close(resize_prediction(aux, size)['mask_logits'],
                               _up(aux['mask_logits'], size, False))


@torch.no_grad()
def test_post_processing_uses_the_padded_width():
    """Reference: ``kmax_deeplab/kmax_model.py``, ``kMaXDeepLab.forward`` (inference):
    ``align_corners = (images.tensor.shape[-1] % 2 == 1)``, the padded batch width, for the resize
    of the cropped masks to the original image size."""
    torch.manual_seed(0)
    head = KMaXFusionHead(num_things_classes=2, num_stuff_classes=1,
                          test_cfg=dict(panoptic_on=False, semantic_on=True))
    K, padded = 5, (9, 9)  # padded width 9 (odd); the original width 12 is even
    mask_cls, mask_pred = torch.randn(1, K, 4), torch.randn(1, K, *padded)
    ds = DetDataSample(metainfo=dict(img_shape=(7, 6), ori_shape=(14, 12), batch_input_shape=padded))
    sem = head.predict(mask_cls, mask_pred, [ds], rescale=True)[0]['sem_results'].seg_logits

    def by_hand(align_corners):
        masks = _up(mask_pred[:, :, :7, :6], (14, 12), align_corners)[0]
        return torch.einsum('kc,khw->chw', mask_cls[0].softmax(-1)[:, :-1], masks.softmax(0))

    torch.testing.assert_close(sem, by_hand(True))
    assert _differs(sem, by_hand(False))


def test_semantic_head_resizes_to_the_image_by_the_padded_width():
    """mmseg's segmentor resizes the head's output to the original image with the head's
    ``align_corners``: by default kMaX's rule on the padded width (``kmax_model.py`` as above)."""
    from mmengine.config import Config

    from tests.test_models.test_heads.test_kmax_head import SEG_SYN, null_init_cfgs
    cfg = Config.fromfile(SEG_SYN)
    import clusterseg.models  # noqa: F401
    from clusterseg.registry import MODELS
    head_cfg = null_init_cfgs(cfg.model.decode_head.copy())
    head_cfg.pop('type')
    for size, expected in (((129, 129), True), ((128, 128), False), ((128, 129), True)):
        head = MODELS.get('KMaXSegHead')(**dict(head_cfg, input_size=size))
        assert head.align_corners is expected, size
    assert MODELS.get('KMaXSegHead')(**dict(head_cfg, input_size=(129, 129), align_corners=False)).align_corners \
        is False
