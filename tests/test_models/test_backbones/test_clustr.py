"""ClusTR backbone: presets against the table, shapes, modes, weights, configs, every task end to end."""
import glob
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

from clusterseg.engine import adapt_to_device
from clusterseg.models.backbones import ClusTR
from clusterseg.models.layers import ClusteredKVAttention, dpc_knn
from clusterseg.utils.state_dict import StateDictMismatchError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'clustr', '*.py')))

# spec clustr.md §2: classifier params (M) incl. the 1000-way head, per code name
TABLE = {'b1': 11.68, 'b2': 22.69, 'b3': 40.25}


class _Classifier(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.backbone = ClusTR(**kwargs)
        self.head = nn.Linear(self.backbone.embed_dims[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


@pytest.mark.parametrize('arch,alias', [('b1', 'tiny'), ('b2', 'small'), ('b3', 'base')])
def test_params_match_table(arch, alias):
    n = sum(p.numel() for p in _Classifier(arch=arch).parameters()) / 1e6
    assert abs(n - TABLE[arch]) / TABLE[arch] < 0.01, n
    assert ClusTR(alias).arch_settings == ClusTR(arch).arch_settings


def test_macs_count_attention_and_clustering():
    """Our counter sees the DPC-kNN distance GEMMs and the attention products (docs/en/clustr.md)."""
    from mmengine.analysis import FlopAnalyzer

    from clusterseg.models.layers.dpc_cluster import _square_tiling, block_budget
    from clusterseg.utils.complexity import baddbmm_macs, count_complexity, sdpa_macs
    model = _Classifier(arch='b1').eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        an = FlopAnalyzer(model, (x, ))
        an.set_op_handle(**{'aten::scaled_dot_product_attention': sdpa_macs,
                            'aten::baddbmm': baddbmm_macs})
        an.unsupported_ops_warnings(False)
        an.uncalled_modules_warnings(False)
        an.tracer_warnings('none')
        ops = an.by_operator()
    # per clustering layer: one pass over the N x N distances, the density peaks' scan of the tokens denser
    # than them (data-dependent, a few % of N^2) and the distances to the M0 + 4 M0 centres;
    # attention: N x (M0 + 4 M0) (stages 1-3) or N x N (stage 4), q k^T and attn v
    stages = [(3136, 64, 8, 1), (784, 128, 4, 2), (196, 256, 2, 6), (49, 512, 1, 1)]  # N, C, sr, depth
    # pass 1: the upper triangle of S x S (b x b) blocks, then each token's k = 5 groups of G
    # columns again (at least once, at most twice with the padding of their GEMMs; with one
    # block, the naive path, they are read from it)
    tiling = {n: _square_tiling(n, 1, 5, block_budget(1, n)) for n, c, sr, d in stages}
    sweep = sum(d * c * b * b * S * (S + 1) // 2 for (n, c, sr, d), (S, b, G) in
                ((st, tiling[st[0]]) for st in stages) if sr > 1)
    members = sum(d * n * 5 * tiling[n][2] * c for n, c, sr, d in stages if sr > 1 and tiling[n][0] > 1)
    assert tiling[3136][0] > 1  # stage 1 at 224^2 is blockwise: a triangle
    full = sum(d * n * n * c for n, c, sr, d in stages if sr > 1)
    centres = sum(d * n * 5 * (n // sr**2) * c for n, c, sr, d in stages if sr > 1)
    attn = sum(d * n * (5 * (n // sr**2) if sr > 1 else n) * 2 * c for n, c, sr, d in stages)
    # the distance blocks are baddbmm (norm sums + -2 a.b in the GEMM); mmengine has no handle
    # for it, the project's counter adds one
    assert 'bmm' not in ops
    assert sweep + members + centres < ops['baddbmm'] < sweep + 2 * members + centres + 0.1 * full
    assert ops['scaled_dot_product_attention'] == attn
    # conv + linear: within 5 % of the reference's 2.15 G (which also counts norms / activations)
    assert abs((ops['conv'] + ops['linear']) / 1e9 - 2.15) / 2.15 < 0.05
    total = count_complexity(model, (x, ))['macs']
    assert total == sum(ops.values())  # the project's counter includes both


def test_structure_follows_reference():
    m = ClusTR('b3')
    assert [len(getattr(m, f'block{i}')) for i in range(1, 5)] == [3, 5, 18, 3]
    attn1, attn4 = m.block1[0].attn, m.block4[0].attn
    assert isinstance(attn1, ClusteredKVAttention) and attn1.sr_ratio == 8
    assert attn1.cluster_scales == (1, 4) and attn1.kv1.out_features == attn1.kv2.out_features == 128
    assert attn4.sr_ratio == 1 and hasattr(attn4, 'kv') and not hasattr(attn4, 'kv1')
    assert m.block3[0].attn.num_heads == 5 and m.block1[0].mlp.fc1.out_features == 64 * 8
    assert m.patch_embed1.proj.kernel_size == (7, 7) and m.patch_embed1.proj.stride == (4, 4)
    assert m.block1[0].mlp.dwconv.shortcut  # act(x + dwconv(x))
    deep = ClusTR('b1', drop_path_rate=.3)
    dpr = [blk.drop_path.drop_prob for i in range(1, 5) for blk in getattr(deep, f'block{i}')]
    assert dpr[0] == 0 and abs(dpr[-1] - .3) < 1e-6


def test_outputs_clusters_and_batch_one():
    torch.manual_seed(0)
    model = ClusTR('b1', out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(1, 3, 64, 96)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6),
                                             (1, 512, 2, 3)]
    # per clustering stage (1-3; stage 4 is plain attention), per scale: (B, h, w) maps of the
    # stage's last block with M0 = N // sr^2 and 4 M0 clusters
    maps = dict(model.cluster_maps(x))
    assert list(maps) == ['stage1/scale0', 'stage1/scale1', 'stage2/scale0', 'stage2/scale1',
                          'stage3/scale0', 'stage3/scale1']
    assert [m.shape for m in maps.values()] == [(1, 16, 24)] * 2 + [(1, 8, 12)] * 2 + [(1, 4, 6)] * 2
    assert all(m.dtype == torch.long for m in maps.values())
    assert int(maps['stage1/scale0'].max()) == 384 // 64 - 1 and int(maps['stage1/scale1'].max()) == 4 * 6 - 1
    # they are the DPC-kNN clusters of the last block's (normed) input
    with torch.no_grad():
        t = model.patch_embed1(x).flatten(2).transpose(1, 2)  # (1, N, C)
        for blk in model.block1[:-1]:
            t = blk(t, (16, 24))
        want = dpc_knn(model.block1[-1].norm1(t), [6, 24])
    assert torch.equal(maps['stage1/scale0'].flatten(1), want[0])
    assert torch.equal(maps['stage1/scale1'].flatten(1), want[1])
    assert torch.equal(model(x)[3], outs[3])  # and forward did not change
    # odd sizes work too
    assert model(torch.randn(1, 3, 70, 45))[-1].shape == (1, 512, 3, 2)


def test_memory_efficient_backbone_gives_same_output():
    torch.manual_seed(1)
    a = ClusTR('b1', memory_efficient=False).eval()
    b = ClusTR('b1', memory_efficient=True, max_block_elems=4096).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(a(x)[0], b(x)[0])


def test_bad_arch_and_bad_sizes():
    with pytest.raises(KeyError, match=r"unknown arch 'b4'.*'b1', 'b2', 'b3', 'base', 'small', 'tiny'"):
        ClusTR('b4')
    with pytest.raises(ValueError, match='4 entries'):
        ClusTR(dict(embed_dims=[64, 128, 256], depths=[1, 1, 1], num_heads=[1, 2, 4]))
    with pytest.raises(ValueError,
                       match=r'ClusTR stage 1 \(input 16x16, token grid 4x4\): N=16 tokens give M=0'):
        ClusTR('b1')(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r'ClusTR stage 1 \(input 64x64.*N=256 tokens give M=1600'):
        ClusTR('b1', cluster_scales=(1, 400))(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        ClusTR('b1')(torch.randn(1, 1, 32, 32))
    ClusTR(dict(embed_dims=[8, 8, 8, 8], depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]))
    assert ClusTR.arch_zoo['b1']['depths'] == [1, 2, 6, 1]


def test_frozen_stages():
    model = ClusTR('b1', frozen_stages=2)
    model.train()
    for name in ('patch_embed1', 'block1', 'norm1', 'patch_embed2', 'block2', 'norm2'):
        assert not any(p.requires_grad for p in getattr(model, name).parameters()), name
        assert not getattr(model, name).training
    assert all(p.requires_grad for p in model.patch_embed3.parameters()) and model.block3.training


def test_pretrained_classifier_checkpoint_loads(tmp_path):
    torch.manual_seed(2)
    src = ClusTR('b1', out_indices=(0, 1, 2, 3))
    src.init_weights()
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 512)  # an mmpretrain ImageClassifier checkpoint
    path = str(tmp_path / 'in1k.pth')
    torch.save({'meta': {}, 'state_dict': state}, path)
    dst = ClusTR('b1', out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=path))
    dst.init_weights()
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(src.eval()(x), dst.eval()(x)):
        torch.testing.assert_close(a, b)
    del state['backbone.block1.0.attn.kv2.weight']
    torch.save(state, path)
    with pytest.raises(StateDictMismatchError, match='block1.0.attn.kv2.weight'):
        ClusTR('b1', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def test_amp_style_half_inputs_cluster_in_fp32():
    torch.manual_seed(3)
    x = torch.randn(1, 50, 8)
    assert torch.equal(dpc_knn(x.bfloat16(), 5), dpc_knn(x.bfloat16().float(), 5))


# ---------------------------------------------------------------- configs and tasks
def _null_pretrained(node):
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for v in node.values():
            _null_pretrained(v)
    elif isinstance(node, list):
        for v in node:
            _null_pretrained(v)


def _build(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'clustr', name))
    _null_pretrained(cfg.model)
    adapt_to_device(cfg, logger=lambda *a: None)
    init_default_scope(cfg.default_scope)
    if cfg.get('data_preprocessor') is not None:  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)
    model.init_weights()
    return cfg, model


def test_config_set_is_complete():
    names = {osp.basename(p) for p in CONFIGS}
    for v in ('tiny', 'small', 'base'):
        for stem in (f'clustr-{v}_8xb128-300e_in1k', f'clustr-{v}_1xb32-10e_synthetic-imagenet-64px',
                     f'mask-rcnn_clustr-{v}_fpn_1x_coco',
                     f'mask-rcnn_clustr-{v}_fpn_1xb4-12e_synthetic-coco-128x128',
                     f'upernet_clustr-{v}_8xb2-160k_ade20k-512x512',
                     f'upernet_clustr-{v}_1xb4-300it_synthetic-ade20k-128x128',
                     f'pacahead_clustr-{v}_8xb2-160k_ade20k-512x512',
                     f'pacahead_clustr-{v}_1xb4-300it_synthetic-ade20k-128x128'):
            assert stem + '.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p) for p in CONFIGS])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    arch = cfg.model.backbone.arch
    init = cfg.model.backbone.get('init_cfg')
    if 'synthetic' not in path:
        if 'in1k' in path:  # the DeiT/PVT recipe (spec §3)
            assert cfg.model.backbone.drop_path_rate == (0.3 if arch == 'base' else 0.1)
            assert cfg.optim_wrapper.optimizer.lr == 1e-3 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
            assert (cfg.optim_wrapper.get('clip_grad') is not None) == (arch == 'base')
            assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'
        else:  # downstream: initialised from our own ImageNet run
            assert init['type'] == 'Pretrained' and f'clustr-{arch}_8xb128-300e_in1k' in init['checkpoint']
    _, model = _build(osp.basename(path))
    dims = ClusTR.arch_zoo[ClusTR.arch_aliases[arch]]['embed_dims']
    assert model.backbone.embed_dims == dims
    if cfg.default_scope == 'mmdet':
        assert list(cfg.model.neck.in_channels) == dims
    elif cfg.default_scope == 'mmseg':
        assert list(cfg.model.decode_head.in_channels) == dims


def _backward_reaches_clustering(model, losses):
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k and isinstance(v, torch.Tensor)) + \
        sum(x.sum() for k, v in losses.items() if 'loss' in k and isinstance(v, list) for x in v)
    assert torch.isfinite(total)
    total.backward()
    g = model.backbone.block1[0].attn.weight_layer.weight.grad
    assert g is not None and g.abs().sum() > 0


def test_classifier_forward_backward():
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    cfg, model = _build('clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py')
    model.train()
    data = dict(inputs=[torch.randint(0, 255, (3, 56, 56), dtype=torch.uint8) for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in range(2)])
    data = model.data_preprocessor(data, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    _backward_reaches_clustering(model, losses)


def test_mask_rcnn_forward_backward():
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    cfg, model = _build('mask-rcnn_clustr-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py')
    model.train()
    data = demo_mm_inputs(1, image_shapes=[(3, 96, 128)], num_items=[3], num_classes=5, with_mask=True)
    data = model.data_preprocessor(data, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
    _backward_reaches_clustering(model, losses)
    model.eval()
    with torch.no_grad():  # batch-1 inference
        res = model.predict(data['inputs'], data['data_samples'])
    assert len(res) == 1 and 'masks' in res[0].pred_instances


@pytest.mark.parametrize('head', ['upernet', 'pacahead'])
def test_segmentor_forward_backward(head):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    cfg, model = _build(f'{head}_clustr-tiny_1xb4-300it_synthetic-ade20k-128x128.py')
    model.train()
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 8, (1, 64, 64)))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    assert 'decode.loss_ce' in losses
    if head == 'pacahead':
        assert 'decode.loss_paca' in losses
    _backward_reaches_clustering(model, losses)
