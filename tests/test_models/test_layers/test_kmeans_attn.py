"""kMaX primitives against naive references written here (spec kmax.md §1.2-2)."""
import math

import pytest
import torch
import torch.nn.functional as F

from clusterseg.models.layers.axial_attn import AxialAttention, AxialAttention2D, RelativePositionalEncoding
from clusterseg.models.layers.kmeans_attn import (ClusterSelfAttention, KMaXPredictor, KMaXTransformerDecoder,
                                                  KMaXTransformerLayer, kmeans_assignment,
                                                  kmeans_cross_attention, kmeans_update)


def naive_kmeans(mask_logits, values):
    """Loop over images, clusters and pixels: centre k gets the sum of the values of its pixels."""
    B, K = mask_logits.shape[:2]
    logits = mask_logits.flatten(2)
    values = values.flatten(2)
    out = torch.zeros(B, values.shape[1], K, dtype=torch.float64)
    for b in range(B):
        for n in range(logits.shape[2]):
            best = max(range(K), key=lambda k: logits[b, k, n].item())
            out[b, :, best] += values[b, :, n].double()
    return out


def bn_eval(bn, x, dim=1):
    shape = [1] * x.ndim
    shape[dim] = -1
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def randomise_bn(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize('K,H,W', [(3, 4, 5), (7, 6, 6), (1, 3, 2)])
def test_kmeans_cross_attention_matches_naive_loop(K, H, W):
    gen = torch.Generator().manual_seed(K)
    logits = torch.randn(2, K, H, W, generator=gen)
    values = torch.randn(2, 5, H, W, generator=gen)
    out = kmeans_cross_attention(logits, values)
    assert out.shape == (2, 5, K)
    torch.testing.assert_close(out.double(), naive_kmeans(logits, values), rtol=1e-5, atol=1e-5)


def test_kmeans_update_is_the_shared_pool_in_fp32_under_autocast():
    """The centre update is ``pool_clusters`` (the one pooling primitive) in the (B, C, K) layout,
    summed in fp32 even where autocast would run a matmul in bf16: centres sum up to N values."""
    from clusterseg.models.layers.cluster import pool_clusters
    gen = torch.Generator().manual_seed(0)
    logits, values = torch.randn(2, 6, 64, generator=gen), torch.randn(2, 5, 64, generator=gen) * 100
    a = kmeans_assignment(logits)
    ref = pool_clusters(a, values.transpose(1, 2)).transpose(1, 2)  # (B, C, K)
    assert torch.equal(kmeans_update(a, values), ref)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = kmeans_update(a, values)
        assert torch.matmul(a, values.transpose(1, 2)).dtype == torch.bfloat16  # autocast is on
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_kmeans_assignment_is_hard_and_detached():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    values = torch.randn(2, 6, 3, 3, requires_grad=True)
    a = kmeans_assignment(logits)
    assert torch.equal(a.sum(1), torch.ones(2, 9))  # each pixel in exactly one cluster
    out = kmeans_cross_attention(logits, values)
    out.sum().backward()
    assert logits.grad is None  # assignment is a stop-gradient
    # d(sum of all centres)/d(value) = 1 for every pixel (each pixel counted once)
    torch.testing.assert_close(values.grad, torch.ones_like(values))


def test_predictor_void_prior_norm_and_mask_logits():
    torch.manual_seed(0)
    C = 6
    pred = KMaXPredictor(pixel_channels=8, query_channels=8, num_classes=C, embed_channels=4, hidden_channels=8)
    pred.eval()
    pred.transformer_class_head.conv.weight.data.zero_()
    pixel = torch.randn(2, 8, 5, 5)
    q = torch.randn(2, 8, 3)
    out = pred(q, q, pixel)
    # zero class head -> softmax puts exactly the void prior on void
    probs = out['class_logits'].softmax(-1)
    torch.testing.assert_close(probs[..., -1], torch.full((2, 3), 0.9))
    assert out['class_logits'].shape == (2, 3, C + 1)
    torch.testing.assert_close(out['pixel_feature'].norm(dim=1), torch.ones(2, 5, 5))
    kernels = pred.transformer_mask_head(q)  # (B, E, K)
    naive = torch.zeros(2, 3, 5, 5)
    for k in range(3):
        naive[:, k] = (out['pixel_feature'] * kernels[:, :, k, None, None]).sum(1)
    bn = pred.pixel_space_mask_batch_norm
    naive = (naive - bn.running_mean) / math.sqrt(bn.running_var.item() + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(out['mask_logits'], naive, rtol=1e-5, atol=1e-5)


def test_cluster_self_attention_matches_per_head_loop():
    gen = torch.Generator().manual_seed(1)
    attn = ClusterSelfAttention(key_channels=8, value_channels=12, num_heads=4).eval()
    randomise_bn(attn, gen)
    q, k, v = torch.randn(2, 8, 5, generator=gen), torch.randn(2, 8, 5, generator=gen), torch.randn(
        2, 12, 5, generator=gen)
    out = attn(q, k, v)
    ref = torch.zeros(2, 12, 5)
    for h in range(4):
        qh, kh, vh = q[:, 2 * h:2 * h + 2], k[:, 2 * h:2 * h + 2], v[:, 3 * h:3 * h + 3]
        logits = torch.einsum('bdk,bdl->bkl', qh, kh)  # no 1/sqrt(d)
        bn = attn.batch_norm_similarity
        logits = (logits - bn.running_mean[h]) / torch.sqrt(bn.running_var[h] + bn.eps) * bn.weight[h] + bn.bias[h]
        ref[:, 3 * h:3 * h + 3] = torch.einsum('bkl,bdl->bdk', logits.softmax(-1), vh)
    ref = F.gelu(bn_eval(attn.batch_norm_retrieved_value, ref))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_layer_starts_as_post_activated_identity_and_uses_its_own_mask_logits():
    torch.manual_seed(0)
    layer = KMaXTransformerLayer(pixel_channels=12, query_channels=16, num_classes=4, bottleneck_channels=16,
                                 key_channels=8, value_channels=16, num_heads=2, ffn_channels=32,
                                 embed_channels=8)
    pixel, query = torch.randn(2, 12, 6, 6), torch.randn(2, 16, 5)
    out, pred = layer(pixel, query)
    # zero-gamma BN ends every branch: Q -> GELU(GELU(Q + 0) + 0)
    torch.testing.assert_close(out, F.gelu(F.gelu(query)))
    assert pred['mask_logits'].shape == (2, 5, 6, 6) and pred['class_logits'].shape == (2, 5, 5)

    # with a live k-means branch, the update is exactly BN-conv of the naive k-means sum
    layer.eval()
    gen = torch.Generator().manual_seed(3)
    randomise_bn(layer, gen)
    pixel_space = layer.pixel_conv1_bn_act(F.gelu(pixel))
    values = layer.pixel_v_conv_bn(pixel_space)
    query_space = layer.query_conv1_bn_act(query)
    logits = layer.predictor(query_space, query_space, pixel_space)['mask_logits']
    update = naive_kmeans(logits, values).float()
    update = layer.kmeans_query_conv3_bn(layer.kmeans_query_batch_norm_retrieved_value(update))
    q, k, v = layer.query_qkv_conv_bn(query_space).split([8, 8, 16], 1)
    attn = layer.query_conv3_bn(layer.query_self_attention(q, k, v))
    ref = F.gelu(query + update + attn)
    ref = F.gelu(ref + layer.query_ffn_conv2_bn(layer.query_ffn_conv1_bn_act(ref)))
    out, _ = layer(pixel, query)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_decoder_outputs_and_gradients():
    torch.manual_seed(0)
    dec = KMaXTransformerDecoder(in_channels=(24, 16, 8), num_layers=(1, 1, 2), final_channels=16, num_queries=6,
                                 num_classes=3, query_channels=16, bottleneck_channels=16, key_channels=8,
                                 value_channels=16, num_heads=2, ffn_channels=32, embed_channels=8)
    feats = [torch.randn(2, 24, 2, 2), torch.randn(2, 16, 4, 4), torch.randn(2, 8, 8, 8)]
    final, aux = dec(feats, torch.randn(2, 16, 16, 16))
    assert len(aux) == 4
    assert [a['mask_logits'].shape[-1] for a in aux] == [2, 4, 8, 8]
    assert final['mask_logits'].shape == (2, 6, 16, 16) and final['class_logits'].shape == (2, 6, 4)
    (final['mask_logits'].sum() + final['class_logits'].sum()).backward()
    assert dec.cluster_centers.weight.grad is not None


def naive_axial(att, x):
    """Per-head, per-position loops over the relative offsets (eval-mode BN).

    Pair (query i, key j) reads table row ``j - i + span - 1`` (key - query), as deeplab2
    ``model/layers/positional_encodings.py`` and bytedance/kmax-deeplab
    ``kmax_deeplab/modeling/pixel_decoder/kmax_pixel_decoder.py`` (``_compute_relative_distance_matrix``).
    """
    B, C, L = x.shape
    h = att.num_heads
    qkv = att.qkv_transform(x)
    kc, vc = att.key_channels, att.value_channels
    q, k, v = qkv[:, :kc], qkv[:, kc:2 * kc], qkv[:, 2 * kc:]
    dk, dv = kc // h, vc // h
    span = att.query_rpe.max_span
    bn_s, bn_o = att.batch_norm_similarity, att.batch_norm_retrieved_output
    out_v = torch.zeros(B, vc, L)
    out_p = torch.zeros(B, vc, L)
    for hd in range(h):
        qh, kh, vh = q[:, hd * dk:(hd + 1) * dk], k[:, hd * dk:(hd + 1) * dk], v[:, hd * dv:(hd + 1) * dv]
        logits = torch.zeros(B, L, L)
        for i in range(L):
            for j in range(L):
                r = j - i + span - 1
                terms = [(qh[:, :, i] * kh[:, :, j]).sum(1),
                         (qh[:, :, i] * att.query_rpe.embeddings.weight[r]).sum(1),
                         (kh[:, :, j] * att.key_rpe.embeddings.weight[r]).sum(1)]
                for t, term in enumerate(terms):
                    c = t * h + hd
                    logits[:, i, j] += ((term - bn_s.running_mean[c]) / torch.sqrt(bn_s.running_var[c] + bn_s.eps)
                                        * bn_s.weight[c] + bn_s.bias[c])
        attn = logits.softmax(-1)
        for i in range(L):
            for j in range(L):
                r = j - i + span - 1
                out_v[:, hd * dv:(hd + 1) * dv, i] += attn[:, i, j, None] * vh[:, :, j]
                out_p[:, hd * dv:(hd + 1) * dv, i] += attn[:, i, j, None] * att.value_rpe.embeddings.weight[r]
    both = bn_eval(bn_o, torch.cat([out_v, out_p], 1))
    return both[:, :vc] + both[:, vc:]


@pytest.mark.parametrize('span', [4, 7])
def test_relative_position_reads_key_minus_query(span):
    """A one-hot table reveals which offset each (query, key) pair reads: ``key - query``.

    Reference: google-research/deeplab2 ``model/layers/positional_encodings.py`` and
    bytedance/kmax-deeplab ``kmax_deeplab/modeling/pixel_decoder/kmax_pixel_decoder.py``,
    ``_compute_relative_distance_matrix``: ``key_index[None, :] - query_index[:, None] + MAX_SPAN - 1``.
    """
    rpe = RelativePositionalEncoding(depth=2 * span - 1, max_span=span)
    with torch.no_grad():
        rpe.embeddings.weight.copy_(torch.eye(2 * span - 1))  # row r = one-hot(r)
    L = span
    offset = rpe(L).argmax(-1) - (span - 1)  # (L_query, L_key): the offset each pair reads
    for i in range(L):
        for j in range(L):
            assert offset[i, j].item() == j - i, (i, j, offset[i, j].item())
    # the key-position logit of query 0 against key L-1 reads the "+(L-1)" row, not "-(L-1)"
    assert rpe(L)[0, L - 1].argmax().item() == 2 * span - 2


def test_axial_attention_matches_naive_loops():
    gen = torch.Generator().manual_seed(5)
    att = AxialAttention(6, key_channels=4, value_channels=6, num_heads=2, max_span=7).eval()
    randomise_bn(att, gen)
    x = torch.randn(2, 6, 5, generator=gen)
    torch.testing.assert_close(att(x), naive_axial(att, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='span'):
        att(torch.randn(1, 6, 8))


def test_axial_attention_2d_is_height_then_width():
    torch.manual_seed(0)
    att = AxialAttention2D(4, 4, 6, num_heads=2, max_span=9).eval()
    x = torch.randn(2, 4, 3, 5)
    out = att(x)
    ref = torch.zeros(2, 6, 3, 5)
    mid = torch.zeros(2, 6, 3, 5)
    for w in range(5):
        mid[:, :, :, w] = att.height_axis(x[:, :, :, w])
    for r in range(3):
        ref[:, :, r, :] = att.width_axis(mid[:, :, r, :])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
