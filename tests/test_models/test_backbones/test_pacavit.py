"""PaCaViT backbone: presets against the published table, shapes, modes, weights loading."""
import pytest
import torch
import torch.nn as nn

from clusterseg.models.backbones import PaCaViT
from clusterseg.models.layers import PaCaAttention
from clusterseg.utils.complexity import count_complexity
from clusterseg.utils.state_dict import StateDictMismatchError

# spec pacavit.md §3 (classifier incl. the 1000-way head): params (M), MACs at 224 (G)
TABLE = {
    'tiny': (12.2, 3.22), 'small': (22.0, 5.50), 'small-mlp': (22.6, 5.86), 'base': (46.9, 9.54),
    'small-teacher': (21.1, 5.4), 'base-teacher': (47.7, 9.7),
}


class _Classifier(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.backbone = PaCaViT(**kwargs)
        self.head = nn.Linear(self.backbone.embed_dims[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def _teacher_lateral_extra_macs(dims, size=224):
    """MACs the teacher's laterals cost at the fine level (the reference's order, upsample first)
    beyond the coarse level, which is what the README's 5.4 / 9.7 G count: per FPN level i,
    C_{i+1} x C_i x (N_i - N_{i+1}) for the 1x1 conv (strides 4, 8, 16, 32)."""
    n = [(size // s) ** 2 for s in (4, 8, 16, 32)]
    return sum(dims[i + 1] * dims[i] * (n[i] - n[i + 1]) for i in range(3))


@pytest.mark.parametrize('arch', list(TABLE))
def test_params_and_macs_match_table(arch):
    params, macs = TABLE[arch]
    model = _Classifier(arch=arch)
    r = count_complexity(model, (torch.randn(1, 3, 224, 224), ))
    assert abs(r['params'] / 1e6 - params) / params < 0.01, r['params']
    if 'teacher' in arch:  # docs/en/pacavit.md: the table counts the laterals at the coarse level
        macs += _teacher_lateral_extra_macs(model.backbone.embed_dims) / 1e9
    assert abs(r['macs'] / 1e9 - macs) / macs < 0.01, r['macs']


def test_tiny_exact_param_count():
    # 12,200,680 with the head (spec §5.1), 11,815,680 without
    assert sum(p.numel() for p in PaCaViT('tiny').parameters()) == 11815680


@pytest.mark.parametrize('m,extra', [([2, 2, 2, 0], {}), ([49, 64, 81, 100], {}),
                                     ([100, 100, 100, 100], dict(onsite_clustering=[1, 1, 1, 1]))])
def test_ablation_params(m, extra):
    # spec §3 ablation rows (derived counts): 21.98 / 22.23 / 24.19 M
    ref = {(2, 2, 2, 0): 21.98, (49, 64, 81, 100): 22.23, (100, 100, 100, 100): 24.19}[tuple(m)]
    n = sum(p.numel() for p in _Classifier(arch='small', num_clusters=m, **extra).parameters())
    assert abs(n / 1e6 - ref) < 0.01


def test_outputs_and_clusters():
    model = PaCaViT('tiny', out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(2, 3, 96, 64)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 96, 24, 16), (2, 192, 12, 8), (2, 320, 6, 4),
                                             (2, 384, 3, 2)]
    _, z, _ = model._run(x)  # the soft assignments behind the maps
    assert [None if c is None else tuple(c.shape) for c in z] == [
        (2, 100, 24, 16), (2, 100, 12, 8), (2, 100, 6, 4), None]
    torch.testing.assert_close(z[0].flatten(2).sum(-1), torch.ones(2, 100))  # softmax over patches
    maps = model.cluster_maps(x)  # stage 4 has M = 0: no clustering
    assert [(n, tuple(m.shape), m.dtype) for n, m in maps] == [
        ('stage1', (2, 24, 16), torch.long), ('stage2', (2, 12, 8), torch.long),
        ('stage3', (2, 6, 4), torch.long)]
    for (_, m), zi in zip(maps, z):
        assert torch.equal(m, zi.argmax(1))  # each patch's most likely of the M clusters
    # odd sizes work too (each stride-2 conv rounds up)
    assert model(torch.randn(1, 3, 70, 45))[-1].shape == (1, 384, 3, 2)


def test_where_clusters_are_computed():
    def onsite(model, stage):
        return [blk.attn.computes_clusters for blk in getattr(model, f'stage{stage}')]

    stagewise = PaCaViT('small')
    assert onsite(stagewise, 3) == [True] + [False] * 9 and onsite(stagewise, 4) == [False] * 3
    blockwise = PaCaViT('small', num_clusters=[100] * 4, onsite_clustering=[1] * 4)
    assert onsite(blockwise, 3) == [True] * 10 and onsite(blockwise, 4) == [True] * 3
    every3 = PaCaViT('small', onsite_clustering=[3, 3, 3, 3])
    assert onsite(every3, 3) == [j % 3 == 0 for j in range(10)]
    teacher = PaCaViT('small-teacher')
    assert not any(onsite(teacher, 1)) and teacher.paca_teacher is not None


def test_teacher_supplies_assignments_and_gets_gradients():
    model = PaCaViT('tiny-teacher', out_indices=(3, ))
    x = torch.randn(1, 3, 64, 64)
    maps = model.cluster_maps(x)
    assert [n for n, _ in maps] == ['stage1', 'stage2', 'stage3', 'stage4']
    assert maps[3][1].shape == (1, 2, 2) and 0 <= int(maps[3][1].min()) <= int(maps[3][1].max()) < 100
    outs = model(x)
    outs[0].sum().backward()
    assert model.paca_teacher.to_clusters1.weight.grad is not None
    assert model.paca_teacher.transition1[0].blur_filter.requires_grad is False


def test_bad_settings():
    with pytest.raises(KeyError, match=r"unknown arch 'tiniest'.*base-teacher"):
        PaCaViT('tiniest')
    with pytest.raises(ValueError, match=r'num_clusters\[1\] must be an int >= 0'):
        PaCaViT('tiny', num_clusters=[100, -5, 100, 0])
    with pytest.raises(ValueError, match='4 entries'):
        PaCaViT('tiny', num_clusters=[100, 100, 0])
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        PaCaViT('tiny')(torch.randn(1, 1, 32, 32))
    # presets are never mutated by an instance
    PaCaViT('tiny', num_clusters=[1, 1, 1, 1])
    assert PaCaViT.arch_zoo['tiny']['num_clusters'] == [100, 100, 100, 0]


def test_frozen_stages_and_norm_eval():
    model = PaCaViT('tiny-teacher', frozen_stages=2, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.stage2.parameters())
    assert not any(p.requires_grad for p in model.transition1.parameters())
    assert all(p.requires_grad for p in model.transition2.parameters())
    assert all(p.requires_grad for p in model.stage3.parameters())
    assert not model.stage1.training and model.stage3.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)


def _official_imagenet_state(model):
    """An official ImageNet checkpoint as released: raw timm state dict incl. ``head.*``."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state['head.weight'] = torch.randn(1000, model.embed_dims[-1])
    state['head.bias'] = torch.randn(1000)
    return state


@pytest.mark.parametrize('arch', ['tiny', 'tiny-teacher'])
@pytest.mark.parametrize('layout', ['imagenet', 'downstream'])
def test_official_checkpoint_loads_with_same_outputs(tmp_path, arch, layout):
    torch.manual_seed(0)
    src = PaCaViT(arch, out_indices=(0, 1, 2, 3))
    src.init_weights()
    state = _official_imagenet_state(src)
    if layout == 'downstream':  # mmdet / mmseg checkpoint: backbone.* + other heads, wrapped
        state = {'meta': {}, 'state_dict': {**{f'backbone.{k}': v for k, v in state.items()
                                               if not k.startswith('head.')},
                                            'neck.lateral_convs.0.conv.weight': torch.zeros(1)}}
    path = str(tmp_path / 'official.pth')
    torch.save(state, path)
    dst = PaCaViT(arch, out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=path))
    dst.init_weights()
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(src.eval()(x), dst.eval()(x)):
        torch.testing.assert_close(a, b)


def test_checkpoint_that_does_not_fit_lists_keys(tmp_path):
    src = PaCaViT('tiny')
    state = _official_imagenet_state(src)
    del state['stage1.0.mlp.fc1.weight']
    state['stage9.0.extra'] = torch.zeros(3)
    state['norm1.weight'] = torch.zeros(7)
    path = str(tmp_path / 'bad.pth')
    torch.save(state, path)
    dst = PaCaViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(StateDictMismatchError) as e:
        dst.init_weights()
    msg = str(e.value)
    assert 'missing keys (1)' in msg and 'stage1.0.mlp.fc1.weight' in msg
    assert 'unexpected keys (1)' in msg and 'stage9.0.extra' in msg
    assert 'norm1.weight: checkpoint (7,) vs model (96,)' in msg


def test_downstream_cluster_count_reinitialises_only_ignored_keys(tmp_path):
    torch.manual_seed(0)
    src = PaCaViT('tiny')
    src.init_weights()
    path = str(tmp_path / 'in1k.pth')
    torch.save(_official_imagenet_state(src), path)
    key = r'attn\.clustering\.clustering\.4\.weight'
    with pytest.raises(StateDictMismatchError, match='clustering.clustering.4.weight'):
        PaCaViT('tiny', num_clusters=[200, 200, 200, 0],
                init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    dst = PaCaViT('tiny', num_clusters=[200, 200, 200, 0], pretrained_ignore_keys=[key],
                  init_cfg=dict(type='Pretrained', checkpoint=path))
    dst.init_weights()
    assert dst.stage1[0].attn.clustering.clustering[4].weight.shape[0] == 200
    torch.testing.assert_close(dst.stage1[0].attn.q.weight, src.stage1[0].attn.q.weight)
    torch.testing.assert_close(dst.stage1[0].attn.clustering.clustering[0].weight,
                               src.stage1[0].attn.clustering.clustering[0].weight)


def test_attention_maps_for_visualisation():
    model = PaCaViT('tiny').eval()
    maps = model.forward_attention_maps(torch.randn(1, 3, 64, 64))
    assert [len(s) for s in maps] == [2, 2, 4, 2]
    assert maps[0][0].shape == (1, 2, 256, 100) and maps[3][0].shape == (1, 16, 4, 4)
    assert isinstance(model.stage1[0].attn, PaCaAttention)
