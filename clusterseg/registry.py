"""clusterseg's registries: children of MMEngine's root registries, one for each kind of module
clusterseg registers.

Each registry lists ``locations``, so a config in any scope (``mmseg``, ``mmdet``, ``mmpretrain``)
can say ``type='clusterseg.PaCaViT'``: MMEngine imports ``clusterseg.registry`` for the
``clusterseg.`` prefix and then the modules in ``locations``, with no ``custom_imports``.
Only kinds that clusterseg registers have a registry here; to register a first module of another
kind (a dataset, a metric, ...), add its registry as a child of MMEngine's, with the package that
defines the module in ``locations`` (tests/test_registry.py checks that every registry here is
used).
An unprefixed lookup through these registries resolves in the current default scope (mmdet's
registry under an mmdet runner, MMEngine's root with none), so code inside clusterseg names other
libraries' modules with their scope prefix (``'mmdet.CrossEntropyLoss'``) to work under any scope.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

# backbones, heads, detectors, losses (clusterseg/models)
MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['clusterseg.models'])
# the kMaX Hungarian assigner
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, locations=['clusterseg.models'])
# runtime-safety, non-finite-loss, loss-mean, memory and dataset-check hooks (clusterseg/engine)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['clusterseg.engine'])
# checked image / label / panoptic loaders (clusterseg/datasets/transforms)
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, locations=['clusterseg.datasets'])
# the panoptic-aware detection visualiser
VISUALIZERS = Registry(
    'visualizer', parent=MMENGINE_VISUALIZERS, locations=['clusterseg.visualization'])
