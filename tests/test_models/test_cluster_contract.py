"""The cluster contract (clusterseg/models/layers/cluster.py) for every registered class that clusters.

``cluster_maps(inputs) -> [(name, (B, h, w) long), ...]`` with indices in ``0..M-1``, names as
documented, and ``forward`` returning exactly the same before and after a ``cluster_maps`` call
(nothing is kept or switched on by it).
"""
import pytest
import torch

from clusterseg.registry import MODELS


def _pacavit():
    from clusterseg.models.backbones import PaCaViT
    model = PaCaViT('tiny', num_clusters=[8, 8, 8, 0], out_indices=(0, 1, 2, 3))
    x = torch.randn(2, 3, 64, 96)
    return model, x, {'stage1': ((16, 24), 8), 'stage2': ((8, 12), 8), 'stage3': ((4, 6), 8)}


def _pacavit_teacher():
    from clusterseg.models.backbones import PaCaViT
    model = PaCaViT('tiny-teacher', num_clusters=[4, 4, 4, 4])
    x = torch.randn(1, 3, 64, 64)
    return model, x, {f'stage{i + 1}': ((16 >> i, 16 >> i), 4) for i in range(4)}


def _clustr():
    from clusterseg.models.backbones import ClusTR
    model = ClusTR('b1', out_indices=(0, 1, 2, 3))
    x = torch.randn(2, 3, 64, 96)
    # M0 = N // sr^2 and 4 M0: (16x24) / 64 = 6, (8x12) / 16 = 6, (4x6) / 4 = 6
    return model, x, {f'stage{i + 1}/scale{s}': (grid, 6 * (1, 4)[s])
                      for i, grid in enumerate([(16, 24), (8, 12), (4, 6)]) for s in range(2)}


def _paca_head():
    from mmengine.registry import init_default_scope

    from clusterseg.models.decode_heads import PaCaHead
    init_default_scope('mmseg')
    head = PaCaHead(in_channels=[8, 16, 24, 32], in_index=[0, 1, 2, 3], channels=12, num_classes=5,
                    norm_cfg=dict(type='BN'), align_corners=False,
                    loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0))
    feats = [torch.randn(2, c, 8 // s, 12 // s) for c, s in zip([8, 16, 24, 32], [1, 2, 4, 8])]
    return head, feats, {'head': ((8, 12), 5)}


def _kmax_model(config):
    from tests.test_models.test_heads.test_kmax_head import build_model
    return build_model(config)[0]


def _kmax_detector():
    from tests.test_models.test_heads.test_kmax_head import PAN_SYN
    model = _kmax_model(PAN_SYN)
    return model, torch.randn(1, 3, 128, 128), None


def _kmax_panoptic_head():
    from tests.test_models.test_heads.test_kmax_head import PAN_SYN
    model = _kmax_model(PAN_SYN).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 128))
    return model.panoptic_head, feats, None


def _kmax_seg_head():
    from tests.test_models.test_heads.test_kmax_head import SEG_SYN
    model = _kmax_model(SEG_SYN).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 128))
    return model.decode_head, feats, None


# registered name -> builders of (module, inputs, {name: ((h, w), M)} or None where only the
# general form is checked (kMaX: one map per head, M = the number of queries)
CASES = {
    'PaCaViT': [_pacavit, _pacavit_teacher],
    'ClusTR': [_clustr],
    'PaCaHead': [_paca_head],
    'KMaXDeepLab': [_kmax_detector],
    'KMaXPanopticHead': [_kmax_panoptic_head],
    'KMaXSegHead': [_kmax_seg_head],
}


def _clustering_classes():
    import clusterseg.models  # noqa: F401  (registers everything)
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if callable(getattr(cls, 'cluster_maps', None)))


def test_every_registered_clustering_class_has_a_case():
    names = _clustering_classes()
    assert {'PaCaViT', 'ClusTR', 'PaCaHead'} <= set(names)
    assert 'PSViT' not in names  # fixed spatial pooling: no learned assignment (see the contract)
    assert set(names) <= set(CASES), f'add a case for {sorted(set(names) - set(CASES))}'


def _forward(module, inputs):
    if type(module).__name__ == 'KMaXDeepLab':
        return module(inputs, mode='tensor')
    return module(inputs)


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def _kept(module):
    return [n for n, m in module.named_modules() if getattr(m, 'last_assignment', None) is not None
            or getattr(m, 'record_assignment', False)]


def _num_clusters(module):
    """M of a kMaX module (its K cluster centres)."""
    head = getattr(module, 'panoptic_head', None) or getattr(module, 'decode_head', None) or module
    return head.num_queries


@pytest.mark.parametrize('build', [b for name in sorted(CASES) for b in CASES[name]],
                         ids=lambda b: b.__name__.lstrip('_'))
def test_cluster_maps_contract(build):
    name = {b: n for n, bs in CASES.items() for b in bs}[build]
    if name not in _clustering_classes():
        pytest.skip(f'{name} has no cluster_maps')
    torch.manual_seed(0)
    module, inputs, expected = build()
    module.eval()
    with torch.no_grad():
        before = _forward(module, inputs)
        assert _kept(module) == []  # a normal forward keeps nothing
        maps = module.cluster_maps(inputs)
        assert _kept(module) == []  # and cluster_maps switches nothing on for later
        after = _forward(module, inputs)
    _assert_same(before, after)
    assert isinstance(maps, list) and maps
    B = (inputs if isinstance(inputs, torch.Tensor) else inputs[0]).shape[0]
    for entry in maps:
        assert isinstance(entry, tuple) and len(entry) == 2
        title, index = entry
        assert isinstance(title, str) and isinstance(index, torch.Tensor)
        assert index.dtype == torch.long and index.dim() == 3 and index.shape[0] == B
        M = expected[title][1] if expected is not None else _num_clusters(module)
        assert 0 <= int(index.min()) and int(index.max()) < M, title
    if expected is not None:
        assert [t for t, _ in maps] == list(expected)
        assert [tuple(i.shape[1:]) for _, i in maps] == [hw for hw, _ in expected.values()]
    assert len({t for t, _ in maps}) == len(maps)  # names are unique
