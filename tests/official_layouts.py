"""Key names and shapes of the *published* checkpoints, written from the reference layouts.

These generators are deliberately independent of clusterseg's modules: they spell out the keys
as the reference code creates them (spec ``pacavit.md`` §5.1 for iVMCL/PaCaViT
``models/paca_vit.py``; YtongXie/ClusTR ``ClusTR.py``), so a test that loads a state dict built
from them fails when our module tree drifts from the published one (as the teacher's FPN did).
"""
from collections import OrderedDict

import torch

# iVMCL/PaCaViT models/paca_vit.py, _arch_settings and the @register_model functions
PACAVIT_ARCHS = {
    'tiny': dict(dims=[96, 192, 320, 384], depths=[2, 2, 4, 2], M=[100, 100, 100, 0]),
    'small': dict(dims=[96, 192, 320, 384], depths=[3, 3, 10, 3], M=[100, 100, 100, 0]),
    'small-mlp': dict(dims=[96, 192, 320, 384], depths=[3, 3, 10, 3], M=[100, 100, 100, 0],
                      clustering='mlp'),
    'base': dict(dims=[96, 192, 384, 512], depths=[3, 3, 18, 3], M=[100, 100, 100, 0]),
    'tiny-teacher': dict(dims=[96, 192, 320, 384], depths=[2, 2, 2, 2], M=[100] * 4,
                         teacher_depths=[2, 2, 2, 2]),
    'small-teacher': dict(dims=[96, 192, 320, 384], depths=[3, 3, 7, 3], M=[100] * 4,
                          teacher_depths=[2, 2, 2, 2]),
    'base-teacher': dict(dims=[96, 192, 384, 512], depths=[3, 3, 16, 3], M=[100] * 4,
                         teacher_depths=[2, 2, 4, 2]),
}


def _bn(prefix, c, out):
    out[f'{prefix}.weight'], out[f'{prefix}.bias'] = (c, ), (c, )
    out[f'{prefix}.running_mean'], out[f'{prefix}.running_var'] = (c, ), (c, )
    out[f'{prefix}.num_batches_tracked'] = ()


def _wb(prefix, w, b, out):
    out[f'{prefix}.weight'] = tuple(w)
    if b is not None:
        out[f'{prefix}.bias'] = (b, )


def pacavit_layout(arch, num_clusters=None, num_classes=1000):
    """name -> shape of an official PaCa-ViT ImageNet checkpoint (raw timm keys incl. ``head.*``);
    ``num_classes=0`` gives the backbone of the downstream checkpoints (without the prefix)."""
    a = PACAVIT_ARCHS[arch]
    dims, depths = a['dims'], a['depths']
    M = list(num_clusters or a['M'])
    teacher = a.get('teacher_depths')
    out = OrderedDict()
    c0 = dims[0]
    _wb('patch_embed.proj.0', (c0 // 2, 3, 3, 3), c0 // 2, out)
    _wb('patch_embed.proj.1', (c0, c0 // 2, 3, 3), c0, out)
    _wb('patch_embed.norm', (c0, ), c0, out)
    for s in range(4):
        C, p = dims[s], f'stage{s + 1}'
        for j in range(depths[s]):
            b = f'{p}.{j}'
            _wb(f'{b}.norm1_before', (C, ), C, out)
            if M[s] > 0:
                _wb(f'{b}.attn.cluster_norm', (C, ), C, out)
                if j == 0 and teacher is None:  # stage-wise clustering in the first block
                    c = f'{b}.attn.clustering.clustering'
                    if a.get('clustering', 'conv') == 'conv':
                        _wb(f'{c}.0', (C, 1, 7, 7), C, out)
                        _wb(f'{c}.2', (C, C, 1, 1), C, out)
                        _wb(f'{c}.4', (M[s], C, 1, 1), None, out)
                    else:
                        _wb(f'{c}.0', (4 * C, C), 4 * C, out)
                        _wb(f'{c}.2', (M[s], 4 * C), M[s], out)
            for n in ('q', 'k', 'v', 'proj'):
                _wb(f'{b}.attn.{n}', (C, C), C, out)
            _wb(f'{b}.norm2_before', (C, ), C, out)
            _wb(f'{b}.mlp.fc1', (4 * C, C), 4 * C, out)
            _wb(f'{b}.mlp.dwconv.dwconv', (4 * C, 1, 3, 3), 4 * C, out)
            _wb(f'{b}.mlp.fc2', (C, 4 * C), C, out)
        _wb(f'norm{s + 1}', (C, ), C, out)
        if s < 3:
            _wb(f'transition{s + 1}.proj', (dims[s + 1], C, 3, 3), dims[s + 1], out)
            _wb(f'transition{s + 1}.norm', (dims[s + 1], ), dims[s + 1], out)
    if teacher is not None:  # models/paca_vit.py PaCaTeacher_ConvMixer
        t = 'paca_teacher'

        def convmixer(prefix, C):  # Residual(DW -> GELU -> BN) -> 1x1 -> GELU -> BN
            _wb(f'{prefix}.0.fn.0', (C, 1, 7, 7), C, out)
            _bn(f'{prefix}.0.fn.2', C, out)
            _wb(f'{prefix}.1', (C, C, 1, 1), C, out)
            _bn(f'{prefix}.3', C, out)

        for i in range(4):
            C = dims[i]
            for j in range(teacher[i]):
                convmixer(f'{t}.block{i + 1}.{j}', C)
            if i < 3:
                _wb(f'{t}.transition{i + 1}.0.conv', (dims[i + 1], C, 3, 3), dims[i + 1], out)
                out[f'{t}.transition{i + 1}.0.blur_filter'] = (C, 1, 3, 3)
                _bn(f'{t}.transition{i + 1}.2', dims[i + 1], out)
                _wb(f'{t}.lateral{i + 1}.0', (C, dims[i + 1], 1, 1), C, out)
                _bn(f'{t}.lateral{i + 1}.2', C, out)
                convmixer(f'{t}.fpn{i + 1}', C)  # one layer, no extra Sequential
            if M[i] > 0:
                _wb(f'{t}.to_clusters{i + 1}', (M[i], C, 1, 1), M[i], out)
    if num_classes:
        _wb('head', (num_classes, dims[3]), num_classes, out)
    return out


# YtongXie/ClusTR ClusTR.py, ClusTR_b1/b2/b3 (qkv_bias=True, mlp_ratios 8, 8, 4, 4, sr 8, 4, 2, 1)
CLUSTR_ARCHS = {
    'tiny': dict(dims=[64, 128, 256, 512], depths=[1, 2, 6, 1]),
    'small': dict(dims=[64, 128, 256, 512], depths=[3, 5, 13, 2]),
    'base': dict(dims=[64, 128, 320, 512], depths=[3, 5, 18, 3]),
}


def clustr_layout(arch, num_classes=1000):
    """name -> shape of the reference ClusTR classifier's state dict (``ClusTR.state_dict()``)."""
    a = CLUSTR_ARCHS[arch]
    dims, depths = a['dims'], a['depths']
    mlp, sr = [8, 8, 4, 4], [8, 4, 2, 1]
    out = OrderedDict()
    for i in range(4):
        C, cin, k = dims[i], 3 if i == 0 else dims[i - 1], 7 if i == 0 else 3
        _wb(f'patch_embed{i + 1}.proj', (C, cin, k, k), C, out)
        _wb(f'patch_embed{i + 1}.norm', (C, ), C, out)
        for j in range(depths[i]):
            b = f'block{i + 1}.{j}'
            _wb(f'{b}.norm1', (C, ), C, out)
            _wb(f'{b}.attn.q', (C, C), C, out)
            _wb(f'{b}.attn.proj', (C, C), C, out)
            if sr[i] > 1:
                _wb(f'{b}.attn.weight_layer', (1, C), 1, out)
                _wb(f'{b}.attn.kv1', (2 * C, C), 2 * C, out)
                _wb(f'{b}.attn.kv2', (2 * C, C), 2 * C, out)
            else:
                _wb(f'{b}.attn.kv', (2 * C, C), 2 * C, out)
            _wb(f'{b}.norm2', (C, ), C, out)
            h = C * mlp[i]
            _wb(f'{b}.mlp.fc1', (h, C), h, out)
            _wb(f'{b}.mlp.dwconv.dwconv', (h, 1, 3, 3), h, out)
            _wb(f'{b}.mlp.fc2', (C, h), C, out)
        _wb(f'norm{i + 1}', (C, ), C, out)
    if num_classes:
        _wb('head', (num_classes, dims[3]), num_classes, out)
    return out


def random_state(layout, seed=0, prefix=''):
    """Random tensors in ``layout`` (BN variances positive, counters integer)."""
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for k, shape in layout.items():
        if k.endswith('num_batches_tracked'):
            v = torch.tensor(7)
        elif k.endswith('running_var'):
            v = torch.rand(shape, generator=gen) + 0.5
        elif k.endswith('blur_filter'):
            f = torch.tensor([1., 2., 1.])
            v = ((f[:, None] * f[None]) / 16).expand(shape).clone()
        else:
            v = torch.randn(shape, generator=gen) * 0.05
        state[prefix + k] = v
    return state
