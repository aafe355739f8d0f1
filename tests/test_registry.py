"""clusterseg's registries resolve `clusterseg.X` from the mmseg, mmdet and mmpretrain scopes."""
import pytest
import torch.nn as nn
from mmengine.registry import DefaultScope, init_default_scope

from clusterseg.engine import explain_unknown_type
from clusterseg.registry import DATASETS, HOOKS, MODELS, TRANSFORMS

SCOPES = ['mmseg', 'mmdet', 'mmpretrain']


@MODELS.register_module(force=True)
class _RegistryProbe(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.width = width


def _build_in_scope(scope, registry_name, cfg):
    init_default_scope(scope)
    mod = __import__(f'{scope}.registry', fromlist=[registry_name])
    return getattr(mod, registry_name).build(cfg)


@pytest.mark.parametrize('scope', SCOPES)
def test_build_clusterseg_model_from_each_scope(scope):
    obj = _build_in_scope(scope, 'MODELS', dict(type='clusterseg._RegistryProbe', width=5))
    assert isinstance(obj, _RegistryProbe) and obj.width == 5
    # the default scope's own modules still resolve unprefixed next to ours
    stock = {'mmseg': 'CrossEntropyLoss', 'mmdet': 'CrossEntropyLoss', 'mmpretrain': 'LabelSmoothLoss'}
    kwargs = {'mmpretrain': dict(label_smooth_val=0.1)}.get(scope, {})
    assert _build_in_scope(scope, 'MODELS', dict(type=stock[scope], **kwargs)) is not None


def test_registries_are_children_of_mmengine_roots():
    from mmengine import registry as root
    for ours, parent in [(MODELS, root.MODELS), (DATASETS, root.DATASETS),
                         (TRANSFORMS, root.TRANSFORMS), (HOOKS, root.HOOKS)]:
        assert ours.parent is parent and ours.scope == 'clusterseg'
        assert parent._children['clusterseg'] is ours


def test_unknown_type_names_type_and_scopes():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    with pytest.raises(KeyError) as e:
        SEG_MODELS.build(dict(type='PaCaViTT'))
    better = explain_unknown_type(e.value)
    assert better is not None
    msg = str(better)
    assert "'PaCaViTT'" in msg and 'mmseg::model' in msg and 'mmengine::model' in msg


def test_unknown_type_suggests_the_scope_that_has_it():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    with pytest.raises(KeyError) as e:
        SEG_MODELS.build(dict(type='_RegistryProbe'))  # exists, but only as clusterseg._RegistryProbe
    assert "'clusterseg._RegistryProbe'" in str(explain_unknown_type(e.value))


def teardown_module():
    DefaultScope._instance_dict.clear()
