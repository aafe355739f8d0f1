"""What PaCa-ViT, ClusTR and PSViT share through BaseBackbone: arch resolution and its errors,
out_indices / frozen_stages checks, which parameters frozen_stages freezes, norm_eval."""
import pytest
import torch.nn as nn

from clusterseg.models.backbones import ClusTR, PaCaViT, PSViT
from clusterseg.models.backbones.base import BaseBackbone

# small explicit archs, so that every test builds quickly
PACA = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 4],
            num_clusters=[4, 4, 4, 0], clustering='conv')
PACA_TEACHER = dict(PACA, clustering=None, num_clusters=[4, 4, 4, 4], teacher_depths=[1, 1, 1, 1])
CLUSTR = dict(embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4])
PSVIT = dict(embed_dims=[8, 16, 24], num_heads=[1, 2, 3], depth=6, pool_after=[1, 3],
             share_attn=[0, 1, 0, 1, 0, 1], patch_size=4)

BUILD = {
    'PaCaViT': lambda **kw: PaCaViT(kw.pop('arch', PACA), **kw),
    'ClusTR': lambda **kw: ClusTR(kw.pop('arch', CLUSTR), **kw),
    'PSViT': lambda **kw: PSViT(kw.pop('arch', PSVIT), img_size=32,
                                **({'out_type': 'featmap'} if 'out_indices' in kw else {}), **kw),
}
NAMES = list(BUILD)


def test_all_three_share_the_base():
    for cls in (PaCaViT, ClusTR, PSViT):
        assert issubclass(cls, BaseBackbone)
        for name in ('resolve_arch', 'init_weights', 'train', '_load_pretrained'):
            assert name not in vars(cls), f'{cls.__name__} re-implements {name}'


@pytest.mark.parametrize('name', NAMES)
def test_unknown_arch_names_the_arch_and_the_choices(name):
    cls = {'PaCaViT': PaCaViT, 'ClusTR': ClusTR, 'PSViT': PSViT}[name]
    with pytest.raises(KeyError) as e:
        BUILD[name](arch='gigantic')
    msg = str(e.value)
    assert name in msg and "'gigantic'" in msg
    for choice in list(cls.arch_zoo) + list(cls.arch_aliases):
        assert repr(choice) in msg
    with pytest.raises(TypeError, match=f'{name} arch must be a str.*got int'):
        BUILD[name](arch=3)


@pytest.mark.parametrize('name,arch,key', [('PaCaViT', PACA, 'depths'), ('ClusTR', CLUSTR, 'num_heads'),
                                           ('PSViT', PSVIT, 'share_attn')])
def test_arch_dict_missing_key(name, arch, key):
    with pytest.raises(KeyError, match=f"{name} arch dict is missing '{key}'"):
        BUILD[name](arch={k: v for k, v in arch.items() if k != key})


@pytest.mark.parametrize('name', NAMES)
def test_presets_are_never_mutated(name):
    cls = {'PaCaViT': PaCaViT, 'ClusTR': ClusTR, 'PSViT': PSViT}[name]
    preset = sorted(cls.arch_zoo)[0]
    settings = cls.resolve_arch(preset)
    for v in settings.values():
        if isinstance(v, list):
            v.append(-1)
    assert cls.resolve_arch(preset) != settings


@pytest.mark.parametrize('name,levels', [('PaCaViT', 4), ('ClusTR', 4), ('PSViT', 4)])
def test_out_indices_checked(name, levels):
    assert BUILD[name](out_indices=(0, levels - 1)).out_indices == [0, levels - 1]
    for bad in ((0, levels), (1.5, )):
        with pytest.raises(ValueError, match=rf'{name}: out_indices must be in 0..{levels - 1}'):
            BUILD[name](out_indices=bad)
    if name == 'PSViT':  # levels of a dense PSViT count from the end too
        assert BUILD[name](out_indices=(-1, )).out_indices == [levels - 1]
    else:
        with pytest.raises(ValueError, match='out_indices'):
            BUILD[name](out_indices=(-1, ))


@pytest.mark.parametrize('name,stages', [('PaCaViT', 4), ('ClusTR', 4), ('PSViT', 3)])
def test_frozen_stages_out_of_range(name, stages):
    BUILD[name](frozen_stages=stages)
    for bad in (stages + 1, -2, 1.0):
        with pytest.raises(ValueError, match=rf'{name}: frozen_stages must be an int in -1..{stages}'):
            BUILD[name](frozen_stages=bad)


# frozen_stages=2: the parameter-name prefixes that must be frozen, written out by hand
FROZEN_2 = {
    'PaCaViT': ('patch_embed.', 'paca_teacher.', 'stage1.', 'norm1.', 'transition1.', 'stage2.',
                'norm2.'),
    'ClusTR': ('patch_embed1.', 'block1.', 'norm1.', 'patch_embed2.', 'block2.', 'norm2.'),
    # stage 0 = layers 0-1, stage 1 = layers 2-3 (pool_after [1, 3]); pools.0 feeds stage 1
    'PSViT': ('patch_embed.', 'pos_embed', 'cls_token', 'layers.0.', 'layers.1.', 'layers.2.',
              'layers.3.', 'pools.0.'),
}


@pytest.mark.parametrize('name', NAMES)
def test_frozen_stages_freeze_the_right_parameters_and_keep_them_in_eval(name):
    arch = PACA_TEACHER if name == 'PaCaViT' else None
    model = BUILD[name](frozen_stages=2, **({'arch': arch} if arch else {}))
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if n.startswith(FROZEN_2[name])}
    assert frozen == expected and 0 < len(frozen) < len(list(model.parameters()))
    def is_frozen(n):
        return any(n == p.rstrip('.') or n.startswith(p) for p in FROZEN_2[name])
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    assert all(not m.training for n, m in leaves if is_frozen(n))
    assert all(m.training for n, m in leaves if not is_frozen(n))
    assert any(is_frozen(n) for n, _ in leaves) and not all(is_frozen(n) for n, _ in leaves)
    model.train()  # a second train() keeps them frozen
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    # -1 freezes nothing
    model = BUILD[name](frozen_stages=-1).train()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('norm_eval', [False, True])
def test_norm_eval_keeps_batchnorm_in_eval(name, norm_eval):
    model = BUILD[name](norm_eval=norm_eval)
    model.probe_bn = nn.BatchNorm2d(4)  # ClusTR and PSViT have no BatchNorm of their own
    model.train()
    assert model.probe_bn.training is not norm_eval
    assert model.training and all(m.training for m in model.modules() if isinstance(m, nn.LayerNorm))
    model.eval()
    assert not model.probe_bn.training
