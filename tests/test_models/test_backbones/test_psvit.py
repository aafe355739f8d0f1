"""PSViT backbone: presets, sharing / pooling layout, dense outputs, position-embedding resizing,
every config building, and forward + backward for classification, Mask R-CNN and UperNet."""
import glob
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope

from clusterseg.engine import adapt_to_device
from clusterseg.models.backbones import PSViT
from clusterseg.models.layers import FullAttention, SharedAttention
from clusterseg.utils.complexity import count_complexity

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'psvit', '*.py')))

# what configs/psvit/README.md states for the classifiers (1000-way head, 224x224, our counter)
PRESETS = {'tiny': (6.24, 1.251), 'small': (21.25, 4.573), 'base': (83.34, 16.12)}
DEIT_MACS = {'tiny': 1.258, 'small': 4.608, 'base': 17.58}


class _Classifier(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.backbone = PSViT(**kwargs)
        self.head = nn.Linear(self.backbone.embed_dims[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def _tiny_arch(**kw):
    arch = dict(embed_dims=[16, 32, 48], num_heads=[2, 4, 6], depth=6, pool_after=[1, 3],
                share_attn=[0, 1, 0, 1, 0, 1], patch_size=4)
    arch.update(kw)
    return arch


@pytest.mark.parametrize('arch', ['tiny', 'small'])
def test_preset_params_and_macs_within_deit_budget(arch):
    params, macs = PRESETS[arch]
    # the paper's count (a sharing layer skips q k^T): share_impl='map'; the default 'auto' hands
    # (q, k) on for large maps and the fused kernel's recomputation is counted as executed
    r = count_complexity(_Classifier(arch=arch, share_impl='map'), (torch.randn(1, 3, 224, 224), ))
    assert abs(r['params'] / 1e6 - params) < 0.01, r['params']
    assert abs(r['macs'] / 1e9 - macs) < 0.005, r['macs']
    assert r['macs'] / 1e9 <= DEIT_MACS[arch]


def test_base_preset_params():
    n = sum(p.numel() for p in _Classifier(arch='base').parameters())
    assert abs(n / 1e6 - PRESETS['base'][0]) < 0.01


def test_layout_follows_the_lists():
    model = PSViT('tiny')
    assert model.stage_of_layer == [0] * 4 + [1] * 4 + [2] * 4
    kinds = [type(layer.attn) for layer in model.layers]
    assert kinds == [FullAttention, SharedAttention] * 6
    assert not hasattr(model.layers[1].attn, 'qkv') and model.layers[1].attn.v.weight.shape == (96, 96)
    assert [p.out_dims for p in model.pools] == [192, 288]
    # a shared layer has 2C^2 + 2C fewer parameters than a full one
    full = sum(p.numel() for p in model.layers[0].parameters())
    shared = sum(p.numel() for p in model.layers[1].parameters())
    assert full - shared == 2 * 96 * 96 + 2 * 96
    # overriding the lists (what ablation / searched configs do)
    m2 = PSViT('tiny', pool_after=[5, 9], share_attn=[0] * 12)
    assert m2.stage_of_layer == [0] * 6 + [1] * 4 + [2] * 2
    assert all(isinstance(layer.attn, FullAttention) for layer in m2.layers)
    assert PSViT.arch_zoo['tiny']['pool_after'] == [3, 7]  # presets are never mutated


def test_map_is_only_materialised_for_sharing_layers(monkeypatch):
    calls = []
    orig = FullAttention.forward

    def spy(self, x, attn=None, return_attn=False):
        calls.append(return_attn)
        return orig(self, x, attn, return_attn)

    monkeypatch.setattr(FullAttention, 'forward', spy)
    model = PSViT(_tiny_arch(share_attn=[0, 1, 0, 0, 0, 1]), img_size=32, share_impl='map').eval()
    model(torch.randn(1, 3, 32, 32))
    # full layers 0, 2, 3, 4: only 0 and 4 are followed by a sharing layer
    assert calls == ['map', False, False, 'map']
    assert PSViT(_tiny_arch()).share_impl == 'auto'  # the default


def test_qk_handoff_gives_the_same_network():
    torch.manual_seed(0)
    a = PSViT('tiny', out_type='featmap', out_indices=(0, 1, 2, 3)).eval()
    b = PSViT('tiny', out_type='featmap', out_indices=(0, 1, 2, 3), share_impl='qk').eval()
    b.load_state_dict(a.state_dict())
    c = PSViT('tiny', out_type='featmap', out_indices=(0, 1, 2, 3), share_impl='auto').eval()
    c.load_state_dict(a.state_dict())
    for layer in c.layers:  # 'auto' mixed: stage 0 (3 x 65 x 65 map) hands on (q, k), stages 1-2 the map
        if not layer.shares_attention:
            layer.attn.auto_map_max_elements = 5000
    assert [c.layers[i].attn.handoff(torch.zeros(1, n, 1), 'auto') for i, n in ((0, 65), (4, 17))] == ['qk', 'map']
    x = torch.randn(1, 3, 64, 64)
    for u, v, w in zip(a(x), b(x), c(x)):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w, u, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="share_impl must be 'map', 'qk' or 'auto'"):
        PSViT('tiny', share_impl='kv')


def test_invalid_sharing_rejected_at_construction():
    with pytest.raises(ValueError, match=r'layer 4 cannot share the attention map of layer 3: a token '
                                         r'pooling lies between them \(pool_after=\[3, 7\]\)'):
        PSViT('tiny', share_attn=[0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match='layer 0 cannot share'):
        PSViT('tiny', share_attn=[1] + [0] * 11)
    with pytest.raises(KeyError, match=r"unknown arch 'huge'.*\['base', 'small', 'tiny'\]"):
        PSViT('huge')
    with pytest.raises(ValueError, match='strictly increasing'):
        PSViT('tiny', pool_after=[7, 3])
    with pytest.raises(ValueError, match='one entry per stage'):
        PSViT('tiny', pool_after=[3])
    with pytest.raises(ValueError, match='one entry per layer'):
        PSViT('tiny', share_attn=[0, 1])
    with pytest.raises(ValueError, match='pool_dims="2d"'):
        PSViT('tiny', pool_dims='1d', out_type='featmap', out_indices=(0, 1, 2, 3))


def test_cls_and_1d_outputs():
    model = PSViT(_tiny_arch(), img_size=32).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert len(out) == 1 and out[0].shape == (2, 48)
    m1d = PSViT(_tiny_arch(pool_dims='1d', pool_type='max'), img_size=32, out_type='avg_featmap').eval()
    assert m1d(torch.randn(2, 3, 32, 32))[0].shape == (2, 48)
    assert [n for n, _ in m1d.named_children() if n.startswith('norm')] == ['norm2']


def test_dense_outputs_strides_4_8_16_32_without_cls():
    model = PSViT('tiny', img_size=224, out_type='featmap', out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 96, 16, 24), (1, 96, 8, 12), (1, 192, 4, 6),
                                             (1, 288, 2, 3)]
    assert model.out_channels == [96, 96, 192, 288]
    # odd sizes: padded to the patch size, each pooling rounds up
    outs = model(torch.randn(1, 3, 70, 45))
    assert [tuple(o.shape[-2:]) for o in outs] == [(18, 12), (9, 6), (5, 3), (3, 2)]
    # the cls token is dropped: the stage-0 map is exactly the normed patch tokens of layer 3
    x = torch.randn(1, 3, 32, 32)
    feats = {}
    model.layers[3].register_forward_hook(lambda m, i, o: feats.update(x=o[0]))
    level1 = model(x)[1]
    ref = model.norm0(feats['x'][:, 1:]).transpose(1, 2).reshape(1, 96, 4, 4)
    torch.testing.assert_close(level1, ref)


def test_position_embedding_interpolation_and_pretrained_resize(tmp_path):
    torch.manual_seed(0)
    src = PSViT(_tiny_arch(), img_size=64)
    src.init_weights()
    path = str(tmp_path / 'cls.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    dst = PSViT(_tiny_arch(), img_size=32, out_type='featmap', out_indices=(0, 3),
                init_cfg=dict(type='Pretrained', checkpoint=path))
    dst.init_weights()
    assert dst.pos_embed.shape == (1, 1 + 8 * 8, 16)
    # both interpolate the 16x16 grid to 8x8 in the same way, so the last maps agree up to the norm
    x = torch.randn(1, 3, 32, 32)
    src.eval(), dst.eval()
    torch.testing.assert_close(dst.pos_embed, src._resize_pos_embed(src.pos_embed, (8, 8), 1))
    torch.testing.assert_close(dst.layers[0].attn.qkv.weight, src.layers[0].attn.qkv.weight)
    cls_src = src(x)[0]
    torch.testing.assert_close(dst.norm2.weight, src.norm2.weight)
    feats = {}
    dst.layers[-1].register_forward_hook(lambda m, i, o: feats.update(x=o[0]))
    dst(x)
    torch.testing.assert_close(src.norm2(feats['x'][:, 0]), cls_src)


def _bicubic_pos_embed(pos, src, dst):
    """The resize written out: (1, 1 + src^2, C) -> (1, 1 + dst^2, C), bicubic on the grid."""
    C = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, src, src, C).permute(0, 3, 1, 2)  # (1, C, src, src)
    grid = torch.nn.functional.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)  # (1, 1 + dst^2, C)


@pytest.mark.parametrize('how', ['load_state_dict', 'load_checkpoint', 'init_cfg'])
def test_every_load_path_resizes_the_position_embedding(tmp_path, how):
    """A checkpoint saved at a 16x16 grid loads into an 8x8 (and a 12x12) model through every
    path; the result is the explicit bicubic interpolation of the saved embedding."""
    from mmengine.runner import load_checkpoint
    torch.manual_seed(0)
    src = PSViT(_tiny_arch(), img_size=64)  # patch 4: 16x16 grid
    src.init_weights()
    saved = src.pos_embed.detach().clone()
    path = str(tmp_path / 'cls.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    for img_size in (32, 48):
        grid = img_size // 4
        if how == 'init_cfg':
            dst = PSViT(_tiny_arch(), img_size=img_size,
                        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
            dst.init_weights()
        else:
            dst = PSViT(_tiny_arch(), img_size=img_size)
            if how == 'load_state_dict':
                state = src.state_dict()
                dst.load_state_dict(state)
                assert state['pos_embed'].shape == saved.shape  # the caller's dict is not changed
            else:  # the runner's load_from / resume path: a whole model, keys under backbone.
                wrapper = nn.Module()
                wrapper.backbone = dst
                load_checkpoint(wrapper, path, map_location='cpu', strict=True)
        assert dst.pos_embed.shape == (1, 1 + grid * grid, 16)
        torch.testing.assert_close(dst.pos_embed.detach(), _bicubic_pos_embed(saved, 16, grid))
        torch.testing.assert_close(dst.layers[0].attn.qkv.weight, src.layers[0].attn.qkv.weight)
    # the same grid is loaded as is; a grid that is not square is an error naming the key
    same = PSViT(_tiny_arch(), img_size=64)
    same.load_state_dict(src.state_dict())
    torch.testing.assert_close(same.pos_embed, src.pos_embed)
    bad = dict(src.state_dict(), pos_embed=torch.zeros(1, 1 + 15, 16))
    with pytest.raises(ValueError, match=r'cannot fit pos_embed of shape \(1, 16, 16\).*not a square'):
        PSViT(_tiny_arch(), img_size=32).load_state_dict(bad)


def test_frozen_stages():
    model = PSViT('tiny', frozen_stages=1)
    model.train()
    assert not model.pos_embed.requires_grad and not model.patch_embed.weight.requires_grad
    assert not any(p.requires_grad for p in model.layers[3].parameters())
    assert all(p.requires_grad for p in model.layers[4].parameters())
    assert all(p.requires_grad for p in model.pools[0].parameters())
    assert not model.layers[0].training and model.layers[4].training


# ---------------------------------------------------------------------------- configs
def _null_pretrained(node):
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for v in node.values():
            _null_pretrained(v)
    elif isinstance(node, list):
        for v in node:
            _null_pretrained(v)


def _build(path):
    cfg = Config.fromfile(path)
    _null_pretrained(cfg.model)
    adapt_to_device(cfg, logger=lambda *a: None)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)
    model.init_weights()
    return model, cfg


def test_there_are_configs_for_every_task():
    names = [osp.basename(p) for p in CONFIGS]
    for prefix in ('psvit-tiny_8xb128', 'psvit-small_8xb128', 'psvit-base_8xb128', 'mask-rcnn_psvit-tiny',
                   'upernet_psvit-tiny', 'pacahead_psvit-tiny'):
        assert any(n.startswith(prefix) for n in names), prefix
    for suffix in ('synthetic-imagenet-64px.py', 'synthetic-coco-128x128.py', 'synthetic-ade20k-128x128.py'):
        assert any(n.endswith(suffix) for n in names), suffix


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p) for p in CONFIGS])
def test_every_config_builds(path):
    model, cfg = _build(path)
    assert type(model.backbone).__name__ == 'PSViT'
    channels = model.backbone.out_channels
    if cfg.default_scope == 'mmdet':
        assert list(cfg.model.neck.in_channels) == channels
    elif cfg.default_scope == 'mmseg':
        assert list(cfg.model.decode_head.in_channels) == channels
    else:
        assert cfg.model.head.in_channels == channels[-1]


def _synthetic(task):
    return [p for p in CONFIGS if task in osp.basename(p) and 'synthetic' in p][0]


def _backbone_grads(model):
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), 'some backbone parameter got no gradient'
    assert any(g.abs().sum() > 0 for g in grads)


def test_forward_backward_classifier():
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model, _ = _build(_synthetic('psvit-tiny_1xb32'))
    model.train()
    x = torch.randn(2, 3, 56, 56)
    samples = [DataSample().set_gt_label(i) for i in (1, 5)]
    losses = model(x, samples, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    _backbone_grads(model)


def test_forward_backward_mask_rcnn():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    model, _ = _build(_synthetic('mask-rcnn_psvit'))
    model.train()
    H = W = 64
    sample = DetDataSample(metainfo=dict(img_shape=(H, W), pad_shape=(H, W), ori_shape=(H, W),
                                         scale_factor=(1., 1.), batch_input_shape=(H, W)))
    masks = torch.zeros(2, H, W, dtype=torch.uint8)
    masks[0, 8:30, 10:40] = 1
    masks[1, 35:60, 5:25] = 1
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 8., 40., 30.], [5., 35., 25., 60.]]),
                                       labels=torch.tensor([1, 3]),
                                       masks=BitmapMasks(masks.numpy(), H, W))
    losses = model(torch.randn(1, 3, H, W), [sample], mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_mask'} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    _backbone_grads(model)


@pytest.mark.parametrize('head', ['upernet', 'pacahead'])
def test_forward_backward_segmentation(head):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model, _ = _build(_synthetic(f'{head}_psvit'))
    model.train()
    H = W = 64
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 8, (1, H, W)))
        samples.append(s)
    losses = model(torch.randn(2, 3, H, W), samples, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    _backbone_grads(model)
