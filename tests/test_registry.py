"""clusterseg's registries resolve `clusterseg.X` from the mmseg, mmdet and mmpretrain scopes."""
import pytest
import torch.nn as nn
from mmengine.registry import DefaultScope, init_default_scope

from clusterseg.engine import explain_unknown_type
import clusterseg.registry as cs_registry
from clusterseg.registry import HOOKS, MODELS, TASK_UTILS, TRANSFORMS, VISUALIZERS

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
    for ours, parent in [(MODELS, root.MODELS), (TASK_UTILS, root.TASK_UTILS),
                         (TRANSFORMS, root.TRANSFORMS), (HOOKS, root.HOOKS),
                         (VISUALIZERS, root.VISUALIZERS)]:
        assert ours.parent is parent and ours.scope == 'clusterseg'
        assert parent._children['clusterseg'] is ours


def test_every_registry_holds_clusterseg_modules_from_its_locations():
    """A registry exists only where clusterseg registers something, and its locations import it."""
    import importlib

    from mmengine.registry import Registry
    registries = {n: r for n, r in vars(cs_registry).items()
                  if isinstance(r, Registry) and not n.startswith('MMENGINE_')}
    assert set(registries) == {'MODELS', 'TASK_UTILS', 'HOOKS', 'TRANSFORMS', 'VISUALIZERS'}
    for name, reg in registries.items():
        assert reg.scope == 'clusterseg' and reg._locations, name
        for loc in reg._locations:
            importlib.import_module(loc)
        own = {k: v for k, v in reg.module_dict.items() if not k.startswith('_')}  # no test probes
        assert own, f'{name} registers nothing: drop it'
        for k, cls in own.items():
            assert cls.__module__.startswith(tuple(reg._locations)), (name, k, cls.__module__)


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
