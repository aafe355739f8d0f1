"""Published checkpoint layouts load through the user-facing paths, and the converters round-trip.

The state dicts are built from ``tests/official_layouts.py`` (key names and shapes spelt out from
the reference code, not from our modules), so a drift of our module tree from the published one
fails here. Paths covered:

- PaCa-ViT ImageNet (raw timm keys, ``head.*``; all seven released variants incl. the teachers):
  ``init_cfg=dict(type='Pretrained')`` on the backbone, and ``tools/model_converters/
  pacavit2clusterseg.py`` -> mmpretrain classifier (strict ``load_checkpoint``, as tools/test.py).
- PaCa-ViT downstream (``backbone.*`` under ``state_dict``, ADE20K's M=200): ``init_cfg``.
- ClusTR classifier (YtongXie/ClusTR ``ClusTR.py``: ``head.*``): ``init_cfg`` and
  ``tools/model_converters/clustr2clusterseg.py``.
- kMaX detectron2 ``.pth`` / ``.pkl``: tests/test_tools/test_kmax_converter.py.
"""
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from clusterseg.models.backbones import ClusTR, PaCaViT
from tests.conftest import REPO
from tests.official_layouts import PACAVIT_ARCHS, clustr_layout, pacavit_layout, random_state
from tests.test_tools.test_kmax_converter import model_state  # noqa: F401  (the kMaX model's state, a fixture)


def _assert_loaded(model, state, prefix=''):
    own = model.state_dict()
    for k, v in state.items():
        if k.startswith(prefix) and not k[len(prefix):].startswith('head.'):
            torch.testing.assert_close(own[k[len(prefix):]], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize('arch', list(PACAVIT_ARCHS))
def test_pacavit_imagenet_layout_loads_by_init_cfg(tmp_path, arch):
    state = random_state(pacavit_layout(arch))
    path = str(tmp_path / f'IMNET_224_{arch}.pth')
    torch.save(state, path)
    model = PaCaViT(arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()  # raises listing keys on any missing / unexpected / mis-shaped key
    # every published backbone key has its counterpart, and nothing else exists
    assert set(model.state_dict()) == {k for k in state if not k.startswith('head.')}
    _assert_loaded(model, state)


@pytest.mark.parametrize('arch', ['tiny', 'small-teacher'])
def test_pacavit_downstream_layout_loads_by_init_cfg(tmp_path, arch):
    """ADE20K checkpoints: ``backbone.*`` (M=200 in the clustering layers / teacher) beside the
    head's keys, wrapped under ``state_dict`` as mmseg saves them."""
    M = [200, 200, 200, 200 if 'teacher' in arch else 0]
    state = random_state(pacavit_layout(arch, num_clusters=M, num_classes=0), prefix='backbone.')
    state['decode_head.conv_seg.weight'] = torch.zeros(150, 256, 1, 1)
    path = str(tmp_path / 'ade20k.pth')
    torch.save({'meta': {}, 'state_dict': state}, path)
    model = PaCaViT(arch, num_clusters=M, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    _assert_loaded(model, state, prefix='backbone.')


def _classifier(config):
    cfg = Config.fromfile(f'{REPO}/{config}')
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    cfg.model.backbone.pop('init_cfg', None)
    return MODELS.build(cfg.model).eval()


@pytest.mark.parametrize('arch,config,tool,layout', [
    ('tiny', 'configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py', 'pacavit2clusterseg', pacavit_layout),
    ('small-teacher', 'configs/pacavit/pacavit-small-teacher_8xb128-300e_in1k.py', 'pacavit2clusterseg',
     pacavit_layout),
    ('tiny', 'configs/clustr/clustr-tiny_8xb128-300e_in1k.py', 'clustr2clusterseg', clustr_layout),
])
def test_converter_round_trips_the_published_layout(tmp_path, arch, config, tool, layout):
    import importlib
    main = importlib.import_module(f'tools.model_converters.{tool}').main
    state = random_state(layout(arch))
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'converted.pth')
    torch.save({'model': state} if tool == 'clustr2clusterseg' else state, src)  # both wrappings occur
    main([src, dst, '--config', f'{REPO}/{config}', '--no-progress'])
    converted = torch.load(dst, map_location='cpu')['state_dict']
    # round trip: strip the mmpretrain prefixes again -> exactly the published keys and values
    back = {(k.replace('head.fc.', 'head.', 1) if k.startswith('head.fc.') else k[len('backbone.'):]): v
            for k, v in converted.items()}
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    model = _classifier(config)
    load_checkpoint(model, dst, strict=True, logger='silent')  # what tools/test.py does
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone(x)[-1]  # (B, C, h, w): the normed last stage
        expected = F.linear(feats.flatten(2).mean(-1), state['head.weight'], state['head.bias'])
        torch.testing.assert_close(model(x, mode='tensor'), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_clustr_reference_classifier_loads_by_init_cfg(tmp_path, arch):
    state = random_state(clustr_layout(arch))
    path = str(tmp_path / 'ClusTR.pth')
    torch.save({'model': state}, path)
    model = ClusTR(arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    assert set(model.state_dict()) == {k for k in state if not k.startswith('head.')}
    _assert_loaded(model, state)


def test_teacher_fpn_upsamples_before_the_lateral_layer():
    """Reference: iVMCL/PaCaViT ``models/paca_vit.py``, ``PaCaTeacher_ConvMixer.forward``: the
    coarser FPN output is bilinearly upsampled to the finer level first, then ``lateral{i}``
    (1x1 conv -> GELU -> BN) is applied, then added to the stage output and ``fpn{i}`` follows."""
    torch.manual_seed(0)
    model = PaCaViT('tiny-teacher')
    model.init_weights()
    model.eval()
    teacher = model.paca_teacher
    gen = torch.Generator().manual_seed(1)
    for m in teacher.modules():  # BN away from the identity, so every layer matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    x = torch.randn(1, 96, 16, 12) * 3  # the shared stem's output
    captured = {}  # the to_clusters outputs before the softmax (which squashes differences)
    for i in range(4):
        getattr(teacher, f'to_clusters{i + 1}').register_forward_hook(
            lambda m, args, y, i=i: captured.__setitem__(i, y))
    with torch.no_grad():
        out = teacher(x)
        logits = dict(captured)  # the model's own; the calls below overwrite `captured`
        feats = out['feats']
        pyramid = [None, None, None, feats[3]]
        for i in (2, 1, 0):
            up = F.interpolate(pyramid[i + 1], size=feats[i].shape[-2:], mode='bilinear', align_corners=False)
            lateral = getattr(teacher, f'lateral{i + 1}')
            pyramid[i] = getattr(teacher, f'fpn{i + 1}')(feats[i] + lateral(up))
        for i in range(4):
            z = getattr(teacher, f'to_clusters{i + 1}')(pyramid[i])  # (B, M, H_i, W_i)
            torch.testing.assert_close(logits[i], z, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out['clusters'][i], z.flatten(2).softmax(-1))
        # the other order (lateral at the coarse level, then upsample) is a different function:
        # the GELU between the 1x1 conv and the BN does not commute with the interpolation
        size = feats[0].shape[-2:]
        right = teacher.lateral1(F.interpolate(pyramid[1], size=size, mode='bilinear', align_corners=False))
        wrong = F.interpolate(teacher.lateral1(pyramid[1]), size=size, mode='bilinear', align_corners=False)
        assert (wrong - right).abs().max() > 1e-2 * right.abs().max()


def test_kmax_pkl_layout_converts(tmp_path, model_state):
    """detectron2 ``.pkl`` (TF-converted weights: ``{'model': {name: ndarray}}``, protocol 2 as
    the conversion script writes it) -> the same tensors as the ``.pth`` of the same weights."""
    from tests.test_tools.test_kmax_converter import CONFIG, load_converter, to_d2_key
    d2 = {to_d2_key(k): v.numpy().copy() for k, v in model_state.items() if not k.endswith('num_batches_tracked')}
    src = str(tmp_path / 'kmax_r50.pkl')
    with open(src, 'wb') as f:
        pickle.dump({'model': d2, '__author__': 'TF'}, f, protocol=2)
    dst = str(tmp_path / 'out.pth')
    load_converter().main([src, dst, '--config', CONFIG, '--no-progress'])
    converted = torch.load(dst, map_location='cpu')['state_dict']
    for k, v in model_state.items():
        if not k.endswith('num_batches_tracked'):
            assert torch.equal(converted[k], v), k
